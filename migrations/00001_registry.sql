-- Registry of tracked influencers. registry_meta is a single row whose
-- version is bumped in the same transaction as every registry change, so the
-- scheduler can poll it cheaply; bootstrapped marks that the initial pk range
-- was seeded once.

-- +goose Up
CREATE TABLE influencers (
    pk         bigint      PRIMARY KEY,
    active     boolean     NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE registry_meta (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    version      bigint  NOT NULL,
    bootstrapped boolean NOT NULL
);

INSERT INTO registry_meta (id, version, bootstrapped) VALUES (true, 0, false);
