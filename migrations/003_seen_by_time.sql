-- 003: dedupe keys ordered by the record's window time.
--
-- With (tenant_id, key) first, keys are random hashes: every commit of a
-- few thousand records rewrote thousands of scattered b-tree pages, and
-- the cost grew with the table (66% of a 1M-alert run's CPU was commits).
-- Ordered by (tenant_id, at, key), new keys land at the end of the tenant's
-- range and pruning deletes a prefix. A record is the same record when its
-- _id (or bytes) and its window time (insertion or event time, which
-- Netskope fixes per record) are the same; records that carry no such time
-- are kept under at = -1 and never pruned.

CREATE TABLE seen_v3 (
    tenant_id   INTEGER NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    key         BLOB NOT NULL,
    PRIMARY KEY (tenant_id, at, key)
) WITHOUT ROWID;

INSERT INTO seen_v3 (tenant_id, at, key) SELECT tenant_id, at, key FROM seen;
DROP TABLE seen;
ALTER TABLE seen_v3 RENAME TO seen;
