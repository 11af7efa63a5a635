-- +goose Up

-- One pacing row per merchant, shared by every instance: the GCRA's
-- theoretical arrival time. A gateway call reserves the next slot by moving
-- tat one interval on (atomically, on PostgreSQL's clock); a 429 or
-- Retry-After pushes tat to the end of the pause, so every instance waits.
-- Claims skip merchants whose tat is beyond a short look-ahead: no attempt
-- is claimed for a merchant with no budget now.
CREATE TABLE merchant_pace (
    mchid       text        PRIMARY KEY,
    tat         timestamptz NOT NULL,
    paused_until timestamptz,
    pauses      bigint      NOT NULL DEFAULT 0
);

-- Claims look for due attempts merchant by merchant.
CREATE INDEX attempts_mchid_due_idx ON attempts (mchid, next_run_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX attempts_mchid_due_idx;
DROP TABLE merchant_pace;
