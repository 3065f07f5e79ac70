-- Suspicion: the latest is_suspicious answer per influencer. It is a table of
-- its own, not columns of influencer_summary, so that saving answers never
-- contends with the recorder's per-minute summary updates (no shared row
-- locks, no extra dead tuples in the hot table). An answer replaces the
-- stored one only when it was checked later (saves use
-- INSERT ... ON CONFLICT (pk) DO UPDATE ... WHERE checked_at < excluded.checked_at),
-- so replays and redeliveries are safe. Answers may exist for pks without a
-- summary or registry row.

-- +goose Up
CREATE TABLE suspicion (
    pk         bigint      PRIMARY KEY,
    suspicious boolean     NOT NULL,
    checked_at timestamptz NOT NULL
);
