-- 008: object names no other database can produce, and a batch's
-- destination pinned from its first upload attempt.
--
-- identity.db_id is a random id drawn once per database (at `init`, or at
-- this upgrade) and part of every object name from now on:
-- <prefix>_<time>_<db_id>_<batch id>.ndjson. Batch ids restart in a fresh
-- database and two instances may share a bucket prefix; a sink counts an
-- existing object as delivered, so a name must never belong to two batches.
-- Batches already waiting keep the names they were committed with.
--
-- outbox.sink_* is where the batch's first upload attempt went: the sink
-- URL, its credentials file ('' = the default chain) and gzip. Every later
-- attempt goes there, so a sink changed between a lost reply and its retry
-- cannot write a second object elsewhere. sink_maybe = 1 once an attempt
-- there ended without a definite answer (timeout, 5xx, reset: the object
-- may exist). A pin whose destination refused the batch outright
-- (sink_maybe = 0: bucket missing, permission denied) is dropped, so the
-- next attempt follows the tenant's current --sink.

CREATE TABLE identity (
    db_id TEXT NOT NULL
);
INSERT INTO identity (db_id) VALUES (lower(hex(randomblob(6))));

ALTER TABLE outbox ADD COLUMN sink_url TEXT;
ALTER TABLE outbox ADD COLUMN sink_credentials TEXT;
ALTER TABLE outbox ADD COLUMN sink_gzip INTEGER;
ALTER TABLE outbox ADD COLUMN sink_maybe INTEGER NOT NULL DEFAULT 0;
