-- 002: a tenant whose batches cannot be delivered (403, 404, a rejected
-- key) is 'failing', not 'ok'; and the age of the newest delivered alert.

DROP VIEW tenant_status;

CREATE VIEW tenant_status AS
SELECT t.name,
       CASE WHEN NOT t.enabled THEN 'disabled'
            WHEN t.fail_count > 0
              OR EXISTS (SELECT 1 FROM outbox o WHERE o.tenant_id = t.id
                          AND o.attempts > 0 AND o.last_error IS NOT NULL) THEN 'failing'
            WHEN c.position IS NULL
              OR unixepoch() - c.position > 2 * t.interval_s + 300 THEN 'lagging'
            ELSE 'ok' END                                   AS state,
       c.position                                           AS cursor,
       unixepoch() - c.position                             AS lag_s,
       unixepoch() - (SELECT max(newest_at) FROM delivered d
                       WHERE d.tenant_id = t.id)            AS newest_alert_age_s,
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
