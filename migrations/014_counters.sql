-- 014: counters for /metrics (issue 16) that survive a restart.
--
-- stream.fetched_total, stored_total: records read from Netskope
-- (duplicates included) and new records committed to the outbox;
-- stream.delivered_records_total, delivered_bytes_total: what the sinks
-- accepted. They are kept by triggers on the rows that already record
-- each event (run, delivered), so they move in the same transaction as the
-- records they count and a scrape reads one row per stream instead of
-- summing a history that only grows. They start from that history.

ALTER TABLE stream ADD COLUMN fetched_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stream ADD COLUMN stored_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stream ADD COLUMN delivered_records_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stream ADD COLUMN delivered_bytes_total INTEGER NOT NULL DEFAULT 0;

UPDATE stream SET
    fetched_total = (SELECT coalesce(sum(fetched), 0) FROM run r WHERE r.stream_id = stream.id),
    stored_total = (SELECT coalesce(sum(stored), 0) FROM run r WHERE r.stream_id = stream.id),
    delivered_records_total = (SELECT coalesce(sum(records), 0) FROM delivered d
                                WHERE d.stream_id = stream.id),
    delivered_bytes_total = (SELECT coalesce(sum(bytes), 0) FROM delivered d
                              WHERE d.stream_id = stream.id);

CREATE TRIGGER run_counts_stream AFTER UPDATE OF fetched, stored ON run
WHEN new.fetched != old.fetched OR new.stored != old.stored
BEGIN
    UPDATE stream SET fetched_total = fetched_total + new.fetched - old.fetched,
                      stored_total = stored_total + new.stored - old.stored
     WHERE id = new.stream_id;
END;

CREATE TRIGGER delivered_counts_stream AFTER INSERT ON delivered
BEGIN
    UPDATE stream SET delivered_records_total = delivered_records_total + new.records,
                      delivered_bytes_total = delivered_bytes_total + new.bytes
     WHERE id = new.stream_id;
END;
