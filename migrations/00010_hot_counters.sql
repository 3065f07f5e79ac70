-- Room for HOT updates in the small counter tables every batch write
-- updates (rank_buckets, global_stats, minute_progress).
--
-- Their updated columns are not indexed, so with free space on the page an
-- update is HOT: no new index entry, and the dead versions are pruned on
-- the page by later reads and writes, without waiting for VACUUM. Filled to
-- 100 % (the default) every update moved the row to another page with a new
-- index entry: after one 1,000,000-a-minute benchmark on a server with
-- autovacuum off, rank_buckets held 12.7k live and 302k dead rows and a rank
-- read visited 1,436 row versions to sum 22. The store also vacuums these
-- tables every minute (Store.VacuumCounters). CLUSTER rewrites each table
-- with the new fill factor (small tables: milliseconds).

-- +goose Up
ALTER TABLE rank_buckets SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
CLUSTER rank_buckets USING rank_buckets_pkey;
ALTER TABLE global_stats SET (fillfactor = 10, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
CLUSTER global_stats USING global_stats_pkey;
ALTER TABLE minute_progress SET (fillfactor = 50);
CLUSTER minute_progress USING minute_progress_pkey;
