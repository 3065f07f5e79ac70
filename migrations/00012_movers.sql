-- Top movers. RecomputeMovers (run hourly by the scheduler's leader) reads
-- every active influencer once, with one primary-key lookup of the timeline
-- each for its value a window ago, and keeps the store.MaxMovers largest
-- gains (direction 1) and losses (direction -1) per window here, replacing
-- the previous lists in one transaction. The API reads a list by the primary
-- key (window_seconds, direction, position): no scan at request time.
-- movers_runs says when each window's lists were computed (also when they
-- came out empty).

-- +goose Up
CREATE TABLE movers (
    window_seconds      integer     NOT NULL,
    direction           smallint    NOT NULL CHECK (direction IN (1, -1)),
    position            integer     NOT NULL,
    pk                  bigint      NOT NULL,
    username            text        NOT NULL,
    follower_count      bigint      NOT NULL,
    base_follower_count bigint      NOT NULL,
    base_minute         timestamptz NOT NULL,
    growth              bigint      NOT NULL,
    PRIMARY KEY (window_seconds, direction, position)
);

CREATE TABLE movers_runs (
    window_seconds integer     PRIMARY KEY,
    computed_at    timestamptz NOT NULL
);
