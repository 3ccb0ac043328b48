-- 007: streams. A tenant keeps its URL, token, sink and request budget and
-- owns one or more streams: 'alert' (every alert type, as before) and
-- Netskope's event types. The cursor, the dedupe keys, the schedule and
-- health (next_run_at, back-off, failures, last error) and the run rows
-- belong to a stream from now on; batches name theirs.
--
-- Every existing tenant becomes a tenant with one 'alert' stream whose id
-- is the tenant's id, so its cursor and dedupe keys carry over as they
-- are: no alert is re-sent or skipped across the upgrade. The tenant's
-- own schedule columns stay (unused) so an older binary's view of them
-- is harmless; the stream's copy is the one the daemon reads and writes.

CREATE TABLE stream (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: keys and batches name it
    tenant_id      INTEGER NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name           TEXT NOT NULL CHECK (name IN ('alert', 'page', 'application', 'network',
                                                 'audit', 'infrastructure', 'incident',
                                                 'endpoint')),
    created_at     INTEGER NOT NULL,
    next_run_at    INTEGER NOT NULL DEFAULT 0,
    not_before     INTEGER NOT NULL DEFAULT 0,
    fail_count     INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    last_error_at  INTEGER,
    last_ok_at     INTEGER,
    UNIQUE (tenant_id, name)
);

INSERT INTO stream (id, tenant_id, name, created_at, next_run_at, not_before, fail_count,
                    last_error, last_error_at, last_ok_at)
SELECT id, id, 'alert', created_at, next_run_at, not_before, fail_count,
       last_error, last_error_at, last_ok_at
  FROM tenant;

-- The cursor of each stream (the alert stream's id is its tenant's).
CREATE TABLE cursor_v7 (
    stream_id   INTEGER PRIMARY KEY REFERENCES stream(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
INSERT INTO cursor_v7 (stream_id, position, updated_at)
SELECT tenant_id, position, updated_at FROM cursor;

-- Dedupe keys per stream (no foreign key, as in 005: a trigger removes
-- them), with 006's stored_at kept as it was.
CREATE TABLE seen_v7 (
    stream_id   INTEGER NOT NULL,            -- stream(id): see seen_stream_removed
    at          INTEGER NOT NULL,
    key         BLOB NOT NULL,
    stored_at   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, at, key)
) WITHOUT ROWID;
INSERT INTO seen_v7 (stream_id, at, key, stored_at)
SELECT tenant_id, at, key, stored_at FROM seen;

DROP VIEW tenant_status;
DROP TRIGGER seen_tenant_removed;
DROP TABLE seen;
ALTER TABLE seen_v7 RENAME TO seen;
CREATE INDEX seen_stored ON seen (stream_id, stored_at);
DROP TABLE cursor;
ALTER TABLE cursor_v7 RENAME TO cursor;

CREATE TRIGGER seen_stream_removed AFTER DELETE ON stream
BEGIN
    DELETE FROM seen WHERE stream_id = old.id;
END;

-- Batches, deliveries and runs name their stream (tenant_id stays: the
-- sink is the tenant's).
ALTER TABLE outbox ADD COLUMN stream_id INTEGER;
ALTER TABLE delivered ADD COLUMN stream_id INTEGER;
ALTER TABLE run ADD COLUMN stream_id INTEGER;
UPDATE outbox SET stream_id = tenant_id;
UPDATE delivered SET stream_id = tenant_id;
UPDATE run SET stream_id = tenant_id;
CREATE INDEX outbox_by_stream ON outbox(stream_id);
CREATE INDEX delivered_by_stream ON delivered(stream_id, delivered_at);

-- One row per stream: sqlite3 nscollect.db 'select * from stream_status'
CREATE VIEW stream_status AS
SELECT t.name AS tenant,
       s.name AS stream,
       CASE WHEN NOT t.enabled THEN 'disabled'
            WHEN s.fail_count > 0
              OR EXISTS (SELECT 1 FROM outbox o WHERE o.stream_id = s.id
                          AND o.attempts > 0 AND o.last_error IS NOT NULL) THEN 'failing'
            WHEN c.position IS NULL
              OR unixepoch() - c.position > 2 * t.interval_s + 300 THEN 'lagging'
            ELSE 'ok' END                                   AS state,
       c.position                                           AS cursor,
       unixepoch() - c.position                             AS lag_s,
       unixepoch() - (SELECT max(newest_at) FROM delivered d
                       WHERE d.stream_id = s.id)            AS newest_record_age_s,
       (SELECT coalesce(sum(records), 0) FROM delivered d
         WHERE d.stream_id = s.id AND d.created_at >= unixepoch() - 3600)
     + (SELECT coalesce(sum(records), 0) FROM outbox o
         WHERE o.stream_id = s.id AND o.created_at >= unixepoch() - 3600) AS records_1h,
       (SELECT coalesce(sum(records), 0) FROM delivered d
         WHERE d.stream_id = s.id AND d.created_at >= unixepoch() - 86400)
     + (SELECT coalesce(sum(records), 0) FROM outbox o
         WHERE o.stream_id = s.id AND o.created_at >= unixepoch() - 86400) AS records_24h,
       (SELECT count(*) FROM outbox o WHERE o.stream_id = s.id)            AS pending_batches,
       (SELECT coalesce(sum(bytes), 0) FROM outbox o WHERE o.stream_id = s.id) AS pending_bytes,
       (SELECT max(delivered_at) FROM delivered d WHERE d.stream_id = s.id) AS last_delivery_at,
       s.last_ok_at,
       max(s.next_run_at, s.not_before)                     AS next_run_at,
       s.fail_count,
       coalesce(s.last_error,
                (SELECT o.last_error FROM outbox o WHERE o.stream_id = s.id
                  AND o.last_error IS NOT NULL ORDER BY o.id LIMIT 1)) AS last_error,
       t.id AS tenant_id,
       s.id AS stream_id
  FROM stream s JOIN tenant t ON t.id = s.tenant_id
  LEFT JOIN cursor c ON c.stream_id = s.id;

-- The same columns as before, one row per tenant: a tenant is as healthy
-- as its worst stream (failing before lagging before ok), its cursor and
-- lag those of its furthest-behind stream, its counts the sums.
CREATE VIEW tenant_status AS
SELECT t.name,
       CASE WHEN NOT t.enabled THEN 'disabled'
            WHEN sum(ss.state = 'failing') > 0 THEN 'failing'
            WHEN sum(ss.state = 'lagging') > 0 OR count(ss.stream) = 0 THEN 'lagging'
            ELSE 'ok' END                                   AS state,
       CASE WHEN count(ss.cursor) < count(ss.stream) THEN NULL
            ELSE min(ss.cursor) END                         AS cursor,
       CASE WHEN count(ss.cursor) < count(ss.stream) THEN NULL
            ELSE max(ss.lag_s) END                          AS lag_s,
       min(ss.newest_record_age_s)                          AS newest_alert_age_s,
       coalesce(sum(ss.records_1h), 0)                      AS alerts_1h,
       coalesce(sum(ss.records_24h), 0)                     AS alerts_24h,
       coalesce(sum(ss.pending_batches), 0)                 AS pending_batches,
       coalesce(sum(ss.pending_bytes), 0)                   AS pending_bytes,
       max(ss.last_delivery_at)                             AS last_delivery_at,
       min(ss.last_ok_at)                                   AS last_ok_at,
       min(ss.next_run_at)                                  AS next_run_at,
       coalesce(max(ss.fail_count), 0)                      AS fail_count,
       (SELECT w.last_error FROM stream_status w WHERE w.tenant_id = t.id
         AND w.last_error IS NOT NULL
         ORDER BY w.state = 'failing' DESC, w.fail_count DESC, w.stream_id LIMIT 1) AS last_error
  FROM tenant t LEFT JOIN stream_status ss ON ss.tenant_id = t.id
 GROUP BY t.id
 ORDER BY t.id;

DROP VIEW recent_runs;
CREATE VIEW recent_runs AS
SELECT r.id AS run, t.name AS tenant, r.status,
       datetime(r.started_at, 'unixepoch') AS started,
       coalesce(r.finished_at, unixepoch()) - r.started_at AS seconds,
       datetime(r.window_start, 'unixepoch') AS window_start,
       datetime(r.window_end, 'unixepoch') AS window_end,
       r.pages, r.fetched, r.stored, r.error,
       coalesce(s.name, 'alert') AS stream
  FROM run r JOIN tenant t ON t.id = r.tenant_id LEFT JOIN stream s ON s.id = r.stream_id
 WHERE r.started_at >= unixepoch() - 7 * 86400
 ORDER BY r.id DESC;
