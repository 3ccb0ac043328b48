-- 017: the keys pruned by when they were stored are found by a scan of
-- their stream's keys, at most every few minutes, instead of through the
-- seen_stored index (issues 15 and 20: the cost of a stored record).
--
-- Every key of a dataexport iterator stream goes by its stored time (and a
-- data-API key without a time or with one in the future): each one cost an
-- index entry written at its commit and sought and deleted at its prune,
-- about 0.4 us of the 3.6 us an iterator's page event cost. Now outbox.c
-- deletes them with one pass over the stream's keys once the oldest of
-- them is due, and not again within 300 s: a key may outlive its bound by
-- up to that long, and the table stays bounded.
--
-- stream.keys_stored_oldest: the oldest stored time among the stream's keys
-- that go by it; NULL when there are none; 0 when not known yet (streams
-- made before this release, or imported: the next commit that moves the
-- cursor looks it up).
-- stream.keys_scanned_at: when such a pass last deleted keys (0: never).

DROP INDEX seen_stored;
ALTER TABLE stream ADD COLUMN keys_stored_oldest INTEGER DEFAULT 0;
ALTER TABLE stream ADD COLUMN keys_scanned_at INTEGER NOT NULL DEFAULT 0;
