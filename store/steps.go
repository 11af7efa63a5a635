package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// WriteSteps writes the steps of many attempts (many workers') in one round
// trip and one commit, and returns one result per step, in order: nil, an
// error that is ErrFenced, or the error that kept the step from being
// written. It is WriteStep for each, at the cost of one:
//
//   - Fencing is per step: a step whose token is no longer its attempt's
//     changes neither the attempt nor the outbox, its calls are recorded as
//     fenced out, and its result is ErrFenced; the other steps are written.
//   - Every statement runs in one implicit transaction (one pipelined batch,
//     one Sync), so a step's result comes after the commit that made it
//     durable: an intent to cancel is written before the cancel leaves.
//   - If PostgreSQL refuses the batch (one bad row fails every row of a
//     statement), nothing of it was written; each step is then written on
//     its own with WriteStep, so each gets its own result and one bad step
//     does not fail the others. Any other error (the connection, the
//     context) may have come before or after the commit, as for WriteStep:
//     every step gets it, and its worker lets the lease run out.
//
// The statements: one update of every attempt, fenced by its token, with
// the audit rows of every call (fenced out or not, as the update said) in
// the same statement; then, when some attempt became final, one insert of
// their outcomes, after the update has taken the row locks and with its own
// snapshot (see WriteStep). A stale and a current step of one attempt may be
// in one batch: the token tells them apart everywhere.
func (s *Store) WriteSteps(ctx context.Context, steps []Step) []error {
	errs := make([]error, len(steps))
	if len(steps) == 0 {
		return errs
	}
	if len(steps) == 1 {
		errs[0] = s.WriteStep(ctx, steps[0])
		return errs
	}
	b, err := queueSteps(steps, s.clock())
	if err != nil {
		// A call's audit could not be encoded: the same error, one by one.
		return s.writeEach(ctx, steps)
	}
	written := make(map[[2]int64]bool, len(steps))
	b.update.Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id, token int64
			if err := rows.Scan(&id, &token); err != nil {
				return err
			}
			written[[2]int64{id, token}] = true
		}
		return nil
	})
	err = s.pinned.SendBatch(ctx, b.batch).Close()
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		// Refused, so rolled back: nothing of the batch was written.
		return s.writeEach(ctx, steps)
	case err != nil:
		for i, st := range steps {
			errs[i] = fmt.Errorf("write step of attempt %d (token %d), in a batch of %d: %w", st.Attempt.ID, st.Attempt.Token, len(steps), err)
		}
		return errs
	}
	for i, st := range steps {
		if !written[[2]int64{st.Attempt.ID, st.Attempt.Token}] {
			errs[i] = fmt.Errorf("write step of attempt %d (token %d): %w", st.Attempt.ID, st.Attempt.Token, ErrFenced)
		}
	}
	return errs
}

// writeEach writes every step on its own.
func (s *Store) writeEach(ctx context.Context, steps []Step) []error {
	errs := make([]error, len(steps))
	for i, st := range steps {
		errs[i] = s.WriteStep(ctx, st)
	}
	return errs
}

type stepBatch struct {
	batch  *pgx.Batch
	update *pgx.QueuedQuery
}

// queueSteps builds WriteSteps' batch. clock is dbClock's parameter ($1 of
// each statement).
func queueSteps(steps []Step, clock *time.Time) (stepBatch, error) {
	n := len(steps)
	var (
		ids, tokens, txamts                                   = make([]int64, n), make([]int64, n), make([]int64, n)
		status, step, method, syssn, payType, cancelSyssn     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		respcd, resperr, respmsg, reason, owner, cancelRespcd = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		recRespcd, recCancel, recCurr                         = make([]string, n), make([]string, n), make([]string, n)
		cancelPending, final, keep, cancelReached             = make([]bool, n), make([]bool, n), make([]bool, n), make([]bool, n)
		rechecks, gatewayCalls, cancelCalls, budgetCalls      = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		nextRun                                               = make([]time.Time, n)
		writerNow                                             = make([]*time.Time, n)
		leases                                                = make([]time.Duration, n)
		finalIDs, finalTokens                                 []int64
		calls                                                 callRows
	)
	for i, st := range steps {
		a := cleanStep(st.Attempt)
		ids[i], tokens[i] = a.ID, a.Token
		status[i], step[i], method[i], cancelPending[i] = string(a.Status), string(a.Step), string(a.Method), a.CancelPending
		syssn[i], payType[i], cancelSyssn[i] = a.Syssn, a.PayType, a.CancelSyssn
		respcd[i], resperr[i], respmsg[i], reason[i] = a.Respcd, a.Resperr, a.Respmsg, a.Reason
		rechecks[i], nextRun[i], gatewayCalls[i], final[i] = int64(a.Rechecks), a.NextRunAt, int64(a.GatewayCalls), a.Final()
		if st.KeepLease {
			owner[i] = a.LeaseOwner
		}
		keep[i], leases[i] = st.KeepLease, st.Lease
		if !st.Now.IsZero() {
			writerNow[i] = &st.Now
		}
		cancelCalls[i], cancelReached[i], cancelRespcd[i], budgetCalls[i] = int64(a.CancelCalls), a.CancelReached, a.CancelRespcd, int64(a.BudgetCalls)
		recRespcd[i], recCancel[i], txamts[i], recCurr[i] = a.RecordRespcd, a.RecordCancel, a.RecordTxAmt, a.RecordTxCurrCd
		if a.Final() {
			finalIDs, finalTokens = append(finalIDs, a.ID), append(finalTokens, a.Token)
		}
		if err := calls.add(a, st.Calls); err != nil {
			return stepBatch{}, err
		}
	}
	b := &pgx.Batch{}
	update := b.Queue(`
		WITH v AS (
			SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::boolean[],
			                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
			                     $15::int[], $16::timestamptz[], $17::timestamptz[], $18::int[], $19::boolean[], $20::text[],
			                     $21::boolean[], $22::interval[], $23::int[], $24::boolean[], $25::text[], $26::int[],
			                     $27::text[], $28::text[], $29::bigint[], $30::text[])
				AS v(id, token, status, step, method, cancel_pending, syssn, pay_type, cancel_syssn, respcd, resperr,
				     respmsg, reason, rechecks, next_run_at, writer_now, gateway_calls, final, owner, keep, lease,
				     cancel_calls, cancel_reached, cancel_respcd, budget_calls, record_respcd, record_cancel,
				     record_txamt, record_txcurrcd)
		), u AS (
			UPDATE attempts a SET
				status = v.status, step = v.step, method = v.method, cancel_pending = v.cancel_pending,
				syssn = v.syssn, pay_type = v.pay_type, cancel_syssn = v.cancel_syssn, respcd = v.respcd,
				resperr = v.resperr, respmsg = v.respmsg, reason = v.reason, rechecks = v.rechecks,
				next_run_at = LEAST(CASE WHEN v.writer_now IS NULL THEN v.next_run_at
				                         ELSE `+dbClock+` + (v.next_run_at - v.writer_now) END, a.deadline_at),
				gateway_calls = v.gateway_calls,
				decided_at = CASE WHEN v.final THEN `+dbClock+` END, lease_owner = v.owner,
				lease_expires_at = CASE WHEN v.keep THEN `+dbClock+` + v.lease END, updated_at = `+dbClock+`,
				cancel_calls = v.cancel_calls, cancel_reached = v.cancel_reached, cancel_respcd = v.cancel_respcd,
				budget_calls = v.budget_calls, record_respcd = v.record_respcd, record_cancel = v.record_cancel,
				record_txamt = v.record_txamt, record_txcurrcd = v.record_txcurrcd
			FROM v WHERE a.id = v.id AND a.token = v.token
			RETURNING a.id, a.token
		), audit AS (
			INSERT INTO gateway_calls (attempt_id, token, fenced_out, step, endpoint, request, http_status,
			                           respcd, error, response, latency_us, called_at, app_code)
			SELECT c.attempt_id, c.token, u.id IS NULL, c.step, c.endpoint, c.request, c.http_status,
			       c.respcd, c.error, c.response, c.latency_us, c.called_at, c.app_code
			FROM unnest($31::bigint[], $32::bigint[], $33::text[], $34::text[], $35::jsonb[], $36::int[], $37::text[],
			            $38::text[], $39::bytea[], $40::bigint[], $41::timestamptz[], $42::text[])
				WITH ORDINALITY AS c(attempt_id, token, step, endpoint, request, http_status, respcd, error, response,
				                     latency_us, called_at, app_code, n)
			LEFT JOIN u ON u.id = c.attempt_id AND u.token = c.token
			ORDER BY c.n
		)
		SELECT id, token FROM u`,
		clock, ids, tokens, status, step, method, cancelPending, syssn, payType, cancelSyssn, respcd, resperr,
		respmsg, reason, rechecks, nextRun, writerNow, gatewayCalls, final, owner, keep, leases,
		cancelCalls, cancelReached, cancelRespcd, budgetCalls, recRespcd, recCancel, txamts, recCurr,
		calls.attempt, calls.token, calls.step, calls.endpoint, calls.req, calls.status, calls.respcd,
		calls.errText, calls.resp, calls.latency, calls.at, calls.appCode)
	if len(finalIDs) > 0 {
		b.Queue(insertOutcomes+`(a.id, a.token) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[])) AND NOT e.conflict`,
			finalIDs, finalTokens)
	}
	return stepBatch{batch: b, update: update}, nil
}
