-- 010: the dataexport iterator. A tenant reads its streams either from
-- the time-window endpoints (/api/v2/events/data/{type}, 'data', as
-- before: every existing tenant keeps it) or from Netskope's dataexport
-- iterator (/api/v2/events/dataexport/events/{type}, 'dataexport'), where
-- Netskope keeps the position of an index that nscollect names.
--
-- A stream in iterator mode has one iterator row: the index name (owned
-- by this database: a random part, so two databases never share an
-- index), the epoch it started from, and what the database knows about
-- the last page the server may have handed out:
--   new       nothing asked yet: the next request starts the index at start_epoch
--   starting  the start was asked, its page not committed: ask it again
--   pending   a 'next' was asked, its page not committed: ask 'resend'
--   clean     the last page handed out is committed: ask 'next'
-- 'starting' and 'pending' are written (synced) before the request goes;
-- 'clean' is written in the transaction that stores the page's records.

ALTER TABLE tenant ADD COLUMN api TEXT NOT NULL DEFAULT 'data'
    CHECK (api IN ('data', 'dataexport'));

CREATE TABLE iterator (
    stream_id    INTEGER PRIMARY KEY REFERENCES stream(id) ON DELETE CASCADE,
    index_name   TEXT NOT NULL UNIQUE,
    start_epoch  INTEGER NOT NULL,
    state        TEXT NOT NULL DEFAULT 'new'
                 CHECK (state IN ('new', 'starting', 'pending', 'clean')),
    pages        INTEGER NOT NULL DEFAULT 0,     -- pages committed
    resends      INTEGER NOT NULL DEFAULT 0,     -- 'resend' requests asked
    updated_at   INTEGER NOT NULL
);
