-- 006: dedupe keys also pruned by when nscollect stored them.
--
-- Keys were pruned by `at`, the time the record claims (insertion or event
-- time). A record without that time (at = -1) or with a far-future one
-- was never pruned: a server sending such records grew the table for ever.
-- stored_at is nscollect's own clock when the key was committed. A record
-- can only have been in a window that ended by then, so once stored_at is
-- older than cursor - overlap - margin the record can never be re-read,
-- whatever time it claims: the key goes (the index makes that a range
-- delete, appended to in time order like the table).
--
-- Keys already there get their own `at` where it is a plausible past time
-- (so they go exactly when they went before), else the migration's time.

ALTER TABLE seen ADD COLUMN stored_at INTEGER NOT NULL DEFAULT 0;
UPDATE seen SET stored_at = CASE WHEN at >= 0 AND at <= unixepoch() THEN at ELSE unixepoch() END;
CREATE INDEX seen_stored ON seen (tenant_id, stored_at);
