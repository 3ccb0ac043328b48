-- 012: a new stream's first window starts where its first attempt said.
-- Before, a stream without a cursor read [now - lookback, ...) on every
-- attempt, so a stream whose first attempts failed (a wrong token fixed an
-- hour later, a 500) started later each time, and the records between the
-- first attempt's start and the successful one's were never read. The
-- first attempt writes its start here; later attempts read it. NULL: no
-- attempt yet (or the lookback was changed before any cursor existed).
ALTER TABLE stream ADD COLUMN first_start INTEGER;
