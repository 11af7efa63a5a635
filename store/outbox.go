package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PublishOutbox locks up to limit unpublished outcomes, oldest first, skipping
// rows another publisher holds; calls publish with them; and marks them
// published in the same transaction only if publish returned nil. It returns
// how many were published. Delivery is at-least-once: a crash after publish
// and before the commit sends the same rows again.
func (s *Store) PublishOutbox(ctx context.Context, limit int, publish func(ctx context.Context, recs []OutboxRecord) error) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT `+outboxColumns+`
			FROM outbox o JOIN events e ON e.event_id = o.event_id
			WHERE o.published_at IS NULL
			ORDER BY o.id
			LIMIT $1
			FOR UPDATE OF o SKIP LOCKED`, limit)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		recs, err := pgx.CollectRows(rows, scanOutbox)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(recs) == 0 {
			return nil
		}
		if err := publish(ctx, recs); err != nil {
			return fmt.Errorf("publish %d outcomes: %w", len(recs), err)
		}
		ids := make([]int64, len(recs))
		for i, r := range recs {
			ids[i] = r.ID
		}
		if _, err := tx.Exec(ctx, `UPDATE outbox SET published_at = $2 WHERE id = ANY($1)`, ids, s.now()); err != nil {
			return fmt.Errorf("mark outcomes published: %w", err)
		}
		n = len(recs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// insertOutcomes is the one statement that queues outcomes: the caller
// appends the WHERE clause that picks the events (e) and their attempts (a).
// Each picked event gets a row with its attempt's outcome, unless it conflicts
// with its attempt: then needs_review with the conflict's reason, decided when
// the event was received (the intake that wrote it, in the same transaction).
// Both carry QFPay's amount and currency as last read for the attempt (0 and
// "" before a record was read), the event's trace context (the outcome joins
// the event's trace), the attempt's traceparent (the trace of its gateway
// calls, linked from the publish span when it is another), and the operator
// who resolved the attempt, if one did.
const insertOutcomes = `
	INSERT INTO outbox (event_id, attempt_id, status, method, syssn, cancel_syssn, respcd,
	                    resperr, respmsg, reason, gateway_calls, decided_at, record_txamt, record_txcurrcd,
	                    traceparent, tracestate, attempt_traceparent, resolved_by)
	SELECT e.event_id, a.id,
	       CASE WHEN e.conflict THEN 'needs_review' ELSE a.status END,
	       CASE WHEN e.conflict THEN 'none' ELSE a.method END,
	       CASE WHEN e.conflict THEN e.syssn ELSE a.syssn END,
	       CASE WHEN e.conflict THEN '' ELSE a.cancel_syssn END,
	       CASE WHEN e.conflict THEN '' ELSE a.respcd END,
	       CASE WHEN e.conflict THEN '' ELSE a.resperr END,
	       CASE WHEN e.conflict THEN '' ELSE a.respmsg END,
	       CASE WHEN e.conflict THEN e.conflict_reason ELSE a.reason END,
	       CASE WHEN e.conflict THEN 0 ELSE a.gateway_calls END,
	       CASE WHEN e.conflict THEN e.received_at ELSE a.decided_at END,
	       a.record_txamt, a.record_txcurrcd,
	       e.traceparent, e.tracestate, a.traceparent,
	       CASE WHEN e.conflict THEN '' ELSE a.resolved_by END
	FROM events e JOIN attempts a ON a.id = e.attempt_id
	WHERE `

// outboxColumns are what scanOutbox reads: an outbox row joined (as o)
// with its event (as e).
const outboxColumns = `o.id, o.event_id, e.out_trade_no, e.mchid, o.syssn, o.cancel_syssn, o.status, o.method,
	o.respcd, o.resperr, o.respmsg, e.txamt, e.txcurrcd, o.gateway_calls, e.received_at, o.decided_at, o.reason,
	o.record_txamt, o.record_txcurrcd, o.traceparent, o.tracestate, o.attempt_traceparent, o.resolved_by, o.published_at`

func scanOutbox(row pgx.CollectableRow) (OutboxRecord, error) {
	var r OutboxRecord
	err := row.Scan(&r.ID, &r.EventID, &r.OutTradeNo, &r.MchID, &r.Syssn, &r.CancelSyssn, &r.Status, &r.Method,
		&r.Respcd, &r.Resperr, &r.Respmsg, &r.TxAmt, &r.TxCurrCd, &r.GatewayCalls, &r.FirstSeenAt,
		&r.DecidedAt, &r.Reason, &r.QFPayTxAmt, &r.QFPayTxCurrCd, &r.Trace.Parent, &r.Trace.State, &r.AttemptTrace.Parent,
		&r.ResolvedBy, &r.PublishedAt)
	r.Outcome = r.Published()
	return r, err
}
