-- 015: a batch delivered in several requests (the secops:// sink, issue 18).
--
-- outbox.sent_bytes: how much of the batch's body SecOps has accepted; the
-- next attempt starts there, at the record after the last accepted request.
-- outbox.in_flight: a request starting at sent_bytes was sent (or about to
-- be) and no answer was seen: resending it may double its records.
-- stream.ambiguous_retries: how many such requests were sent again - the
-- one way the secops:// sink can deliver a record twice, counted so that
-- status, the views and /metrics say how often it happened.
-- The views gain a last column, ambiguous_retries.

ALTER TABLE outbox ADD COLUMN sent_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stream ADD COLUMN ambiguous_retries INTEGER NOT NULL DEFAULT 0;

DROP VIEW tenant_status;
DROP VIEW stream_status;
CREATE VIEW stream_status AS
SELECT t.name AS tenant,
       s.name AS stream,
       CASE WHEN t.moved_at IS NOT NULL THEN 'moved'
            WHEN NOT t.enabled THEN 'disabled'
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
       s.id AS stream_id,
       s.conflicts                                          AS conflicts,
       s.ambiguous_retries                                  AS ambiguous_retries
  FROM stream s JOIN tenant t ON t.id = s.tenant_id
  LEFT JOIN cursor c ON c.stream_id = s.id;

-- The same columns as before, one row per tenant: a tenant is as healthy
-- as its worst stream (failing before lagging before ok), its cursor and
-- lag those of its furthest-behind stream, its counts the sums.
CREATE VIEW tenant_status AS
SELECT t.name,
       CASE WHEN t.moved_at IS NOT NULL THEN 'moved'
            WHEN NOT t.enabled THEN 'disabled'
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
         ORDER BY w.state = 'failing' DESC, w.fail_count DESC, w.stream_id LIMIT 1) AS last_error,
       coalesce(sum(ss.conflicts), 0)                       AS conflicts,
       coalesce(sum(ss.ambiguous_retries), 0)               AS ambiguous_retries
  FROM tenant t LEFT JOIN stream_status ss ON ss.tenant_id = t.id
 GROUP BY t.id
 ORDER BY t.id;
