-- 004: large batch bodies live in files, not in the database.
--
-- A batch of at least outbox.spool_min_bytes is written to
-- <database>.spool/<id>.ndjson (fsynced before its row commits) and its
-- row keeps an empty body. An 8 MiB body stored in SQLite was written
-- four times (WAL, database, read back, sink); spooled it is written once,
-- and a file sink hard-links it into place. Rows stored before this
-- migration keep their bodies and are delivered as before.

ALTER TABLE outbox ADD COLUMN spooled INTEGER NOT NULL DEFAULT 0;
