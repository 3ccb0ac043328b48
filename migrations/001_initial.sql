-- 001: the whole first schema. Times are epoch seconds (UTC).

CREATE TABLE tenant (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    url            TEXT NOT NULL,
    token          BLOB NOT NULL,            -- AES-256-GCM sealed (secret.h), never plaintext
    token_fp       TEXT NOT NULL,            -- short fingerprint for display
    sink           TEXT,                     -- NULL: file sink under the config's output_dir
    sink_credentials TEXT,                   -- GCS key file path for this tenant, or NULL
    interval_s     INTEGER NOT NULL,
    lookback_s     INTEGER NOT NULL,
    overlap_s      INTEGER NOT NULL,
    page_size      INTEGER NOT NULL,
    max_records    INTEGER NOT NULL,         -- 0: no cap
    window         TEXT NOT NULL CHECK (window IN ('insertion', 'event')),
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- scheduling and health, written by the daemon
    next_run_at    INTEGER NOT NULL DEFAULT 0,  -- next regular run (interval)
    not_before     INTEGER NOT NULL DEFAULT 0,  -- back-off: no request before this
    fail_count     INTEGER NOT NULL DEFAULT 0,  -- consecutive failed runs
    last_error     TEXT,                        -- NULL when the last run succeeded
    last_error_at  INTEGER,
    last_ok_at     INTEGER
);

-- The end of the window committed so far: every record stored before it
-- is in the outbox or delivered. Moved only with the records it covers.
CREATE TABLE cursor (
    tenant_id   INTEGER PRIMARY KEY REFERENCES tenant(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Dedupe keys of committed records, kept for the overlap (plus a margin).
CREATE TABLE seen (
    tenant_id   INTEGER NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    key         BLOB NOT NULL,
    at          INTEGER NOT NULL,            -- the record's window time (insertion or event)
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
CREATE INDEX seen_by_time ON seen(tenant_id, at);

-- Batches not yet delivered. AUTOINCREMENT: a batch id is never reused,
-- so object names stay unique for the life of the database.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    object_name     TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    records         INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    newest_at       INTEGER,                 -- newest record event time in the batch
    body            BLOB NOT NULL,           -- NDJSON, one record per line
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_by_tenant ON outbox(tenant_id);

-- One row per delivered batch (same id as its outbox row).
CREATE TABLE delivered (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    object_name   TEXT NOT NULL,
    location      TEXT NOT NULL,             -- where it went: path or gs:// URL
    created_at    INTEGER NOT NULL,
    delivered_at  INTEGER NOT NULL,
    records       INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    newest_at     INTEGER,
    attempts      INTEGER NOT NULL,
    existed       INTEGER NOT NULL DEFAULT 0 -- 1: an earlier try had stored it (412/EEXIST)
);
CREATE INDEX delivered_by_tenant ON delivered(tenant_id, delivered_at);

-- One row per fetch run; updated as slices commit.
CREATE TABLE run (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'abandoned')),
    window_start  INTEGER NOT NULL,
    window_end    INTEGER,                   -- end of the last committed slice
    pages         INTEGER NOT NULL DEFAULT 0,
    fetched       INTEGER NOT NULL DEFAULT 0,  -- records received, duplicates included
    stored        INTEGER NOT NULL DEFAULT 0,  -- new records committed to the outbox
    error         TEXT
);
CREATE INDEX run_by_tenant ON run(tenant_id, started_at);

-- Health at a glance: sqlite3 nscollect.db 'select * from tenant_status'
CREATE VIEW tenant_status AS
SELECT t.name,
       CASE WHEN NOT t.enabled THEN 'disabled'
            WHEN t.fail_count > 0 THEN 'failing'
            WHEN c.position IS NULL
              OR unixepoch() - c.position > 2 * t.interval_s + 300 THEN 'lagging'
            ELSE 'ok' END                                   AS state,
       c.position                                           AS cursor,
       unixepoch() - c.position                             AS lag_s,
       (SELECT coalesce(sum(records), 0) FROM delivered d
         WHERE d.tenant_id = t.id AND d.created_at >= unixepoch() - 3600)
     + (SELECT coalesce(sum(records), 0) FROM outbox o
         WHERE o.tenant_id = t.id AND o.created_at >= unixepoch() - 3600) AS alerts_1h,
       (SELECT coalesce(sum(records), 0) FROM delivered d
         WHERE d.tenant_id = t.id AND d.created_at >= unixepoch() - 86400)
     + (SELECT coalesce(sum(records), 0) FROM outbox o
         WHERE o.tenant_id = t.id AND o.created_at >= unixepoch() - 86400) AS alerts_24h,
       (SELECT count(*) FROM outbox o WHERE o.tenant_id = t.id)            AS pending_batches,
       (SELECT coalesce(sum(bytes), 0) FROM outbox o WHERE o.tenant_id = t.id) AS pending_bytes,
       (SELECT max(delivered_at) FROM delivered d WHERE d.tenant_id = t.id) AS last_delivery_at,
       t.last_ok_at,
       max(t.next_run_at, t.not_before)                     AS next_run_at,
       t.fail_count,
       coalesce(t.last_error,
                (SELECT o.last_error FROM outbox o WHERE o.tenant_id = t.id
                  AND o.last_error IS NOT NULL ORDER BY o.id LIMIT 1)) AS last_error
  FROM tenant t LEFT JOIN cursor c ON c.tenant_id = t.id;

CREATE VIEW recent_runs AS
SELECT r.id AS run, t.name AS tenant, r.status,
       datetime(r.started_at, 'unixepoch') AS started,
       coalesce(r.finished_at, unixepoch()) - r.started_at AS seconds,
       datetime(r.window_start, 'unixepoch') AS window_start,
       datetime(r.window_end, 'unixepoch') AS window_end,
       r.pages, r.fetched, r.stored, r.error
  FROM run r JOIN tenant t ON t.id = r.tenant_id
 WHERE r.started_at >= unixepoch() - 7 * 86400
 ORDER BY r.id DESC;

CREATE VIEW delivery_log AS
SELECT d.id AS batch, t.name AS tenant, d.location, d.records, d.bytes,
       datetime(d.created_at, 'unixepoch') AS created,
       datetime(d.delivered_at, 'unixepoch') AS delivered,
       d.attempts, d.existed
  FROM delivered d JOIN tenant t ON t.id = d.tenant_id
 ORDER BY d.id DESC;
