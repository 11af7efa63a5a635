package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
)

// List returns attempts with the given status (all when empty), most
// recently updated first. Search pages with filters.
func (s *Store) List(ctx context.Context, status reversald.Status, limit int) ([]reversald.Attempt, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+attemptColumns+` FROM attempts a
		WHERE ($1 = '' OR a.status = $1)
		ORDER BY a.updated_at DESC, a.id DESC
		LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("list attempts %q: %w", status, err)
	}
	got, err := pgx.CollectRows(rows, scanAttempt)
	if err != nil {
		return nil, fmt.Errorf("list attempts %q: %w", status, err)
	}
	return got, nil
}

// Get returns one attempt by id.
func (s *Store) Get(ctx context.Context, id int64) (reversald.Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+attemptColumns+` FROM attempts a WHERE a.id = $1`, id)
	if err != nil {
		return reversald.Attempt{}, fmt.Errorf("get attempt %d: %w", id, err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, scanAttempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return reversald.Attempt{}, fmt.Errorf("get attempt %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return reversald.Attempt{}, fmt.Errorf("get attempt %d: %w", id, err)
	}
	return a, nil
}

// Find returns the attempt for a key.
func (s *Store) Find(ctx context.Context, mchid, outTradeNo string) (reversald.Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+attemptColumns+` FROM attempts a WHERE a.mchid = $1 AND a.out_trade_no = $2`, mchid, outTradeNo)
	if err != nil {
		return reversald.Attempt{}, fmt.Errorf("find attempt %s/%s: %w", mchid, outTradeNo, err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, scanAttempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return reversald.Attempt{}, fmt.Errorf("find attempt %s/%s: %w", mchid, outTradeNo, ErrNotFound)
	}
	if err != nil {
		return reversald.Attempt{}, fmt.Errorf("find attempt %s/%s: %w", mchid, outTradeNo, err)
	}
	return a, nil
}

// EventRecord is an event as recorded, for history views.
type EventRecord struct {
	EventID        string
	TxAmt          int64
	TxDtm          string
	Topic          string
	Partition      int
	Offset         int64
	Conflict       bool
	ConflictReason string
	ReceivedAt     time.Time
}

// CallRecord is an audit row, for history views.
type CallRecord struct {
	reversald.Call
	Token     int64
	FencedOut bool
}

// History is an attempt with everything recorded about it.
type History struct {
	Attempt  reversald.Attempt
	Events   []EventRecord
	Calls    []CallRecord
	Outcomes []OutboxRecord
	Actions  []Action // what operators did, oldest first
}

// History returns an attempt with its events, gateway calls and outcomes.
func (s *Store) History(ctx context.Context, id int64) (History, error) {
	a, err := s.Get(ctx, id)
	if err != nil {
		return History{}, err
	}
	h := History{Attempt: a}
	rows, err := s.pool.Query(ctx, `
		SELECT event_id, txamt, txdtm, topic, kafka_partition, kafka_offset, conflict, conflict_reason, received_at
		FROM events WHERE attempt_id = $1 ORDER BY received_at, event_id`, id)
	if err != nil {
		return History{}, fmt.Errorf("events of attempt %d: %w", id, err)
	}
	h.Events, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (EventRecord, error) {
		var e EventRecord
		err := row.Scan(&e.EventID, &e.TxAmt, &e.TxDtm, &e.Topic, &e.Partition, &e.Offset, &e.Conflict, &e.ConflictReason, &e.ReceivedAt)
		return e, err
	})
	if err != nil {
		return History{}, fmt.Errorf("events of attempt %d: %w", id, err)
	}
	rows, err = s.pool.Query(ctx, `
		SELECT step, endpoint, app_code, request, http_status, respcd, error, response, latency_us, called_at, token, fenced_out
		FROM gateway_calls WHERE attempt_id = $1 ORDER BY id`, id)
	if err != nil {
		return History{}, fmt.Errorf("calls of attempt %d: %w", id, err)
	}
	h.Calls, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (CallRecord, error) {
		var (
			c  CallRecord
			us int64
		)
		err := row.Scan(&c.Step, &c.Endpoint, &c.AppCode, &c.Request, &c.HTTPStatus, &c.Respcd, &c.Error, &c.Response, &us, &c.At, &c.Token, &c.FencedOut)
		c.Latency = time.Duration(us) * time.Microsecond
		return c, err
	})
	if err != nil {
		return History{}, fmt.Errorf("calls of attempt %d: %w", id, err)
	}
	rows, err = s.pool.Query(ctx, `
		SELECT `+outboxColumns+`
		FROM outbox o JOIN events e ON e.event_id = o.event_id
		WHERE o.attempt_id = $1 ORDER BY o.id`, id)
	if err != nil {
		return History{}, fmt.Errorf("outcomes of attempt %d: %w", id, err)
	}
	h.Outcomes, err = pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return History{}, fmt.Errorf("outcomes of attempt %d: %w", id, err)
	}
	rows, err = s.pool.Query(ctx, `
		SELECT id, action, operator, note, from_status, to_status, previous_reason, previous_respcd, token, at
		FROM operator_actions WHERE attempt_id = $1 ORDER BY id`, id)
	if err != nil {
		return History{}, fmt.Errorf("audit trail of attempt %d: %w", id, err)
	}
	h.Actions, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Action, error) {
		var x Action
		err := row.Scan(&x.ID, &x.Action, &x.Operator, &x.Note, &x.FromStatus, &x.ToStatus, &x.PreviousReason, &x.PreviousRespcd, &x.Token, &x.At)
		return x, err
	})
	if err != nil {
		return History{}, fmt.Errorf("audit trail of attempt %d: %w", id, err)
	}
	return h, nil
}

// Backlog is what the daemon's gauges show: attempts still being worked and
// outcomes not yet published, with the age of the oldest of each, and every
// attempt counted by status.
type Backlog struct {
	Pending int64
	Outbox  int64
	// OldestPending and OldestOutbox are the ages of the oldest pending
	// attempt (since first seen) and unpublished outcome (since queued), on
	// PostgreSQL's clock; 0 when there is none.
	OldestPending time.Duration
	OldestOutbox  time.Duration
	ByStatus      map[reversald.Status]int64
}

// Backlog counts attempts by status (one pass over the status index; the
// pending count is one of them) and unpublished outcomes, with the ages of
// the oldest of each.
func (s *Store) Backlog(ctx context.Context) (Backlog, error) {
	var (
		b             Backlog
		pendUS, outUS int64
		statuses      []string
		counts        []int64
	)
	err := s.pool.QueryRow(ctx, `
		WITH by_status AS (SELECT status, count(*) AS n FROM attempts GROUP BY status)
		SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL),
		       COALESCE((SELECT extract(epoch FROM now() - min(first_seen_at)) * 1e6 FROM attempts WHERE status = 'pending'), 0)::bigint,
		       COALESCE((SELECT extract(epoch FROM now() - min(created_at)) * 1e6 FROM outbox WHERE published_at IS NULL), 0)::bigint,
		       COALESCE((SELECT array_agg(status ORDER BY status) FROM by_status), '{}'),
		       COALESCE((SELECT array_agg(n ORDER BY status) FROM by_status), '{}')`,
	).Scan(&b.Outbox, &pendUS, &outUS, &statuses, &counts)
	if err != nil {
		return Backlog{}, fmt.Errorf("count backlog: %w", err)
	}
	b.OldestPending, b.OldestOutbox = time.Duration(max(pendUS, 0))*time.Microsecond, time.Duration(max(outUS, 0))*time.Microsecond
	b.ByStatus = make(map[reversald.Status]int64, len(reversald.Statuses))
	for _, st := range reversald.Statuses {
		b.ByStatus[st] = 0 // every status is exported, at 0 when none
	}
	for i, st := range statuses {
		if i < len(counts) {
			b.ByStatus[reversald.Status(st)] = counts[i]
		}
	}
	b.Pending = b.ByStatus[reversald.StatusPending]
	return b, nil
}

// MerchantBacklog is one merchant's pending attempts.
type MerchantBacklog struct {
	MchID   string
	Pending int64
	// OldestFirstSeen is when the oldest of them was first seen.
	OldestFirstSeen time.Time
}

// PendingByMerchant counts pending attempts per merchant, the merchants with
// the most first (ties by mchid), at most limit of them, and says whether
// more merchants have pending attempts.
func (s *Store) PendingByMerchant(ctx context.Context, limit int) ([]MerchantBacklog, bool, error) {
	if limit < 1 || limit > MaxPage {
		return nil, false, fmt.Errorf("pending by merchant: limit must be 1 to %d, got %d", MaxPage, limit)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT mchid, count(*), min(first_seen_at) FROM attempts WHERE status = 'pending'
		GROUP BY mchid ORDER BY count(*) DESC, mchid LIMIT $1`, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("pending by merchant: %w", err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (MerchantBacklog, error) {
		var m MerchantBacklog
		err := row.Scan(&m.MchID, &m.Pending, &m.OldestFirstSeen)
		return m, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("pending by merchant: %w", err)
	}
	if len(got) > limit {
		return got[:limit], true, nil
	}
	return got, false, nil
}
