-- +goose Up

-- What operators did to attempts by hand (reversald attempts retry|resolve):
-- who, why, and the state the attempt left, so nothing an operator changes
-- is lost. Purged with its attempt.
CREATE TABLE operator_actions (
    id              bigserial   PRIMARY KEY,
    attempt_id      bigint      NOT NULL REFERENCES attempts (id),
    action          text        NOT NULL CHECK (action IN ('retry', 'resolve')),
    operator        text        NOT NULL CHECK (operator <> ''),
    note            text        NOT NULL CHECK (note <> ''),
    from_status     text        NOT NULL,
    to_status       text        NOT NULL,
    -- the attempt's reason and answer before the action: a retry clears the
    -- attempt's reason, the history keeps it here
    previous_reason text        NOT NULL,
    previous_respcd text        NOT NULL,
    token           bigint      NOT NULL, -- the fencing token the action set
    at              timestamptz NOT NULL
);
CREATE INDEX operator_actions_attempt_idx ON operator_actions (attempt_id, id);

-- An attempt an operator resolved, and each outcome of it (a late event's
-- included), names them; '' when the daemon decided. A retry clears it.
ALTER TABLE attempts ADD COLUMN resolved_by text NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN resolved_by text NOT NULL DEFAULT '';

-- Listing by first-seen or decided time with keyset paging, and purge's walk
-- over decided attempts oldest first. decided_at is set exactly when an
-- attempt is final, so pending attempts (the hot path) are not in the second.
CREATE INDEX attempts_first_seen_idx ON attempts (first_seen_at, id);
CREATE INDEX attempts_decided_idx ON attempts (decided_at, id) WHERE decided_at IS NOT NULL;

-- Purge deletes events, and each deleted event's foreign key from outbox is
-- checked: without this index every check reads the whole outbox.
CREATE INDEX outbox_event_idx ON outbox (event_id);

-- +goose Down
DROP INDEX outbox_event_idx;
DROP INDEX attempts_decided_idx;
DROP INDEX attempts_first_seen_idx;
ALTER TABLE outbox DROP COLUMN resolved_by;
ALTER TABLE attempts DROP COLUMN resolved_by;
DROP TABLE operator_actions;
