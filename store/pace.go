package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pace is one merchant's budget: calls spaced Interval apart on average
// with up to Burst of them back to back (QFPay's per-minute limit, held over
// any window of Burst + that many intervals), and never closer than
// MinGap (its per-second limit).
type Pace struct {
	Interval time.Duration
	Burst    int
	MinGap   time.Duration
}

// Reserve takes the next gateway slot of merchant mchid, shared by every
// instance (two GCRAs on PostgreSQL's clock), unless a pause (Pause) holds
// it back. It reserves only a slot no more than maxWait away and returns how
// long to wait for it; ok is false (nothing reserved) when the next slot is
// further away.
func (s *Store) Reserve(ctx context.Context, mchid string, p Pace, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	tolerance := time.Duration(max(p.Burst-1, 0)) * p.Interval
	var us int64
	// slot: the earliest time both GCRAs allow. RETURNING sees the new row,
	// where tat_s is slot + MinGap.
	slot := `GREATEST(` + dbClock + `, p.tat - $4::interval, p.tat_s)`
	args := []any{s.clock(), mchid, p.Interval, tolerance, p.MinGap, maxWait}
	// The row exists after a merchant's first call: a plain UPDATE is the
	// common path (cheaper than an upsert); the first call inserts it.
	err = s.pool.QueryRow(ctx, `
		UPDATE merchant_pace AS p SET
			tat = GREATEST(p.tat, `+slot+`) + $3::interval,
			tat_s = `+slot+` + $5::interval,
			free_at = GREATEST(GREATEST(p.tat, `+slot+`) + $3::interval - $4::interval, `+slot+` + $5::interval)
		WHERE p.mchid = $2 AND `+slot+` <= `+dbClock+` + $6::interval
		RETURNING (extract(epoch FROM (p.tat_s - $5::interval - `+dbClock+`)) * 1e6)::bigint`,
		args...).Scan(&us)
	if errors.Is(err, pgx.ErrNoRows) {
		// Over budget, or the merchant's first call: insert (another
		// instance may have just inserted it: then this is a refusal and
		// the next try takes the UPDATE path).
		err = s.pool.QueryRow(ctx, `
			INSERT INTO merchant_pace (mchid, tat, tat_s, free_at)
			VALUES ($2, `+dbClock+` + $3::interval, `+dbClock+` + $5::interval,
			        GREATEST(`+dbClock+` + $3::interval - $4::interval, `+dbClock+` + $5::interval))
			ON CONFLICT (mchid) DO NOTHING
			RETURNING 0::bigint`, args[:5]...).Scan(&us)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reserve a gateway slot for merchant %s: %w", mchid, err)
	}
	return max(time.Duration(us)*time.Microsecond, 0), true, nil
}

// Pause holds every instance's calls for merchant mchid back for d (QFPay
// answered 429 or asked to retry after d). The burst is spent too.
func (s *Store) Pause(ctx context.Context, mchid string, p Pace, d time.Duration) error {
	tolerance := time.Duration(max(p.Burst-1, 0)) * p.Interval
	_, err := s.pool.Exec(ctx, `
		INSERT INTO merchant_pace AS p (mchid, tat, tat_s, free_at, paused_until, pauses)
		VALUES ($2, `+dbClock+` + $3::interval + $4::interval, `+dbClock+` + $3::interval, `+dbClock+` + $3::interval, `+dbClock+` + $3::interval, 1)
		ON CONFLICT (mchid) DO UPDATE SET
			tat = GREATEST(p.tat, `+dbClock+` + $3::interval + $4::interval),
			tat_s = GREATEST(p.tat_s, `+dbClock+` + $3::interval),
			free_at = GREATEST(p.free_at, `+dbClock+` + $3::interval),
			paused_until = GREATEST(p.paused_until, `+dbClock+` + $3::interval), pauses = p.pauses + 1`,
		s.clock(), mchid, d, tolerance)
	if err != nil {
		return fmt.Errorf("pause merchant %s for %s: %w", mchid, d, err)
	}
	return nil
}
