package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/reversald/reversald"
)

const attemptColumns = `a.id, a.mchid, a.out_trade_no, a.syssn, a.txamt, a.txcurrcd, a.txdtm, a.pay_type, a.udid,
	a.status, a.step, a.method, a.cancel_pending, a.cancel_syssn, a.respcd, a.resperr, a.respmsg, a.reason,
	a.gateway_calls, a.rechecks, a.next_run_at, a.deadline_at, a.lease_owner, a.lease_expires_at, a.token,
	a.first_seen_at, a.decided_at, a.updated_at, a.cancel_calls, a.cancel_reached, a.cancel_respcd,
	a.budget_calls, a.record_respcd, a.record_cancel, a.record_txamt, a.record_txcurrcd, a.traceparent, a.tracestate,
	a.resolved_by`

func scanAttempt(row pgx.CollectableRow) (reversald.Attempt, error) {
	return scanAttemptAnd(row)
}

// scanAttemptAnd scans attemptColumns and then extra columns into more.
func scanAttemptAnd(row pgx.CollectableRow, more ...any) (reversald.Attempt, error) {
	var (
		a             reversald.Attempt
		lease, decide *time.Time
	)
	dest := []any{&a.ID, &a.MchID, &a.OutTradeNo, &a.Syssn, &a.TxAmt, &a.TxCurrCd, &a.TxDtm, &a.PayType, &a.Udid,
		&a.Status, &a.Step, &a.Method, &a.CancelPending, &a.CancelSyssn, &a.Respcd, &a.Resperr, &a.Respmsg, &a.Reason,
		&a.GatewayCalls, &a.Rechecks, &a.NextRunAt, &a.DeadlineAt, &a.LeaseOwner, &lease, &a.Token,
		&a.FirstSeenAt, &decide, &a.UpdatedAt, &a.CancelCalls, &a.CancelReached, &a.CancelRespcd,
		&a.BudgetCalls, &a.RecordRespcd, &a.RecordCancel, &a.RecordTxAmt, &a.RecordTxCurrCd, &a.Trace.Parent, &a.Trace.State,
		&a.ResolvedBy}
	err := row.Scan(append(dest, more...)...)
	if lease != nil {
		a.LeaseExpiresAt = *lease
	}
	if decide != nil {
		a.DecidedAt = *decide
	}
	return a, err
}

// Claim is what a worker asks for.
type Claim struct {
	Owner string        // who holds the lease (instance and worker)
	Lease time.Duration // how long the lease lasts unless renewed by a step write
	Limit int           // at most this many attempts
	// IDs, when set, claims only these attempts (the hand-off of new ones)
	// if they are due; otherwise the due ones, oldest first.
	IDs []int64
	// Paced: claim only attempts whose merchant has gateway budget now (its
	// next shared slot, see Reserve, no further than Lookahead away), and at
	// most PerMerchant of one merchant's attempts (0: no limit), so that a
	// merchant with a backlog never holds every worker.
	Paced       bool
	Lookahead   time.Duration
	PerMerchant int
	// Slots, with Paced, also leases in the claim's statement the gateway
	// slots that the claimed attempts' runs will want, one lease a merchant
	// (ReserveMany's leases, under this one pace): three calls for an
	// attempt at its query step (query, cancel, confirm for a payment in
	// flight), two at its cancel step, one at confirm. ClaimSlots returns
	// them. A round trip less for every claim.
	Slots *SlotLease
}

// SlotLease is the pace and bounds of a claim's leases (Claim.Slots).
type SlotLease struct {
	Pace    Pace
	MaxWait time.Duration
	Window  time.Duration
}

// Claim leases pending attempts that nobody holds a live lease on, and
// increments their fencing tokens; an attempt claimed is next due when its lease
// ends. Rows locked by another claimer are skipped.
func (s *Store) Claim(ctx context.Context, c Claim) ([]reversald.Attempt, error) {
	got, _, err := s.ClaimSlots(ctx, c)
	return got, err
}

// ClaimSlots is Claim, with the gateway slots leased for each attempt's
// merchant when c.Slots asks for them (see Claim.Slots): not OK when none
// was (no lease asked, or the merchant's next slot beyond MaxWait). The
// attempts of one merchant share its lease.
func (s *Store) ClaimSlots(ctx context.Context, c Claim) ([]reversald.Attempt, []Reserved, error) {
	if c.Limit <= 0 || c.Lease <= 0 || c.Owner == "" {
		return nil, nil, fmt.Errorf("claim: owner, lease and limit are required")
	}
	// Leases are set and compared on PostgreSQL's clock only (dbClock), so
	// no instance's clock decides who owns an attempt.
	var filter string
	args := []any{s.clock(), c.Limit, c.Owner, c.Lease}
	if c.IDs != nil {
		filter = `id = ANY($5) AND next_run_at <= ` + dbClock
		args = append(args, c.IDs)
	} else {
		filter = `next_run_at <= ` + dbClock
	}
	paced, pacedA := "", ""
	if c.Paced {
		args = append(args, c.Lookahead)
		budget := func(attempt string) string {
			return ` AND NOT EXISTS (SELECT 1 FROM merchant_pace p WHERE p.mchid = ` + attempt + `.mchid AND p.free_at > ` + dbClock + ` + $` + fmt.Sprint(len(args)) + `::interval)`
		}
		paced, pacedA = budget("attempts"), budget("a")
	}
	due := `
			SELECT id FROM attempts
			WHERE status = 'pending' AND ` + filter + paced + `
			  AND (lease_expires_at IS NULL OR lease_expires_at <= ` + dbClock + `)
			ORDER BY next_run_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED`
	with := ""
	if c.Paced && c.PerMerchant > 0 {
		// Fair across merchants: among the oldest due attempts (a bounded
		// look, so a claim costs the same with a backlog), each merchant's
		// oldest few, then the oldest of those. A merchant with a backlog
		// soon has no budget and drops out of the look. The window cannot
		// lock, so the rows it picks are locked (and checked again) after,
		// one by one by id: a claim never reads more than the look. The look's
		// size is in the statement's text, not a parameter: a plan made for
		// any size (the pinned generic plan) read every pending attempt.
		// Twice the limit: four times cost the claim twice as much (it was
		// most of a paced claim's reads) and claimed no more.
		look := `SELECT id, mchid, next_run_at FROM attempts
					WHERE status = 'pending' AND ` + filter + paced + `
					  AND (lease_expires_at IS NULL OR lease_expires_at <= ` + dbClock + `)
					ORDER BY next_run_at
					LIMIT ` + fmt.Sprint(2*c.Limit)
		// Attempts are looked up by id (the ids of a claim, the rows the
		// window picked) with every condition above the lookup, which
		// LIMIT 1 keeps apart: with the conditions beside it, the plan pinned
		// while the table is empty (a daemon's first claim on a fresh
		// database) scanned a partial index of the pending attempts for
		// every id instead of the primary key, about 2,000 buffers a claim.
		// The rows the lookup locks and the conditions then refuse are left
		// as they were (a lock for the statement's moment, no lease).
		//
		// The budget is read once, in the look: the lock reads
		// merchant_pace in the same snapshot and would find the same.
		byID := func(id, lock, budget string) string {
			return ` CROSS JOIN LATERAL (
						SELECT id, mchid, status, next_run_at, lease_expires_at FROM attempts
						WHERE id = ` + id + ` LIMIT 1` + lock + `
					) a
					WHERE a.status = 'pending' AND a.next_run_at <= ` + dbClock + budget + `
					  AND (a.lease_expires_at IS NULL OR a.lease_expires_at <= ` + dbClock + `)`
		}
		if c.IDs != nil {
			look = `SELECT a.id, a.mchid, a.next_run_at FROM unnest($5::bigint[]) AS want(id)` + byID("want.id", "", pacedA)
		}
		args = append(args, c.PerMerchant)
		with = `fair AS MATERIALIZED (
			SELECT id FROM (
				SELECT id, next_run_at, row_number() OVER (PARTITION BY mchid ORDER BY next_run_at) AS rn
				FROM (
					` + look + `
				) candidates
			) ranked WHERE rn <= $` + fmt.Sprint(len(args)) + `
			ORDER BY next_run_at
			LIMIT $2
		), `
		due = `
			SELECT a.id FROM fair` + byID("fair.id", " FOR UPDATE SKIP LOCKED", "")
	}
	// The claim runs all the time: its plan is pinned (see queryPinned).
	//
	// It moves the attempt's next run to the end of its lease, when it can
	// be claimed again at the earliest anyway: the attempts being worked
	// leave the head of the due index, which every claim's look would
	// otherwise walk past (a quarter less time a claim; the workers' writes
	// set the next run they decide, and a hand-back sets it to now).
	var got []reversald.Attempt
	update := `UPDATE attempts a
		SET lease_owner = $3, lease_expires_at = ` + dbClock + ` + $4::interval, token = a.token + 1, updated_at = ` + dbClock + `,
		    next_run_at = GREATEST(a.next_run_at, ` + dbClock + ` + $4::interval)
		FROM due WHERE a.id = due.id
		RETURNING ` + attemptColumns
	sql := `WITH ` + with + `due AS (` + due + `
		)
		` + update
	leasing := c.Paced && c.Slots != nil && c.Slots.Pace.BurstFitsASecond(c.Slots.Window)
	if leasing {
		sl := c.Slots
		args = append(args, sl.Pace.Interval, sl.Pace.tolerance(), sl.Pace.MinGap, max(sl.MaxWait, 0), sl.Window)
		p := func(i int) string { return `$` + fmt.Sprint(len(args)-4+i) + `::interval` }
		sql = `WITH ` + with + `due AS (` + due + `
		), claimed AS (
			` + update + `
		), want AS (
			SELECT mchid, ` + p(0) + ` AS iv, ` + p(1) + ` AS tol, ` + p(2) + ` AS gap, ` + p(3) + ` AS mw, ` + p(4) + ` AS win,
				LEAST(sum(CASE WHEN step = 'query' THEN 3 WHEN step = 'cancel' AND NOT cancel_pending THEN 2 ELSE 1 END), 1048576)::int AS calls
			FROM claimed GROUP BY mchid
			ORDER BY mchid -- the order ReserveMany locks merchants in
		), ` + leaseSQL("want") + `
		SELECT c.*, COALESCE(t.leased, f.leased, 0), COALESCE(t.us, f.us, 0)
		FROM claimed c LEFT JOIN taken t ON t.mchid = c.mchid LEFT JOIN first f ON f.mchid = c.mchid`
	}
	var slots []Reserved
	err := s.queryPinned(ctx, sql, args, func(rows pgx.Rows) error {
		var (
			a      reversald.Attempt
			err    error
			leased int32
			us     int64
		)
		if leasing {
			a, err = scanAttemptAnd(rows, &leased, &us)
		} else {
			a, err = scanAttempt(rows)
		}
		if err != nil {
			return err
		}
		got = append(got, a)
		var r Reserved
		if leased > 0 {
			r = Reserved{Wait: max(time.Duration(us)*time.Microsecond, 0), OK: true, Calls: int(leased)}
		}
		slots = append(slots, r)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claim attempts for %s: %w", c.Owner, err)
	}
	return got, slots, nil
}

// Step is the result of one executor step: the attempt's new state (the
// mutable fields of the attempt, as the executor set them), the gateway calls it
// made, and whether the worker keeps its lease to go on at once.
type Step struct {
	// Attempt: ID and Token identify the claim; the rest is the new state.
	// Its GatewayCalls and BudgetCalls already count Calls.
	Attempt reversald.Attempt
	Calls   []reversald.Call
	// KeepLease renews the lease for Lease from now (PostgreSQL's now)
	// instead of releasing it.
	KeepLease bool
	Lease     time.Duration
	// Now is the writer's clock when it computed Attempt.NextRunAt: the
	// re-check is stored that long after PostgreSQL's now, so an instance
	// whose clock is off does not shift it. Zero stores NextRunAt as it is.
	Now time.Time
}

// WriteStep writes a step in one transaction: the attempt's new state, an
// audit row per call, and, when the attempt became final, one outbox row per
// non-conflicting event. It is fenced: if the attempt's token is no longer
// a.Token, the attempt and outbox are left alone, the calls are recorded as
// fenced out, and ErrFenced is returned.
//
// The statements go in one pipelined batch, which PostgreSQL runs as one
// implicit transaction (everything up to the batch's single Sync): one round
// trip. Each statement after the update checks the token itself, so a fenced
// update makes the rest no-ops. The outbox statement runs after the update
// has taken the row lock, with its own snapshot, so it sees every event that
// an intake holding the attempt FOR SHARE committed first.
func (s *Store) WriteStep(ctx context.Context, st Step) error {
	a := cleanStep(st.Attempt)
	owner := ""
	if st.KeepLease {
		owner = a.LeaseOwner
	}
	var writerNow *time.Time
	if !st.Now.IsZero() {
		writerNow = &st.Now
	}
	b := &pgx.Batch{}
	// $20 is the clock (dbClock's parameter): NULL in production, so the
	// lease, the decision time and the re-check are on PostgreSQL's clock.
	clock := clockParam(20)
	update := b.Queue(`
		UPDATE attempts SET
			status = $3, step = $4, method = $5, cancel_pending = $6, syssn = $7, pay_type = $8,
			cancel_syssn = $9, respcd = $10, resperr = $11, respmsg = $12, reason = $13,
			rechecks = $14,
			next_run_at = LEAST(CASE WHEN $29::timestamptz IS NULL THEN $15::timestamptz
			                         ELSE `+clock+` + ($15::timestamptz - $29::timestamptz) END, deadline_at),
			gateway_calls = $16,
			decided_at = CASE WHEN $17::boolean THEN `+clock+` END, lease_owner = $18,
			lease_expires_at = CASE WHEN $19::boolean THEN `+clock+` + $30::interval END, updated_at = `+clock+`,
			cancel_calls = $21, cancel_reached = $22, cancel_respcd = $23, budget_calls = $24,
			record_respcd = $25, record_cancel = $26, record_txamt = $27, record_txcurrcd = $28
		WHERE id = $1 AND token = $2`,
		a.ID, a.Token, a.Status, a.Step, a.Method, a.CancelPending, a.Syssn, a.PayType,
		a.CancelSyssn, a.Respcd, a.Resperr, a.Respmsg, a.Reason,
		a.Rechecks, a.NextRunAt, a.GatewayCalls, a.Final(), owner, st.KeepLease, s.clock(),
		a.CancelCalls, a.CancelReached, a.CancelRespcd, a.BudgetCalls,
		a.RecordRespcd, a.RecordCancel, a.RecordTxAmt, a.RecordTxCurrCd, writerNow, st.Lease)
	fenced := false
	update.Exec(func(tag pgconn.CommandTag) error {
		fenced = tag.RowsAffected() == 0
		return nil
	})
	if err := queueCalls(b, a, st.Calls, false); err != nil {
		return err
	}
	if a.Final() {
		b.Queue(queueFinalOutcomes, a.ID, a.Token)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write step of attempt %d (token %d): %w", a.ID, a.Token, err)
	}
	if fenced {
		// The calls happened at the gateway all the same: keep their audit.
		if err := s.recordFencedCalls(ctx, a, st.Calls); err != nil {
			return fmt.Errorf("write step of attempt %d (token %d): %w (and %w)", a.ID, a.Token, ErrFenced, err)
		}
		return fmt.Errorf("write step of attempt %d (token %d): %w", a.ID, a.Token, ErrFenced)
	}
	return nil
}

// cleanStep cleans the text of a step's attempt: text from the gateway is
// stored as PostgreSQL text, which refuses NUL, and copied into outcomes,
// which must stay small.
func cleanStep(a reversald.Attempt) reversald.Attempt {
	a.Respcd, a.Resperr, a.Respmsg = cleanText(a.Respcd, 16), cleanText(a.Resperr, maxText), cleanText(a.Respmsg, maxText)
	a.Reason, a.Syssn, a.CancelSyssn = cleanText(a.Reason, maxText), cleanText(a.Syssn, 64), cleanText(a.CancelSyssn, 64)
	a.PayType, a.CancelRespcd = cleanText(a.PayType, 16), cleanText(a.CancelRespcd, 16)
	a.RecordTxCurrCd, a.RecordRespcd, a.RecordCancel = cleanText(a.RecordTxCurrCd, 16), cleanText(a.RecordRespcd, 16), cleanText(a.RecordCancel, 16)
	return a
}

// queueFinalOutcomes queues the outcome of attempt $1, final now, for each of
// its events that does not conflict with it (a conflict got its outcome at
// intake), while the attempt still has token $2.
const queueFinalOutcomes = insertOutcomes + `a.id = $1 AND a.token = $2 AND NOT e.conflict`

func (s *Store) recordFencedCalls(ctx context.Context, a reversald.Attempt, calls []reversald.Call) error {
	if len(calls) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := queueCalls(b, a, calls, true); err != nil {
		return err
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record fenced-out calls: %w", err)
	}
	return nil
}

// queueCalls queues one insert of every call's audit row. Unless fencedOut,
// the rows are written only while the attempt still has a's token.
func queueCalls(b *pgx.Batch, a reversald.Attempt, calls []reversald.Call, fencedOut bool) error {
	if len(calls) == 0 {
		return nil
	}
	var c callRows
	if err := c.add(a, calls); err != nil {
		return err
	}
	b.Queue(`
		INSERT INTO gateway_calls (attempt_id, token, fenced_out, step, endpoint, request, http_status,
		                           respcd, error, response, latency_us, called_at, app_code)
		SELECT $1, $2, $3, c.*
		FROM unnest($4::text[], $5::text[], $6::jsonb[], $7::int[], $8::text[], $9::text[], $10::bytea[],
		            $11::bigint[], $12::timestamptz[], $13::text[]) AS c
		WHERE $3 OR EXISTS (SELECT 1 FROM attempts WHERE id = $1 AND token = $2)`,
		a.ID, a.Token, fencedOut, c.step, c.endpoint, c.req, c.status, c.respcd, c.errText, c.resp, c.latency, c.at, c.appCode)
	return nil
}

// callRows are audit rows of gateway calls, as columns.
type callRows struct {
	attempt, token, latency                  []int64
	step, endpoint, respcd, errText, appCode []string
	req, resp                                [][]byte
	status                                   []int32
	at                                       []time.Time
}

// add appends the rows of attempt a's calls.
func (r *callRows) add(a reversald.Attempt, calls []reversald.Call) error {
	for _, c := range calls {
		fields := make(map[string]string, len(c.Request))
		for k, v := range c.Request {
			fields[cleanText(k, 64)] = cleanText(v, maxText) // jsonb refuses \u0000
		}
		req, err := json.Marshal(fields)
		if err != nil {
			return fmt.Errorf("encode audit request of attempt %d: %w", a.ID, err)
		}
		r.attempt, r.token = append(r.attempt, a.ID), append(r.token, a.Token)
		r.step, r.endpoint, r.respcd = append(r.step, string(c.Step)), append(r.endpoint, c.Endpoint), append(r.respcd, cleanText(c.Respcd, 16))
		r.errText, r.appCode = append(r.errText, cleanText(c.Error, maxText)), append(r.appCode, cleanText(c.AppCode, 64))
		r.req, r.resp = append(r.req, req), append(r.resp, c.Response)
		r.status = append(r.status, int32(min(max(c.HTTPStatus, 0), 999)))
		r.latency, r.at = append(r.latency, c.Latency.Microseconds()), append(r.at, c.At)
	}
	return nil
}

// maxText bounds a free-text column (resperr, respmsg, reason, error).
const maxText = 512

// cleanText drops NUL bytes and replaces invalid UTF-8 with U+FFFD
// (PostgreSQL text refuses both) and cuts s to at most max bytes on a rune
// boundary.
func cleanText(s string, max int) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
