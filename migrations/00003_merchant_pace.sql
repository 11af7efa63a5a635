-- +goose Up

-- One pacing row per merchant, shared by every instance: two GCRAs, one per
-- QFPay limit. tat is the per-minute one's theoretical arrival time (a burst
-- tolerance lets a few calls go back to back), tat_s the per-second one's.
-- A gateway call reserves the next slot by moving both on (atomically, on
-- PostgreSQL's clock); a 429 or Retry-After pushes them to the end of the
-- pause, so every instance waits. free_at is when the next slot is free:
-- claims skip merchants whose free_at is beyond a short look-ahead, so no
-- attempt is claimed for a merchant with no budget now.
--
-- UNLOGGED: a pacing row is written on every gateway call and is worth
-- nothing after a crash of PostgreSQL (the table is then emptied and every
-- merchant starts with its burst; a 429 pauses it if that was too much).
CREATE UNLOGGED TABLE merchant_pace (
    mchid        text        PRIMARY KEY,
    tat          timestamptz NOT NULL,
    tat_s        timestamptz NOT NULL,
    free_at      timestamptz NOT NULL,
    paused_until timestamptz,
    pauses       bigint      NOT NULL DEFAULT 0
);

-- Claims look for due attempts merchant by merchant.
CREATE INDEX attempts_mchid_due_idx ON attempts (mchid, next_run_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX attempts_mchid_due_idx;
DROP TABLE merchant_pace;
