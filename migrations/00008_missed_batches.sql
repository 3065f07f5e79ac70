-- Missed pks recorded per bucket and minute instead of one row each.
--
-- A row of missed_batches holds the pks of one group of a batch's failures:
-- one minute, one bucket (missed_bucket(pk), the store's fixed hash of the
-- pk into 1024 buckets: all pks of one of the pipeline's 1024 shards share
-- it), one class and one reason (summarized when a group's pks have many
-- reasons, see store.GroupFailures), as a sorted array. n is the array's
-- length, so counts need not read the arrays. A pk is in at most one row
-- per minute; a sample filling a missed (pk, minute) takes the pk out of
-- its row (the row goes when it is empty). Recording a miss thus costs an
-- array element instead of a row and two index entries.
--
-- The view missed keeps the old table's shape for ad-hoc queries and
-- checkers; the store writes missed_batches only.
--
-- Existing rows move over grouped by minute, bucket, class, reason and
-- recorded_at (the rows of one batch's group share the recording time).
-- Stop recorders of the previous version before migrating.

-- +goose Up
-- missed_bucket is influencer.ShardOf(pk, 1024): FNV-1a (32 bits) of the
-- decimal pk. The store computes it in Go (store.MissedBucket); this copy
-- moves the existing rows and serves ad-hoc queries.
-- +goose StatementBegin
CREATE FUNCTION missed_bucket(pk bigint) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    s constant text := pk::text;
    h bigint := 2166136261;
BEGIN
    FOR i IN 1..length(s) LOOP
        h := ((h # ascii(substr(s, i, 1))) * 16777619) & 4294967295;
    END LOOP;
    RETURN (h % 1024)::integer;
END
$$;
-- +goose StatementEnd

CREATE TABLE missed_batches (
    minute      timestamptz NOT NULL,
    bucket      integer     NOT NULL CHECK (bucket >= 0 AND bucket < 1024),
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    class       text        NOT NULL,
    reason      text        NOT NULL,
    n           integer     NOT NULL CHECK (n >= 0),
    pks         bigint[]    NOT NULL,
    recorded_at timestamptz NOT NULL,
    -- Lookups by (minute, bucket), MissedSince and retention by minute;
    -- n included so counts read the index only.
    PRIMARY KEY (minute, bucket, seq) INCLUDE (n)
);

INSERT INTO missed_batches (minute, bucket, class, reason, n, pks, recorded_at)
SELECT minute, missed_bucket(pk), class, reason, count(*), array_agg(pk ORDER BY pk), recorded_at
FROM missed
GROUP BY minute, missed_bucket(pk), class, reason, recorded_at
ORDER BY minute, missed_bucket(pk);

DROP TABLE missed;

CREATE VIEW missed AS
SELECT u.pk, b.minute, b.class, b.reason, b.recorded_at
FROM missed_batches b CROSS JOIN LATERAL unnest(b.pks) AS u(pk);
