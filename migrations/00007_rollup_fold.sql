-- Rollups folded set-based instead of two row upserts per sample.
--
-- rollup_watermark.folded_before (W, hour-aligned) splits the minutes:
--   - every sample with minute < W is in rollup_hourly and rollup_daily;
--   - a sample with minute >= W is only in the timeline; reads aggregate
--     those minutes of one pk from the timeline (a short primary-key range:
--     W trails the clock by an hour or two) and merge them with the rows.
-- The store folds whole hours (or whole days) from the timeline into both
-- tables and moves W past them in one transaction (Store.FoldRollups, run
-- by Maintain and before retention drops a day). A sample recorded for a
-- minute < W (late, redelivered, old) goes to the rollups row by row in the
-- recording transaction as before. Record holds a shared advisory lock on
-- the hour and the day of each of its samples, a fold an exclusive one on
-- the hour or day it folds, so a sample is either seen by the fold or sees
-- the fold's new W.
--
-- W is NULL until the store first opens (it sets W to its clock's hour) on a
-- database without data. On a database with data, W is the current hour
-- (UTC): rollup rows of hours >= W are dropped (the timeline holds all of
-- their samples, so reads return the same values), and the daily rows of
-- the current day are rebuilt from its hourly rows before W. Stop recorders
-- of the previous version before migrating: they would keep folding every
-- sample into the rollups, counting samples >= W twice.

-- +goose Up
CREATE TABLE rollup_watermark (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    folded_before timestamptz
);

-- +goose StatementBegin
DO $$
DECLARE
    origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
    w      constant timestamptz := date_bin('1 hour', now(), origin);
    d      constant timestamptz := date_bin('1 day', now(), origin);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM rollup_hourly) AND NOT EXISTS (SELECT 1 FROM samples) THEN
        INSERT INTO rollup_watermark (folded_before) VALUES (NULL);
        RETURN;
    END IF;
    DELETE FROM rollup_hourly WHERE bucket_start >= w;
    DELETE FROM rollup_daily WHERE bucket_start >= d;
    INSERT INTO rollup_daily
        (pk, bucket_start, samples, follower_sum, follower_min, follower_max,
         following_sum, following_min, following_max, last_minute, follower_last, following_last)
    SELECT pk, d, sum(samples), sum(follower_sum), min(follower_min), max(follower_max),
           sum(following_sum), min(following_min), max(following_max), max(last_minute),
           (array_agg(follower_last ORDER BY last_minute DESC))[1],
           (array_agg(following_last ORDER BY last_minute DESC))[1]
    FROM rollup_hourly
    WHERE bucket_start >= d AND bucket_start < w
    GROUP BY pk;
    INSERT INTO rollup_watermark (folded_before) VALUES (w);
END
$$;
-- +goose StatementEnd
