package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
)

// Operator is who acts on an attempt by hand, and why. Both are required and
// go to the attempt's audit trail (operator_actions).
type Operator struct {
	Name string
	Note string
}

func (o Operator) validate() error {
	var errs []error
	if strings.TrimSpace(o.Name) == "" {
		errs = append(errs, errors.New("the operator's name is required"))
	}
	if strings.TrimSpace(o.Note) == "" {
		errs = append(errs, errors.New("a note is required"))
	}
	return errors.Join(errs...)
}

// Action is one operator action in an attempt's audit trail.
type Action struct {
	ID         int64
	Action     string // retry or resolve
	Operator   string
	Note       string
	FromStatus reversald.Status
	ToStatus   reversald.Status
	// PreviousReason and PreviousRespcd are the attempt's reason and answer
	// before the action (a retry clears them on the attempt).
	PreviousReason string
	PreviousRespcd string
	Token          int64 // the fencing token the action set
	At             time.Time
}

var (
	// ErrNotRetryable: only a needs_review attempt can be retried or resolved.
	ErrNotRetryable = errors.New("attempt is not in needs_review")
	// ErrLeased: a worker holds a live lease on the attempt; an operator
	// waits for it to end (the lease's expiry is in the error) rather than
	// race the worker.
	ErrLeased = errors.New("attempt is leased by a worker")
	// ErrNotResolvable: the status is not one an operator may resolve to.
	ErrNotResolvable = errors.New("not a status an operator may resolve to")
)

// ResolveStatuses are the statuses an operator may close a needs_review
// attempt with: each is a state of QFPay's payment record that a person can
// read at QFPay (DESIGN.md, decision table: only a query settles, and a
// person's check is that query). not_found and unsupported are not among
// them: not_found is the absence of a record after the daemon's re-check
// window and is never concluded once a cancel may have reached QFPay (the
// very case that ends in needs_review), and unsupported says the daemon gave
// up while the payment was in flight, not where the money is; an operator
// who cannot see a settled record retries instead.
var ResolveStatuses = []reversald.Status{
	reversald.StatusReversed, reversald.StatusClosed, reversald.StatusPaid, reversald.StatusRefunded,
	reversald.StatusPartiallyRefunded, reversald.StatusNotPaid,
}

// impliedMethod is the method a resolved status names; the others keep the
// attempt's.
var impliedMethod = map[reversald.Status]reversald.Method{
	reversald.StatusReversed: reversald.MethodReversal,
	reversald.StatusClosed:   reversald.MethodClose,
}

// CanResolveTo reports whether an operator may resolve an attempt to s.
func CanResolveTo(s reversald.Status) bool {
	for _, v := range ResolveStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// operable reads attempt id (locked FOR UPDATE when lock) and says why an
// operator may not retry or resolve it: not found, not in needs_review, or
// leased by a worker (on PostgreSQL's clock, as leases are).
func (s *Store) operable(ctx context.Context, q pgx.Tx, id int64, lock bool) (reversald.Attempt, error) {
	sql := `SELECT ` + attemptColumns + `, ` + dbClock + ` FROM attempts a WHERE a.id = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	var now time.Time
	rows, err := q.Query(ctx, sql, s.clock(), id)
	if err != nil {
		return reversald.Attempt{}, err
	}
	a, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (reversald.Attempt, error) {
		return scanAttemptAnd(row, &now)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return reversald.Attempt{}, ErrNotFound
	}
	if err != nil {
		return reversald.Attempt{}, err
	}
	if a.Status != reversald.StatusNeedsReview {
		return a, fmt.Errorf("%w (it is %s)", ErrNotRetryable, a.Status)
	}
	if !a.LeaseExpiresAt.IsZero() && a.LeaseExpiresAt.After(now) {
		return a, fmt.Errorf("%w (%s) until %s", ErrLeased, a.LeaseOwner, a.LeaseExpiresAt.UTC().Format(time.RFC3339))
	}
	return a, nil
}

// CheckRetry says what Retry of attempt id would do, changing nothing: nil
// when it would re-drive it, or the error it would return.
func (s *Store) CheckRetry(ctx context.Context, id int64) (reversald.Attempt, error) {
	return s.checkOperable(ctx, id, "retry")
}

// checkOperable reads attempt id, changing nothing, and says why an operator
// may not verb it (operable's reasons).
func (s *Store) checkOperable(ctx context.Context, id int64, verb string) (reversald.Attempt, error) {
	var a reversald.Attempt
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		a, err = s.operable(ctx, tx, id, false)
		return err
	})
	if err != nil {
		return a, fmt.Errorf("%s attempt %d: %w", verb, id, err)
	}
	return a, nil
}

// Retry puts a needs_review attempt back to work from a fresh query, with a
// new deadline and a fresh gateway budget, and records the operator, the
// note and the reason it had in its audit trail. It refuses any other status
// (a final answer from QFPay is not second-guessed by hand, a pending attempt
// is already being worked) and an attempt a worker still holds a live lease
// on. The fencing token moves on, so a worker whose lease ran out writes
// nothing more; the attempt is claimed again through the ordinary claim, by
// one worker.
func (s *Store) Retry(ctx context.Context, id int64, op Operator) error {
	if err := op.validate(); err != nil {
		return fmt.Errorf("retry attempt %d: %w", id, err)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := s.operable(ctx, tx, id, true)
		if err != nil {
			return err
		}
		clock := clockParam(2) // PostgreSQL's, as for every lease and due time
		if _, err := tx.Exec(ctx, `
			UPDATE attempts SET status = 'pending', step = 'query', cancel_pending = false, rechecks = 0, budget_calls = 0,
			       next_run_at = `+clock+`, deadline_at = `+clock+` + $3::interval, decided_at = NULL,
			       reason = '', resolved_by = '', lease_owner = '', lease_expires_at = NULL, token = token + 1, updated_at = `+clock+`
			WHERE id = $1`, id, s.clock(), s.deadline); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "retry", reversald.StatusPending, op)
	})
	if err != nil {
		return fmt.Errorf("retry attempt %d: %w", id, err)
	}
	return nil
}

// audit records an operator action on a (as it was before it) that took it
// to status to, with the token the action set (a's plus one).
func (s *Store) audit(ctx context.Context, tx pgx.Tx, a reversald.Attempt, action string, to reversald.Status, op Operator) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO operator_actions (attempt_id, action, operator, note, from_status, to_status,
		                              previous_reason, previous_respcd, token, at)
		VALUES ($2, $3, $4, $5, $6, $7, $8, $9, $10, `+dbClock+`)`,
		s.clock(), a.ID, action, cleanText(op.Name, 128), cleanText(op.Note, maxText), a.Status, to,
		a.Reason, a.Respcd, a.Token+1)
	if err != nil {
		return fmt.Errorf("record %s in the audit trail: %w", action, err)
	}
	return nil
}

// CheckResolve says what Resolve would do, changing nothing: the attempt, and
// nil or the error Resolve would return.
func (s *Store) CheckResolve(ctx context.Context, id int64, status reversald.Status) (reversald.Attempt, error) {
	if !CanResolveTo(status) {
		return reversald.Attempt{}, fmt.Errorf("resolve attempt %d to %q: %w (one of %s)", id, status, ErrNotResolvable, joinStatuses(ResolveStatuses))
	}
	return s.checkOperable(ctx, id, "resolve")
}

// Resolve closes a needs_review attempt with a final status an operator read
// at QFPay (one of ResolveStatuses), records it in the audit trail, and
// queues a new outcome for each of its events (conflicting events excepted:
// they answer another payment and have theirs) with ResolvedBy set to the
// operator, so reconciliation sees who decided. The method is the one the
// status implies (reversed: reversal, closed: close), else the attempt's.
// It returns how many outcomes it queued. It refuses what Retry refuses.
func (s *Store) Resolve(ctx context.Context, id int64, status reversald.Status, op Operator) (int, error) {
	if !CanResolveTo(status) {
		return 0, fmt.Errorf("resolve attempt %d to %q: %w (one of %s)", id, status, ErrNotResolvable, joinStatuses(ResolveStatuses))
	}
	if err := op.validate(); err != nil {
		return 0, fmt.Errorf("resolve attempt %d: %w", id, err)
	}
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := s.operable(ctx, tx, id, true)
		if err != nil {
			return err
		}
		method, implied := impliedMethod[status]
		if !implied {
			method = a.Method
		}
		name := cleanText(op.Name, 128)
		reason := cleanText(fmt.Sprintf("resolved by %s: %s", name, op.Note), maxText)
		clock := clockParam(2)
		if _, err := tx.Exec(ctx, `
			UPDATE attempts SET status = $3, step = 'done', method = $4, reason = $5, resolved_by = $6, cancel_pending = false,
			       decided_at = `+clock+`, lease_owner = '', lease_expires_at = NULL, token = token + 1, updated_at = `+clock+`
			WHERE id = $1`, id, s.clock(), status, method, reason, name); err != nil {
			return err
		}
		if err := s.audit(ctx, tx, a, "resolve", status, op); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, insertOutcomes+`a.id = $1 AND NOT e.conflict`, id)
		if err != nil {
			return fmt.Errorf("queue resolved outcomes: %w", err)
		}
		n = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("resolve attempt %d: %w", id, err)
	}
	return n, nil
}
