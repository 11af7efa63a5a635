package store

import (
	"context"
	"fmt"
	"sort"
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

// tolerance is how far ahead of its theoretical arrival time a call may go
// (the burst, in the per-minute GCRA's terms).
func (p Pace) tolerance() time.Duration { return time.Duration(max(p.Burst-1, 0)) * p.Interval }

// BurstFitsASecond: whether the calls the per-minute GCRA lets go in any
// second, each up to late after its slot, are fewer than the per-second
// limit allows (one per MinGap): then calls need no spacing of their own.
// At QFPay's limits (400/min with a burst of 16, 100/s) it lets 25 go in a
// second, where 83 are allowed.
func (p Pace) BurstFitsASecond(late time.Duration) bool {
	if p.Interval <= 0 {
		return false
	}
	if p.MinGap <= 0 {
		return true
	}
	return float64(p.Burst)+1+float64(time.Second+late)/float64(p.Interval) <= float64(time.Second)/float64(p.MinGap)
}

// Reservation asks for merchant MchID's next gateway slot under Pace, if it
// comes no more than MaxWait from now. Calls above 1 asks for a lease: up to
// that many slots for this instance alone, which it spends itself from the
// first slot until Window after it (see ReserveMany).
type Reservation struct {
	MchID   string
	Pace    Pace
	MaxWait time.Duration
	Calls   int
	Window  time.Duration
}

// Reserved is the answer to one Reservation: OK when a slot was taken, and
// how long to wait for it. Calls is how many slots were taken (a lease when
// above 1, to be spent within the Reservation's Window from the first).
type Reserved struct {
	Wait  time.Duration
	OK    bool
	Calls int
}

// Reserve takes the next gateway slot of merchant mchid, shared by every
// instance (two GCRAs on PostgreSQL's clock), unless a pause (Pause) holds
// it back. It reserves only a slot no more than maxWait away and returns how
// long to wait for it; ok is false (nothing reserved) when the next slot is
// further away.
func (s *Store) Reserve(ctx context.Context, mchid string, p Pace, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	got, err := s.ReserveMany(ctx, []Reservation{{MchID: mchid, Pace: p, MaxWait: maxWait}})
	if err != nil {
		return 0, false, err
	}
	return got[0].Wait, got[0].OK, nil
}

// ReserveMany is Reserve for several merchants in one statement (one round
// trip, one commit): answers in the order asked. The merchants must be
// distinct; a merchant's first reservation inserts its row, and one that
// another instance inserted at the same moment is refused (try again).
//
// A lease (Calls > 1) takes as many of the asked slots as the per-minute
// GCRA lets go at the first slot (its burst tolerance left; a merchant
// already at its sustained rate gets none, not OK: see leaseSQL), and holds the
// merchant's per-second GCRA until Window after the first slot plus a gap,
// so that the lessee may spend them within the window while nobody else
// calls that merchant. The lessee need not space them: a lease is granted
// only when the per-minute GCRA alone keeps any second within the
// per-second limit, the window's lateness counted (BurstFitsASecond). A
// slot spent up to Window after its charge is what the per-minute margin
// covers (merchantPace's 1%: 600 ms of a minute); one left unspent is lost,
// which only under-uses the budget.
func (s *Store) ReserveMany(ctx context.Context, rs []Reservation) ([]Reserved, error) {
	// Rows are locked in merchant order, as the claim's lease locks them, so
	// that two statements over the same merchants wait rather than
	// deadlock; answers go back by merchant, in the order asked.
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return rs[order[a]].MchID < rs[order[b]].MchID })
	sorted := make([]Reservation, len(rs))
	for i, j := range order {
		sorted[i] = rs[j]
	}
	rs = sorted
	n := len(rs)
	mchids := make([]string, n)
	intervals, tolerances, gaps, maxWaits, windows := make([]time.Duration, n), make([]time.Duration, n), make([]time.Duration, n), make([]time.Duration, n), make([]time.Duration, n)
	calls := make([]int32, n)
	for i, r := range rs {
		mchids[i], intervals[i], tolerances[i], gaps[i], maxWaits[i] = r.MchID, r.Pace.Interval, r.Pace.tolerance(), r.Pace.MinGap, max(r.MaxWait, 0)
		calls[i], windows[i] = 1, 0
		if r.Calls > 1 && r.Window > 0 && r.Pace.BurstFitsASecond(r.Window) {
			calls[i], windows[i] = int32(min(r.Calls, 1<<20)), r.Window
		}
	}
	got := make([]Reserved, n)
	at := make(map[string]int, n)
	for i, m := range mchids {
		at[m] = i
	}
	err := s.queryPinned(ctx, `
		WITH r AS (
			SELECT * FROM unnest($2::text[], $3::interval[], $4::interval[], $5::interval[], $6::interval[], $7::int[], $8::interval[])
				AS r(mchid, iv, tol, gap, mw, calls, win)
		), `+leaseSQL("r")+`
		SELECT mchid, leased, us FROM taken
		UNION ALL
		SELECT mchid, leased, us FROM first`,
		[]any{s.clock(), mchids, intervals, tolerances, gaps, maxWaits, calls, windows}, func(rows pgx.Rows) error {
			var m string
			var r Reserved
			if err := scanLeased(rows, &m, &r); err != nil {
				return err
			}
			i, ok := at[m]
			if !ok {
				return fmt.Errorf("answer for merchant %s, not asked", m)
			}
			got[i] = r
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("reserve gateway slots for %d merchants: %w", n, err)
	}
	out := make([]Reserved, n)
	for i, j := range order {
		out[j] = got[i]
	}
	return out, nil
}

// paceClock is dbClock for the budget's statements, read when evaluated
// (clock_timestamp) rather than when the transaction began (now): a
// reservation that waited for a merchant's row lock (another instance's
// claim or reservation holds it) is charged when it got the row, not up to
// the wait earlier, which would send its call that much later than its
// slot, beyond the per-minute margin.
var paceClock = "COALESCE($1::timestamptz, clock_timestamp())"

// leaseSQL is two CTEs that take the slots the rows of src ask for (columns
// mchid, iv, tol, gap, mw, calls, win; one row a merchant): taken, for the
// merchants that have a pacing row, and first, for those that do not
// (their row inserted). Both return mchid, leased (the slots taken) and us
// (the wait for the first, µs); a merchant whose next slot is beyond mw is
// in neither, nor one asked for a lease (calls > 1) that could take only one
// slot: a merchant at its sustained rate. Its calls reserve their slots one
// by one, each when its worker is about to call: a lease's single slot is
// spent only if its attempt starts within the window, and an attempt
// claimed ahead of the workers may not (the pacing proof lost a slot a
// minute of a hot merchant's 380 that way).
//
// slot: the earliest time both GCRAs allow. k: the slots taken, as many of
// those asked as conform at slot (the per-minute GCRA's tolerance left), at
// least the one. The per-second GCRA then starts after the lease's window.
// RETURNING sees the new row, where tat_s is slot + the window (when k > 1)
// + gap, and leased is k. A merchant's row exists after its first call, so
// the UPDATE is the common path; the INSERT sees the statement's snapshot
// and adds only rows that did not exist.
func leaseSQL(src string) string {
	slot := `GREATEST(` + paceClock + `, p.tat - r.tol, p.tat_s)`
	k := `(CASE WHEN r.calls > 1 THEN LEAST(r.calls, 1 + floor(extract(epoch FROM (` + slot + ` + r.tol - GREATEST(p.tat, ` + slot + `))) / extract(epoch FROM r.iv)))::int ELSE 1 END)`
	win := `(CASE WHEN ` + k + ` > 1 THEN r.win ELSE '0'::interval END)`
	k0 := `(CASE WHEN r.calls > 1 THEN LEAST(r.calls, 1 + floor(extract(epoch FROM r.tol) / extract(epoch FROM r.iv)))::int ELSE 1 END)`
	win0 := `(CASE WHEN ` + k0 + ` > 1 THEN r.win ELSE '0'::interval END)`
	return `taken AS (
			UPDATE merchant_pace AS p SET
				tat = GREATEST(p.tat, ` + slot + `) + ` + k + ` * r.iv,
				tat_s = ` + slot + ` + ` + win + ` + r.gap,
				free_at = GREATEST(GREATEST(p.tat, ` + slot + `) + ` + k + ` * r.iv - r.tol, ` + slot + ` + ` + win + ` + r.gap),
				leased = ` + k + `
			FROM ` + src + ` AS r
			WHERE p.mchid = r.mchid AND ` + slot + ` <= ` + paceClock + ` + r.mw AND (r.calls = 1 OR ` + k + ` > 1)
			RETURNING p.mchid, p.leased,
				(extract(epoch FROM (p.tat_s - r.gap - CASE WHEN p.leased > 1 THEN r.win ELSE '0'::interval END - ` + paceClock + `)) * 1e6)::bigint AS us
		), first AS (
			INSERT INTO merchant_pace (mchid, tat, tat_s, free_at, leased)
			SELECT r.mchid, ` + paceClock + ` + ` + k0 + ` * r.iv, ` + paceClock + ` + ` + win0 + ` + r.gap,
				GREATEST(` + paceClock + ` + ` + k0 + ` * r.iv - r.tol, ` + paceClock + ` + ` + win0 + ` + r.gap), ` + k0 + `
			FROM ` + src + ` AS r WHERE NOT EXISTS (SELECT 1 FROM merchant_pace p WHERE p.mchid = r.mchid) AND (r.calls = 1 OR ` + k0 + ` > 1)
			ON CONFLICT (mchid) DO NOTHING
			RETURNING mchid, leased, 0::bigint AS us
		)`
}

// scanLeased reads a merchant's answer of leaseSQL's CTEs.
func scanLeased(rows pgx.Rows, mchid *string, r *Reserved) error {
	var us int64
	var leased int32
	if err := rows.Scan(mchid, &leased, &us); err != nil {
		return err
	}
	*r = Reserved{Wait: max(time.Duration(us)*time.Microsecond, 0), OK: true, Calls: max(int(leased), 1)}
	return nil
}

// Pause holds every instance's calls for merchant mchid back for d (QFPay
// answered 429 or asked to retry after d). The burst is spent too.
func (s *Store) Pause(ctx context.Context, mchid string, p Pace, d time.Duration) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO merchant_pace AS p (mchid, tat, tat_s, free_at, paused_until, pauses)
		VALUES ($2, `+dbClock+` + $3::interval + $4::interval, `+dbClock+` + $3::interval, `+dbClock+` + $3::interval, `+dbClock+` + $3::interval, 1)
		ON CONFLICT (mchid) DO UPDATE SET
			tat = GREATEST(p.tat, `+dbClock+` + $3::interval + $4::interval),
			tat_s = GREATEST(p.tat_s, `+dbClock+` + $3::interval),
			free_at = GREATEST(p.free_at, `+dbClock+` + $3::interval),
			paused_until = GREATEST(p.paused_until, `+dbClock+` + $3::interval), pauses = p.pauses + 1`,
		s.clock(), mchid, d, p.tolerance())
	if err != nil {
		return fmt.Errorf("pause merchant %s for %s: %w", mchid, d, err)
	}
	return nil
}
