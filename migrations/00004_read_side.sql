-- Read side: structures the recorder maintains in the same transaction as the
-- samples (from inserted rows only), so that every dashboard read costs an
-- index lookup or a small bounded range, never a scan of the timeline or of
-- influencer_summary.
--
-- Rank. rank(pk) = 1 + number of active influencers with data whose current
-- follower count is strictly greater. Counts are grouped in rank buckets
-- (rank_bucket(), ~0.1 % wide, integer-exact, mirrored by store.RankBucket in
-- Go). rank_buckets holds the number of active influencers per fine bucket
-- (level 0) and per group of 128 fine buckets (level 1, bucket >> 7), so
--   rank = 1 + sum(level-1 groups above my group)        (<= ~200 rows)
--            + sum(level-0 buckets above mine in my group) (<= 127 rows)
--            + count(active rows in my bucket with a greater count)
-- the last term being a range scan of influencer_summary_rank_idx bounded by
-- the bucket's width. The same index serves the keyset-paginated leaderboard
-- (ordered by bucket, count, pk, which is count DESC, pk ASC). Counters move
-- only when a current count changes bucket, and are updated in sorted key
-- order so concurrent recorders cannot deadlock on them.
--
-- influencer_summary.active mirrors influencers.active (Track/Untrack flip it
-- and move the counters); prev_follower_count is the current count before the
-- row's last update, which the recorder's statement reads back (RETURNING) to
-- compute its deltas under the row lock.
--
-- Global average. global_stats holds the number of active influencers with
-- data and the sum of their current follower counts in 16 stripes (the
-- recorder writes stripe shard % 16, Track/Untrack stripe 0), summed on read,
-- so concurrent recorders do not all queue on one row.
--
-- Completeness. minute_progress counts, per minute and stripe, the samples
-- stored and the (pk, minute) pairs recorded as missed; a minute is complete
-- when stored + missed reaches the tracked count in effect at that minute,
-- read from registry_history (one row per registry change). registry_meta
-- gains the tracked counter.
--
-- Rollups. rollup_hourly and rollup_daily hold, per (pk, UTC hour/day), the
-- number of minutes, follower/following sum, min, max and the values of the
-- newest minute ("last" only moves forward in time). They are never dropped
-- by retention.
--
-- Existing data is backfilled so the structures agree with what Record
-- would have produced.

-- +goose Up
-- rank_bucket(c): c+1 below 2048, else (floor(log2(c+1)) - 10) * 1024 +
-- ((c+1) >> (floor(log2(c+1)) - 10)). floor(log2) is taken exactly from the
-- bit string. Not STRICT, so the planner can inline it.
-- +goose StatementBegin
CREATE FUNCTION rank_bucket(c bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN c < 2047 THEN (c + 1)::integer
        ELSE ((54 - position('1' IN (c + 1)::bit(64)::text)) * 1024
              + ((c + 1) >> (54 - position('1' IN (c + 1)::bit(64)::text))))::integer
    END
$$;
-- +goose StatementEnd

ALTER TABLE registry_meta ADD COLUMN tracked bigint NOT NULL DEFAULT 0;
UPDATE registry_meta SET tracked = (SELECT count(*) FROM influencers WHERE active);

CREATE TABLE registry_history (
    at      timestamptz NOT NULL,
    version bigint      NOT NULL,
    tracked bigint      NOT NULL,
    PRIMARY KEY (at, version)
);
INSERT INTO registry_history (at, version, tracked)
SELECT '-infinity', version, tracked FROM registry_meta;

ALTER TABLE influencer_summary
    ADD COLUMN active              boolean NOT NULL DEFAULT false,
    ADD COLUMN rank_bucket         integer NOT NULL DEFAULT 0,
    ADD COLUMN prev_follower_count bigint;
UPDATE influencer_summary s SET
    active = coalesce((SELECT i.active FROM influencers i WHERE i.pk = s.pk), false),
    rank_bucket = rank_bucket(s.follower_count),
    prev_follower_count = s.follower_count;
ALTER TABLE influencer_summary ALTER COLUMN rank_bucket DROP DEFAULT;

CREATE INDEX influencer_summary_rank_idx ON influencer_summary ((-rank_bucket), (-follower_count), pk)
    WHERE active;

CREATE TABLE rank_buckets (
    level  smallint NOT NULL,
    bucket integer  NOT NULL,
    n      bigint   NOT NULL,
    PRIMARY KEY (level, bucket)
);
INSERT INTO rank_buckets (level, bucket, n)
SELECT 0, rank_bucket, count(*) FROM influencer_summary WHERE active GROUP BY rank_bucket;
INSERT INTO rank_buckets (level, bucket, n)
SELECT 1, rank_bucket >> 7, count(*) FROM influencer_summary WHERE active GROUP BY rank_bucket >> 7;

CREATE TABLE global_stats (
    stripe         integer PRIMARY KEY,
    influencers    bigint  NOT NULL,
    follower_total bigint  NOT NULL
);
INSERT INTO global_stats (stripe, influencers, follower_total)
SELECT s, 0, 0 FROM generate_series(0, 15) AS s;
UPDATE global_stats SET
    influencers = (SELECT count(*) FROM influencer_summary WHERE active),
    follower_total = (SELECT coalesce(sum(follower_count), 0) FROM influencer_summary WHERE active)
WHERE stripe = 0;

CREATE TABLE minute_progress (
    minute timestamptz NOT NULL,
    stripe integer     NOT NULL,
    stored bigint      NOT NULL,
    missed bigint      NOT NULL,
    PRIMARY KEY (minute, stripe)
);
INSERT INTO minute_progress (minute, stripe, stored, missed)
SELECT minute, 0, sum(stored), sum(missed) FROM (
    SELECT minute, count(*) AS stored, 0 AS missed FROM samples
    WHERE minute >= now() - interval '1 day' GROUP BY minute
    UNION ALL
    SELECT minute, 0, count(*) FROM missed
    WHERE minute >= now() - interval '1 day' GROUP BY minute
) x GROUP BY minute;

CREATE TABLE rollup_hourly (
    pk              bigint      NOT NULL,
    bucket_start    timestamptz NOT NULL,
    samples         bigint      NOT NULL,
    follower_sum    bigint      NOT NULL,
    follower_min    bigint      NOT NULL,
    follower_max    bigint      NOT NULL,
    following_sum   bigint      NOT NULL,
    following_min   bigint      NOT NULL,
    following_max   bigint      NOT NULL,
    last_minute     timestamptz NOT NULL,
    follower_last   bigint      NOT NULL,
    following_last  bigint      NOT NULL,
    PRIMARY KEY (pk, bucket_start)
) WITH (fillfactor = 70);

CREATE TABLE rollup_daily (LIKE rollup_hourly INCLUDING ALL) WITH (fillfactor = 70);

INSERT INTO rollup_hourly
SELECT pk, date_bin('1 hour', minute, timestamptz '2000-01-01 00:00:00+00') AS b,
       count(*), sum(follower_count), min(follower_count), max(follower_count),
       sum(following_count), min(following_count), max(following_count), max(minute),
       (array_agg(follower_count ORDER BY minute DESC))[1], (array_agg(following_count ORDER BY minute DESC))[1]
FROM samples GROUP BY pk, b;

INSERT INTO rollup_daily
SELECT pk, date_bin('1 day', minute, timestamptz '2000-01-01 00:00:00+00') AS b,
       count(*), sum(follower_count), min(follower_count), max(follower_count),
       sum(following_count), min(following_count), max(following_count), max(minute),
       (array_agg(follower_count ORDER BY minute DESC))[1], (array_agg(following_count ORDER BY minute DESC))[1]
FROM samples GROUP BY pk, b;

-- drop_sample_partitions drops the timeline's daily partitions that end at
-- or before cutoff (whole days, never row deletes) and returns how many it
-- dropped. On a TimescaleDB hypertable it drops the chunks older than cutoff
-- instead. Concurrent callers are serialised by an advisory lock.
-- +goose StatementBegin
CREATE FUNCTION drop_sample_partitions(cutoff timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    part    record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('drop_sample_partitions'));
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('samples')) THEN
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
            EXECUTE 'SELECT count(*)::integer FROM drop_chunks(''samples'', older_than => $1)'
                INTO dropped USING cutoff;
        END IF;
        RETURN dropped;
    END IF;
    FOR part IN
        SELECT c.relname, to_date(substr(c.relname, 9), 'YYYYMMDD') AS day
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'samples'::regclass AND c.relname ~ '^samples_[0-9]{8}$'
        ORDER BY 2
    LOOP
        EXIT WHEN ((part.day + 1)::timestamp AT TIME ZONE 'UTC') > cutoff;
        EXECUTE format('DROP TABLE IF EXISTS %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
-- +goose StatementEnd

-- ensure_sample_retention makes a TimescaleDB retention policy drop the
-- timeline's chunks older than keep, and returns true, when samples is a
-- hypertable; otherwise it returns false and the store drops partitions
-- itself (drop_sample_partitions).
-- +goose StatementBegin
CREATE FUNCTION ensure_sample_retention(keep interval)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    current_keep interval;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('samples'))
       OR NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('drop_sample_partitions'));
    EXECUTE $q$
        SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs
        WHERE proc_name = 'policy_retention' AND hypertable_name = 'samples'
        LIMIT 1$q$ INTO current_keep;
    IF current_keep IS DISTINCT FROM keep THEN
        IF current_keep IS NOT NULL THEN
            EXECUTE $q$SELECT remove_retention_policy('samples', if_exists => true)$q$;
        END IF;
        EXECUTE $q$SELECT add_retention_policy('samples', drop_after => $1)$q$ USING keep;
    END IF;
    RETURN true;
END
$$;
-- +goose StatementEnd
