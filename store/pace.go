package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reserve takes the next gateway slot of merchant mchid, shared by every
// instance: the slots are interval apart (GCRA on PostgreSQL's clock), and a
// pause (Pause) holds them back. It reserves only a slot no more than maxWait
// away, and returns how long to wait for it; ok is false (nothing reserved)
// when the next slot is further away.
func (s *Store) Reserve(ctx context.Context, mchid string, interval, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	var us int64
	err = s.pool.QueryRow(ctx, `
		INSERT INTO merchant_pace AS p (mchid, tat) VALUES ($2, `+dbClock+` + $3::interval)
		ON CONFLICT (mchid) DO UPDATE SET tat = GREATEST(p.tat, `+dbClock+`) + $3::interval
		WHERE GREATEST(p.tat, `+dbClock+`) <= `+dbClock+` + $4::interval
		RETURNING (extract(epoch FROM (p.tat - $3::interval - `+dbClock+`)) * 1e6)::bigint`,
		s.clock(), mchid, interval, maxWait,
	).Scan(&us)
	// The RETURNING above is the new tat less one interval: the reserved slot.
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reserve a gateway slot for merchant %s: %w", mchid, err)
	}
	return max(time.Duration(us)*time.Microsecond, 0), true, nil
}

// Pause holds every instance's calls for merchant mchid back for d (QFPay
// answered 429 or asked to retry after d).
func (s *Store) Pause(ctx context.Context, mchid string, d time.Duration) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO merchant_pace AS p (mchid, tat, paused_until, pauses) VALUES ($2, `+dbClock+` + $3::interval, `+dbClock+` + $3::interval, 1)
		ON CONFLICT (mchid) DO UPDATE SET tat = GREATEST(p.tat, `+dbClock+` + $3::interval),
		       paused_until = GREATEST(p.paused_until, `+dbClock+` + $3::interval), pauses = p.pauses + 1`,
		s.clock(), mchid, d)
	if err != nil {
		return fmt.Errorf("pause merchant %s for %s: %w", mchid, d, err)
	}
	return nil
}
