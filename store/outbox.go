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

// outboxColumns are what scanOutbox reads: an outbox row joined (as o)
// with its event (as e).
const outboxColumns = `o.id, o.event_id, e.out_trade_no, e.mchid, o.syssn, o.cancel_syssn, o.status, o.method,
	o.respcd, o.resperr, o.respmsg, e.txamt, e.txcurrcd, o.gateway_calls, e.received_at, o.decided_at, o.reason,
	o.record_txamt, o.record_txcurrcd`

func scanOutbox(row pgx.CollectableRow) (OutboxRecord, error) {
	var r OutboxRecord
	err := row.Scan(&r.ID, &r.EventID, &r.OutTradeNo, &r.MchID, &r.Syssn, &r.CancelSyssn, &r.Status, &r.Method,
		&r.Respcd, &r.Resperr, &r.Respmsg, &r.TxAmt, &r.TxCurrCd, &r.GatewayCalls, &r.FirstSeenAt,
		&r.DecidedAt, &r.Reason, &r.QFPayTxAmt, &r.QFPayTxCurrCd)
	r.Outcome = r.Published()
	return r, err
}
