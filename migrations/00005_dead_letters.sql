-- Dead letters: every message of the dead-letter topics (fetcher_dlq,
-- result_handler_dlq), archived by the dead-letter archiver so that they can
-- be listed and replayed ('mockstagram dlq list|replay'). The id is the
-- message's UUID: archiving a redelivered message changes nothing. The
-- payload is kept as received (bytes: a poisoned message need not be JSON),
-- the metadata as JSON (it carries the trace context). Lists are keyset
-- paginated by (received_at, id), optionally per topic.

-- +goose Up
CREATE TABLE dead_letters (
    id             text PRIMARY KEY,
    topic          text        NOT NULL,
    original_topic text        NOT NULL,
    reason         text        NOT NULL,
    class          text        NOT NULL,
    stage          text        NOT NULL,
    attempts       integer     NOT NULL CHECK (attempts >= 0),
    shard          integer,
    minute         timestamptz,
    payload        bytea       NOT NULL,
    metadata       jsonb       NOT NULL,
    received_at    timestamptz NOT NULL,
    replayed_at    timestamptz
);

CREATE INDEX dead_letters_received_idx ON dead_letters (received_at, id);
CREATE INDEX dead_letters_topic_received_idx ON dead_letters (topic, received_at, id);
