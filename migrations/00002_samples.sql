-- The minute timeline, keyed by (pk, minute) and nothing else: at one million
-- influencers it grows ~1.4 billion rows a day, so it carries no index beyond
-- its primary key. It is a TimescaleDB hypertable (1-day chunks) where the
-- extension can be loaded, and a natively range-partitioned table with daily
-- partitions samples_YYYYMMDD otherwise.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND (EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
            OR current_setting('shared_preload_libraries', true) LIKE '%timescaledb%') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE samples (
            pk              bigint      NOT NULL,
            minute          timestamptz NOT NULL,
            follower_count  bigint      NOT NULL,
            following_count bigint      NOT NULL,
            PRIMARY KEY (pk, minute)
        );
        PERFORM create_hypertable('samples', 'minute',
            chunk_time_interval => interval '1 day',
            create_default_indexes => false);
    ELSE
        CREATE TABLE samples (
            pk              bigint      NOT NULL,
            minute          timestamptz NOT NULL,
            follower_count  bigint      NOT NULL,
            following_count bigint      NOT NULL,
            PRIMARY KEY (pk, minute)
        ) PARTITION BY RANGE (minute);
    END IF;
END
$$;
-- +goose StatementEnd

-- ensure_sample_partitions creates the daily partitions (UTC days) for days
-- days starting at first_day and returns how many it created. It is a no-op
-- on a hypertable (TimescaleDB creates chunks itself). Partition names and
-- bounds are formatted from the date only. Concurrent callers are tolerated:
-- a partition created by someone else in the meantime is not an error.
-- +goose StatementBegin
CREATE FUNCTION ensure_sample_partitions(first_day date, days integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    d       date;
    part    text;
    created integer := 0;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_partitioned_table
        WHERE partrelid = to_regclass('samples')
    ) THEN
        RETURN 0;
    END IF;
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        part := 'samples_' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF samples FOR VALUES FROM (%L) TO (%L)',
                part,
                to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
                to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
            created := created + 1;
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL; -- created concurrently by another process
        END;
    END LOOP;
    RETURN created;
END
$$;
-- +goose StatementEnd
