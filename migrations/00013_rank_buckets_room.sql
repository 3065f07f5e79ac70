-- More room for HOT updates in rank_buckets under concurrent recorders.
--
-- Every sample of a tracked influencer whose count changes bucket moves a
-- rank_buckets row (about one row update per sample at one million a
-- minute: small accounts change bucket with every count change). With
-- several recorders writing at once, the hot pages are nearly always
-- pinned, so the page pruning that makes room for the next HOT version
-- rarely gets its cleanup lock: at fill factor 50 a page filled up, 29 % of
-- the updates were not HOT (new index entries, row versions on other
-- pages), and the lookups stepped over the dead versions: 38.5 buffer
-- accesses per sample in rank_buckets alone, against 3 with one recorder
-- (BenchmarkRecordMillion, 4 writers, a million influencers; the whole
-- statement reads ~30 per sample with one). At fill factor 10 (the
-- minimum) 91 % of the updates are HOT and rank_buckets reads 15.2 per
-- sample: 64 -> 41 buffer accesses per sample for the whole batch write.
-- The table is small (~13k rows at a million influencers, ~650 pages at
-- this fill factor); CLUSTER rewrites it at once (milliseconds).

-- +goose Up
ALTER TABLE rank_buckets SET (fillfactor = 10);
CLUSTER rank_buckets USING rank_buckets_pkey;
