-- influencer_summary is maintained incrementally from the timeline rows that
-- were actually inserted (running follower sum and count, latest values), so
-- reads never scan the timeline. missed records the (pk, minute) pairs that
-- could not be fetched; an entry is removed when a sample for it arrives.

-- +goose Up
CREATE TABLE influencer_summary (
    pk              bigint      PRIMARY KEY,
    username        text        NOT NULL,
    follower_count  bigint      NOT NULL,
    following_count bigint      NOT NULL,
    last_minute     timestamptz NOT NULL,
    samples         bigint      NOT NULL,
    follower_sum    bigint      NOT NULL
);

CREATE TABLE missed (
    pk          bigint      NOT NULL,
    minute      timestamptz NOT NULL,
    class       text        NOT NULL,
    reason      text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (pk, minute)
);

CREATE INDEX missed_minute_idx ON missed (minute);
