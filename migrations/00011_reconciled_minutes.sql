-- Reconciled minutes. The scheduler's leader reconciles every minute whose
-- deadline has passed: the pks tracked at the minute that have neither a
-- sample nor a missed entry (their shard was never scheduled, or its task or
-- result was lost) are recorded as missed with class not-scheduled, and the
-- minute is marked reconciled here, in stripe 0 of its minute_progress rows.
-- Stats counts a reconciled minute complete; the reconciler skips it. The
-- flag goes with the progress counters' retention.

-- +goose Up
ALTER TABLE minute_progress ADD COLUMN reconciled boolean NOT NULL DEFAULT false;
