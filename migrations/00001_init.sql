-- +goose Up

-- One attempt per payment to settle, keyed by (mchid, out_trade_no). mchid is
-- '' when the merchant has none. Every column the executor reads is here, so a
-- claim is one row read.
CREATE TABLE attempts (
    id               bigserial PRIMARY KEY,
    mchid            text        NOT NULL DEFAULT '',
    out_trade_no     text        NOT NULL,
    syssn            text        NOT NULL DEFAULT '',   -- original QFPay transaction, once known
    txamt            bigint      NOT NULL CHECK (txamt > 0),
    txcurrcd         text        NOT NULL DEFAULT '',
    txdtm            text        NOT NULL,              -- as the POS sent it, merchant local time
    pay_type         text        NOT NULL DEFAULT '',
    udid             text        NOT NULL DEFAULT '',
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'reversed', 'closed', 'paid', 'refunded',
                                       'not_paid', 'not_found', 'unsupported', 'needs_review')),
    step             text        NOT NULL DEFAULT 'query'
                     CHECK (step IN ('query', 'cancel', 'confirm', 'done')),
    method           text        NOT NULL DEFAULT 'none' CHECK (method IN ('reversal', 'close', 'none')),
    -- true from just before a cancel is sent until its answer is written: a
    -- worker that claims an attempt with it set queries first, never re-sends.
    cancel_pending   boolean     NOT NULL DEFAULT false,
    cancel_syssn     text        NOT NULL DEFAULT '',
    respcd           text        NOT NULL DEFAULT '',
    resperr          text        NOT NULL DEFAULT '',
    respmsg          text        NOT NULL DEFAULT '',
    reason           text        NOT NULL DEFAULT '',
    gateway_calls    integer     NOT NULL DEFAULT 0,
    rechecks         integer     NOT NULL DEFAULT 0,   -- re-checks spent in the current phase
    next_run_at      timestamptz NOT NULL,
    deadline_at      timestamptz NOT NULL,
    lease_owner      text        NOT NULL DEFAULT '',
    lease_expires_at timestamptz,
    token            bigint      NOT NULL DEFAULT 0,   -- fencing token, +1 on every claim
    first_seen_at    timestamptz NOT NULL,
    decided_at       timestamptz,
    updated_at       timestamptz NOT NULL,
    UNIQUE (mchid, out_trade_no)
);

-- "Claim the due ones" walks only pending rows; final rows (the vast
-- majority over time) are not in this index at all.
CREATE INDEX attempts_due_idx ON attempts (next_run_at) WHERE status = 'pending';
-- Ops: list by status, newest first.
CREATE INDEX attempts_status_idx ON attempts (status, updated_at DESC);

-- One row per input event. A redelivered event (same event_id) is not
-- written twice. A conflicting duplicate (same key, different txamt or txdtm)
-- is kept with conflict = true and never changes its attempt.
CREATE TABLE events (
    event_id        text        PRIMARY KEY,
    attempt_id      bigint      NOT NULL REFERENCES attempts (id),
    mchid           text        NOT NULL DEFAULT '',
    out_trade_no    text        NOT NULL,
    syssn           text        NOT NULL DEFAULT '',
    txamt           bigint      NOT NULL,
    txcurrcd        text        NOT NULL DEFAULT '',
    txdtm           text        NOT NULL,
    pay_type        text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    occurred_at     timestamptz,
    topic           text        NOT NULL DEFAULT '',
    kafka_partition integer     NOT NULL DEFAULT 0,
    kafka_offset    bigint      NOT NULL DEFAULT 0,
    conflict        boolean     NOT NULL DEFAULT false,
    conflict_reason text        NOT NULL DEFAULT '',
    payload         bytea,
    received_at     timestamptz NOT NULL
);
CREATE INDEX events_attempt_idx ON events (attempt_id);

-- Outcomes waiting for the publisher. A row is a snapshot of the attempt's
-- final state for one event, so a later ops retry cannot change what an
-- unpublished row says.
CREATE TABLE outbox (
    id            bigserial   PRIMARY KEY,
    event_id      text        NOT NULL REFERENCES events (event_id),
    attempt_id    bigint      NOT NULL REFERENCES attempts (id),
    status        text        NOT NULL,
    method        text        NOT NULL,
    syssn         text        NOT NULL,
    cancel_syssn  text        NOT NULL,
    respcd        text        NOT NULL,
    resperr       text        NOT NULL,
    respmsg       text        NOT NULL,
    reason        text        NOT NULL,
    gateway_calls integer     NOT NULL,
    decided_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_attempt_idx ON outbox (attempt_id);

-- One row per gateway call. Never holds the client key or a signature.
CREATE TABLE gateway_calls (
    id          bigserial   PRIMARY KEY,
    attempt_id  bigint      NOT NULL REFERENCES attempts (id),
    token       bigint      NOT NULL,
    fenced_out  boolean     NOT NULL DEFAULT false, -- made by a worker whose lease was taken over
    step        text        NOT NULL,
    endpoint    text        NOT NULL,
    request     jsonb       NOT NULL,
    http_status integer     NOT NULL DEFAULT 0,
    respcd      text        NOT NULL DEFAULT '',
    error       text        NOT NULL DEFAULT '',
    response    bytea,
    latency_us  bigint      NOT NULL,
    called_at   timestamptz NOT NULL
);
CREATE INDEX gateway_calls_attempt_idx ON gateway_calls (attempt_id, id);

-- +goose Down
DROP TABLE gateway_calls;
DROP TABLE outbox;
DROP TABLE events;
DROP TABLE attempts;
