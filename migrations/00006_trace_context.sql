-- +goose Up

-- W3C trace context (OpenTelemetry tracing, issue 10): the traceparent and
-- tracestate that continue an event's trace, as text ('' when tracing was off
-- when the row was written). The executor runs later, maybe in another
-- instance, so the context travels with the rows:
--   events:   the context of the event's intake span (a child of the input
--             message's traceparent header, or a new trace);
--   attempts: the context of the event that created the attempt; every
--             executor step and gateway call of the attempt joins this trace;
--   outbox:   the event's context, which the outcome joins (its publish span
--             and the outcome message's headers), and the attempt's
--             traceparent, which the publish span links to when it is another
--             trace (a second event for one payment).
ALTER TABLE events
    ADD COLUMN traceparent text NOT NULL DEFAULT '',
    ADD COLUMN tracestate  text NOT NULL DEFAULT '';
ALTER TABLE attempts
    ADD COLUMN traceparent text NOT NULL DEFAULT '',
    ADD COLUMN tracestate  text NOT NULL DEFAULT '';
ALTER TABLE outbox
    ADD COLUMN traceparent         text NOT NULL DEFAULT '',
    ADD COLUMN tracestate          text NOT NULL DEFAULT '',
    ADD COLUMN attempt_traceparent text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE outbox DROP COLUMN traceparent, DROP COLUMN tracestate, DROP COLUMN attempt_traceparent;
ALTER TABLE attempts DROP COLUMN traceparent, DROP COLUMN tracestate;
ALTER TABLE events DROP COLUMN traceparent, DROP COLUMN tracestate;
