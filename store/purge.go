package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald/internal/backoff"
)

// PurgeResult counts what a purge deleted. A batch whose commit was cut
// short by the context's end may have been done and not counted.
type PurgeResult struct {
	Cutoff                                     time.Time // attempts decided before it were purged
	Attempts, Events, Calls, Outcomes, Actions int64
	Batches                                    int
}

func (r *PurgeResult) add(o PurgeResult) {
	r.Attempts += o.Attempts
	r.Events += o.Events
	r.Calls += o.Calls
	r.Outcomes += o.Outcomes
	r.Actions += o.Actions
	r.Batches += o.Batches
}

// purgeable picks attempts a purge may delete: final (decided), decided
// before $1, and with every outcome published. An attempt that is pending,
// or whose outcome the results topic has not acknowledged, is never picked.
const purgeable = `a.status <> 'pending' AND a.decided_at IS NOT NULL AND a.decided_at < $1
	AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.attempt_id = a.id AND o.published_at IS NULL)`

// Purge deletes final attempts decided more than olderThan ago (on
// PostgreSQL's clock), with their events,
// gateway call audit rows, operator actions and (published) outcomes, in
// batches of at most batch attempts, one short transaction each, until none
// is left or ctx ends. It never deletes an attempt that is pending or whose
// outcome is unpublished. Between two batches it waits pause (0: none), so
// that a long purge leaves PostgreSQL's and the machine's capacity to the
// hot path (see the README for the figures).
//
// A batch locks its attempts FOR UPDATE SKIP LOCKED: an attempt that intake
// (which holds its attempt FOR SHARE while it adds an event) or a worker
// holds is skipped, never waited for, and from the lock on nothing can add
// an event or an outcome to the batch's attempts. The delete then checks the
// rule again on a fresh snapshot, so an outcome queued just before the lock
// keeps its attempt.
func (s *Store) Purge(ctx context.Context, olderThan time.Duration, batch int, pause time.Duration) (PurgeResult, error) {
	if batch < 1 || olderThan <= 0 || pause < 0 {
		return PurgeResult{}, fmt.Errorf("purge: the age must be positive, the batch at least 1 and the pause not negative, got %s, %d and %s", olderThan, batch, pause)
	}
	cutoff, err := s.cutoff(ctx, olderThan)
	if err != nil {
		return PurgeResult{}, err
	}
	total := PurgeResult{Cutoff: cutoff}
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		r, picked, err := s.purgeBatch(ctx, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("purge attempts decided before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		total.add(r)
		if picked < batch {
			return total, nil
		}
		if pause > 0 && !backoff.Sleep(ctx, pause) {
			return total, ctx.Err()
		}
	}
}

func (s *Store) purgeBatch(ctx context.Context, cutoff time.Time, batch int) (PurgeResult, int, error) {
	var (
		r      PurgeResult
		picked int
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT a.id FROM attempts a
			WHERE `+purgeable+`
			ORDER BY a.decided_at, a.id
			LIMIT $2
			FOR UPDATE SKIP LOCKED`, cutoff, batch)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		picked = len(ids)
		if picked == 0 {
			return nil
		}
		// A new statement, a new snapshot: the rule again, with the rows
		// locked. Children first; the foreign keys are checked at the end of
		// the statement.
		err = tx.QueryRow(ctx, `
			WITH victims AS (
				SELECT a.id FROM attempts a WHERE a.id = ANY($2) AND `+purgeable+`
			), calls AS (
				DELETE FROM gateway_calls g USING victims v WHERE g.attempt_id = v.id RETURNING 1
			), actions AS (
				DELETE FROM operator_actions x USING victims v WHERE x.attempt_id = v.id RETURNING 1
			), outcomes AS (
				DELETE FROM outbox o USING victims v WHERE o.attempt_id = v.id RETURNING 1
			), events AS (
				DELETE FROM events e USING victims v WHERE e.attempt_id = v.id RETURNING 1
			), attempts AS (
				DELETE FROM attempts a USING victims v WHERE a.id = v.id RETURNING 1
			)
			SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM events), (SELECT count(*) FROM calls),
			       (SELECT count(*) FROM outcomes), (SELECT count(*) FROM actions)`, cutoff, ids,
		).Scan(&r.Attempts, &r.Events, &r.Calls, &r.Outcomes, &r.Actions)
		if err != nil {
			return err
		}
		r.Batches = 1
		return nil
	})
	return r, picked, err
}

// CountPurgeable counts the attempts Purge(ctx, olderThan, ...) would delete
// now (a dry run), and returns the cutoff it would use.
func (s *Store) CountPurgeable(ctx context.Context, olderThan time.Duration) (int64, time.Time, error) {
	cutoff, err := s.cutoff(ctx, olderThan)
	if err != nil {
		return 0, time.Time{}, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM attempts a WHERE `+purgeable, cutoff).Scan(&n); err != nil {
		return 0, cutoff, fmt.Errorf("count purgeable attempts: %w", err)
	}
	return n, cutoff, nil
}

// cutoff is olderThan before now, on PostgreSQL's clock (or the test clock).
func (s *Store) cutoff(ctx context.Context, olderThan time.Duration) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, `SELECT `+dbClock+` - $2::interval`, s.clock(), olderThan).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("purge cutoff: %w", err)
	}
	return t, nil
}
