-- +goose Up

-- partially_refunded: QFPay's record shows cancel=5, part of the money is
-- still captured. It is its own status, never refunded.
ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check
    CHECK (status IN ('pending', 'reversed', 'closed', 'paid', 'refunded', 'partially_refunded',
                      'not_paid', 'not_found', 'unsupported', 'needs_review'));

ALTER TABLE attempts
    -- cancels that may have left, over the attempt's whole life (operator
    -- retries included): counted when the intent is written, before the send
    ADD COLUMN cancel_calls    integer NOT NULL DEFAULT 0,
    -- a cancel may have reached QFPay (acknowledged, or its answer lost):
    -- from then on "no record" is never not_found
    ADD COLUMN cancel_reached  boolean NOT NULL DEFAULT false,
    -- the last cancel's answer ('' when it was lost)
    ADD COLUMN cancel_respcd   text    NOT NULL DEFAULT '',
    -- gateway calls charged to the per-attempt budget since intake or the
    -- last operator retry
    ADD COLUMN budget_calls    integer NOT NULL DEFAULT 0,
    -- the last payment record read: its code, cancel flag, and QFPay's own
    -- amount and currency ('' and 0 before one was read)
    ADD COLUMN record_respcd   text    NOT NULL DEFAULT '',
    ADD COLUMN record_cancel   text    NOT NULL DEFAULT '',
    ADD COLUMN record_txamt    bigint  NOT NULL DEFAULT 0,
    ADD COLUMN record_txcurrcd text    NOT NULL DEFAULT '';

-- Attempts from before this migration: count the cancels their audit rows
-- show (the earlier table re-cancelled without a bound), keep the last
-- answer, and count an unanswered intent as a cancel that may have left.
UPDATE attempts a SET
    cancel_calls  = c.n,
    cancel_respcd = c.last_respcd
FROM (
    SELECT attempt_id, count(*) AS n,
           (array_agg(respcd ORDER BY id DESC))[1] AS last_respcd
    FROM gateway_calls
    WHERE endpoint IN ('reversal', 'close') -- fenced-out calls happened at QFPay all the same
    GROUP BY attempt_id
) c
WHERE c.attempt_id = a.id;
UPDATE attempts SET cancel_calls = cancel_calls + 1 WHERE cancel_pending;
UPDATE attempts SET cancel_reached = true WHERE cancel_calls > 0 AND cancel_respcd NOT IN ('1136', '1268');
UPDATE attempts SET budget_calls = gateway_calls;

ALTER TABLE outbox
    ADD COLUMN record_txamt    bigint NOT NULL DEFAULT 0,
    ADD COLUMN record_txcurrcd text   NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE outbox DROP COLUMN record_txamt, DROP COLUMN record_txcurrcd;
ALTER TABLE attempts DROP COLUMN cancel_calls, DROP COLUMN cancel_reached, DROP COLUMN cancel_respcd,
    DROP COLUMN budget_calls, DROP COLUMN record_respcd, DROP COLUMN record_cancel, DROP COLUMN record_txamt, DROP COLUMN record_txcurrcd;
UPDATE attempts SET status = 'needs_review' WHERE status = 'partially_refunded';
ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check
    CHECK (status IN ('pending', 'reversed', 'closed', 'paid', 'refunded',
                      'not_paid', 'not_found', 'unsupported', 'needs_review'));
