package reversal

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/backoff"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/store"
)

// maxStepsPerClaim bounds the steps one claim chains without a backoff
// (query, cancel, confirm is three; a re-cancel after a re-check adds two).
const maxStepsPerClaim = 6

// stepFunc runs one step of a claimed attempt against the gateway and returns
// what it observed. ok is false when the step ended the run itself (it could
// not get a gateway slot within the lease, or the attempt is no longer ours):
// the step has then written what had to be written.
//
// A step makes its gateway calls through (*run).call, which paces the
// merchant and records every call: adding a step is adding a function here
// and a row in stepTable.
type stepFunc func(ctx context.Context, r *run) (obs Observation, ok bool)

// stepTable maps each step of the state machine to the function that runs
// it. A step missing here is observed as nothing, which Decide turns into
// needs_review.
var stepTable = map[reversald.Step]stepFunc{
	reversald.StepQuery:   queryStep,
	reversald.StepConfirm: queryStep,
	reversald.StepCancel:  cancelStep,
}

// run is one claimed attempt being driven: its state and the gateway calls
// not yet written.
type run struct {
	e     *Executor
	a     reversald.Attempt
	calls []reversald.Call
	log   *slog.Logger
}

// drive runs one claimed attempt's steps until it is final, scheduled for
// later, or its lease is lost.
func (e *Executor) drive(ctx context.Context, stopping <-chan struct{}, a reversald.Attempt) {
	ctx, ended := e.cfg.Hooks.Drive(ctx, a)
	r := &run{e: e, a: a, log: e.cfg.Logger.With("attempt", a.ID, "mchid", a.MchID, "out_trade_no", a.OutTradeNo)}
	// A cancel whose answer was never written may have happened (its worker
	// died, or the answer was lost): find out by query, never re-send.
	if r.a.Step == reversald.StepCancel && r.a.CancelPending {
		r.a.Step, r.a.CancelPending, r.a.CancelReached, r.a.CancelRespcd = reversald.StepConfirm, false, true, ""
		r.a.Rechecks = 0
	}
	defer func() { ended(r.a) }()
	for made := 1; ; made++ {
		if !e.cfg.Now().Before(r.a.DeadlineAt) {
			r.a, _ = review(r.a, "deadline passed before a final answer")
			r.write(ctx, false)
			return
		}
		started := time.Now()
		step := r.a.Step
		var obs Observation
		sctx, stepped := e.cfg.Hooks.StepStart(ctx, r.a)
		if fn, known := stepTable[step]; known {
			var ok bool
			if obs, ok = fn(sctx, r); !ok {
				stepped(r.a, obs.Err)
				return
			}
		}
		var sched Schedule
		r.a, sched = Decide(r.a, obs, e.cfg.Policy)
		stepped(r.a, obs.Err)
		e.cfg.Hooks.Step(step, time.Since(started))
		switch sched {
		case Final:
			r.write(ctx, false)
			return
		case Later:
			// Retry-After is honoured up to the backoff cap: nothing waits
			// past its bounds.
			r.a.NextRunAt = e.cfg.Now().Add(max(e.backoff(r.a), min(retryAfter(obs.Err), e.cfg.BackoffMax)))
			r.write(ctx, false)
			return
		case Now:
			// However the gateway answers, one claim makes a bounded number
			// of calls; the rest waits for a backoff.
			if made >= maxStepsPerClaim {
				if r.a.Step == reversald.StepCancel {
					r.a.Step = reversald.StepQuery // a cancel after a backoff needs a fresh query
				}
				r.a.NextRunAt = e.cfg.Now().Add(e.backoff(r.a))
				r.write(ctx, false)
				return
			}
			if step == reversald.StepCancel && answerDecides(r.a.CancelRespcd) {
				// An answer that decides what comes later (a refusal, a code
				// outside the table, 1260) is written before anything else
				// happens, so that a crash during the confirming query cannot
				// turn it into a lost answer, which allows a second cancel.
				// Any other answer, lost, reads the same as a lost answer.
				if !r.keep(ctx) {
					return
				}
			}
			select {
			case <-stopping:
				if r.a.Step == reversald.StepCancel {
					r.a.Step = reversald.StepQuery // a cancel after a restart needs a fresh query
				}
				r.reschedule(ctx, r.a.Reason)
				return
			default:
			}
			// Queries that follow each other at once share one write (the
			// intent write before a cancel writes them).
		}
	}
}

// queryStep asks QFPay for the payment: the query and confirm steps. Near a
// month boundary it asks each month (QFPay's ranges stay inside one), until
// one answers with the payment's record or does not answer.
func queryStep(ctx context.Context, r *run) (Observation, bool) {
	var obs Observation
	for i, req := range queryRequests(r.a, r.e.cfg.TxZone) {
		if i > 0 && r.a.BudgetCalls >= r.e.cfg.Policy.MaxGatewayCalls {
			break // the budget is spent: Decide ends the attempt with what was read
		}
		var res qfpay.QueryResult
		err, ok := r.call(ctx, nil, func(ctx context.Context, gw *qfpay.Client) (qfpay.Call, error) {
			var err error
			res, err = gw.Query(ctx, req)
			return res.Call, err
		})
		if !ok {
			return Observation{}, false
		}
		obs = Observation{Query: &res, Err: err}
		_, found := res.Payment(r.a.OutTradeNo)
		if found || (err != nil && qfpay.Classify(err) != qfpay.ClassNotFound) {
			break
		}
	}
	return obs, true
}

// cancelStep is the cancel protocol: route the pay type to reversal or
// close, wait for the merchant's gateway slot, write the intent (CancelPending
// with a fresh lease) so that whoever claims the attempt next queries before
// it could cancel again, check that the lease still outlasts the call, and
// only then send.
func cancelStep(ctx context.Context, r *run) (Observation, bool) {
	acct, err := r.e.gw.Resolve(r.a.MchID)
	if err != nil {
		return Observation{Err: err}, true // no credential: nothing can be sent
	}
	method, err := acct.Client.Route(r.a.PayType)
	if err != nil {
		return Observation{Err: err}, true
	}
	if r.a.CancelCalls >= r.e.cfg.Policy.CancelMaxCalls {
		return Observation{Err: ErrCancelBound}, true // Decide reaches this first; never send past it
	}
	intent := func() bool {
		r.a.CancelPending = true
		r.a.CancelCalls++
		r.a.Method = methodOf(method)
		if !r.keep(ctx) {
			return false
		}
		// The lease must outlast the cancel. If the write itself was slow
		// (pool or lock waits), give the attempt back instead: whoever
		// claims it next queries first, as the intent says.
		if r.e.cfg.Now().After(r.a.LeaseExpiresAt.Add(-r.e.cfg.Lease / 2)) {
			// The cancel provably did not leave: no intent to keep.
			r.a.CancelPending, r.a.Step = false, reversald.StepQuery
			r.a.CancelCalls--
			r.reschedule(ctx, "the lease ran short before the cancel; querying first next time")
			return false
		}
		return true
	}
	var res qfpay.CancelResult
	err, ok := r.call(ctx, intent, func(ctx context.Context, gw *qfpay.Client) (qfpay.Call, error) {
		var err error
		if method == qfpay.MethodReversal {
			res, err = gw.Reverse(ctx, cancelRequest(r.a))
		} else {
			res, err = gw.Close(ctx, cancelRequest(r.a))
		}
		return res.Call, err
	})
	if !ok {
		return Observation{}, false
	}
	if r.e.crashAfterCancel != nil && r.e.crashAfterCancel(r.a) {
		return Observation{}, false
	}
	return Observation{Cancel: &res, Method: method, Err: err}, true
}

// call makes one gateway call for the current step: it resolves the
// merchant's QFPay account (none is an error that is qfpay.ErrNoCredential,
// returned with nothing sent, before anything else), waits for the merchant's
// slot (never past the lease), runs before (if any: it may end the run by
// returning false), sends with the account's client, and records the call. ok
// is false when the run ended here; the attempt has then been written.
//
// The account is resolved at every call, so a credential reload (a rotated
// key) applies from the next call on; a call under way keeps its client.
func (r *run) call(ctx context.Context, before func() bool, send func(context.Context, *qfpay.Client) (qfpay.Call, error)) (err error, ok bool) {
	acct, err := r.e.gw.Resolve(r.a.MchID)
	if err != nil {
		return err, true
	}
	pace := r.e.merchantPace(acct)
	key := paceKey(r.a.MchID, acct)
	if !r.e.pace(ctx, key, pace, r.a.LeaseExpiresAt) {
		// The step stays as it is: a cancel waiting for its slot keeps the
		// query it follows (a fresh query would spend the slot the cancel
		// waits for, again and again). Whatever happened meanwhile, only the
		// query after the cancel settles.
		r.reschedule(ctx, "merchant pacing: no gateway slot within the lease")
		return nil, false
	}
	if before != nil && !before() {
		return nil, false
	}
	c, err := send(ctx, acct.Client)
	r.record(c, err)
	if d := retryAfter(err); d > 0 || isTooMany(err) {
		// QFPay says this merchant is over its limit: every instance holds
		// its calls back, for as long as asked (capped like any backoff).
		d = min(max(d, r.e.cfg.BackoffBase), r.e.cfg.BackoffMax)
		r.e.pacer.Pause(ctx, key, pace, d)
		r.e.cfg.Hooks.Paused(key, d)
	}
	return err, true
}

// record keeps the audit row of a call that reached the wire and counts it.
func (r *run) record(c qfpay.Call, err error) {
	if !c.Sent {
		return
	}
	r.a.GatewayCalls++
	r.a.BudgetCalls++
	r.e.cfg.Hooks.Call(c.Endpoint, qfpay.Classify(err), c.Latency)
	sc := reversald.Call{
		Step: r.a.Step, Endpoint: c.Endpoint, AppCode: c.AppCode, Request: c.Request, HTTPStatus: c.HTTPStatus,
		Respcd: c.Respcd, Response: c.Raw, Latency: c.Latency, At: r.e.cfg.Now(),
	}
	if err != nil {
		sc.Error = err.Error()
	}
	r.calls = append(r.calls, sc)
}

// write stores the attempt's state and the calls not yet written; keep
// renews the lease instead of releasing it. The write shares a commit with
// other workers' (stepWrites) and returns after it. It reports whether the
// write landed.
func (r *run) write(ctx context.Context, keep bool) bool {
	e, a := r.e, r.a
	if !keep && a.Status == reversald.StatusPending && a.NextRunAt.IsZero() {
		a.NextRunAt = e.cfg.Now()
	}
	// The write must land even if the stop is under way.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	// A re-check computed here is stored relative to PostgreSQL's clock; a
	// write that keeps the lease carries no new re-check time.
	var writerNow time.Time
	if !keep {
		writerNow = e.cfg.Now()
	}
	wctx, written := e.cfg.Hooks.StepWrite(wctx, a)
	batch, leader, err := e.steps.do(wctx, store.Step{Attempt: a, Calls: r.calls, KeepLease: keep, Lease: e.cfg.Lease, Now: writerNow})
	written(leader, batch, err)
	switch {
	case errors.Is(err, store.ErrFenced):
		r.log.Warn("lease lost: another worker owns the attempt; dropping this step", "token", a.Token)
		return false
	case err != nil:
		// The lease runs out and another claim retries from the stored state.
		r.log.Error("write step", "step", a.Step, "error", err)
		return false
	}
	if a.Final() {
		r.log.Info("attempt final", "status", a.Status, "reason", a.Reason, "gateway_calls", a.GatewayCalls)
		e.cfg.Hooks.Final(a.Status)
		e.cfg.OnFinal(a.Status)
	}
	return true
}

// keep writes the attempt and the calls so far and renews the lease; what
// is left of the lease is measured again on this process's clock, from just
// before the write. It reports whether the write landed.
func (r *run) keep(ctx context.Context) bool {
	written := r.e.cfg.Now()
	if !r.write(ctx, true) {
		return false
	}
	r.calls = nil
	r.a.LeaseExpiresAt = written.Add(r.e.cfg.Lease)
	return true
}

// reschedule writes the attempt to run again soon and releases the lease.
func (r *run) reschedule(ctx context.Context, reason string) {
	r.a.Reason = reason
	r.a.NextRunAt = r.e.cfg.Now().Add(r.e.cfg.BackoffBase)
	r.write(ctx, false)
}

// pace waits for the merchant's gateway slot, but never past the point where
// the lease would be too short for the call itself.
func (e *Executor) pace(ctx context.Context, mchid string, p store.Pace, leaseUntil time.Time) bool {
	// Never hold a slot further ahead than the claim look-ahead: a worker
	// does not sit on one merchant's far slots while others wait, and a
	// pause (429) is not run into by calls reserved long before it.
	wait := min(leaseUntil.Sub(e.cfg.Now())-e.cfg.Lease/2, 2*claimLookahead)
	wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	defer cancel()
	return e.pacer.Wait(wctx, mchid, p)
}

// paceKey names the budget a call draws from: the merchant's, or, for a
// credential that never sends mchid (one QFPay merchant, known by its app
// code), the credential's.
func paceKey(mchid string, acct qfpay.Account) string {
	if acct.Client != nil && !acct.Client.SendsMchID() {
		return "app:" + acct.AppCode
	}
	return mchid
}

// merchantPace is the budget of a merchant signed by acct: the cluster-wide
// rates unless its credential overrides them.
func (e *Executor) merchantPace(acct qfpay.Account) store.Pace {
	perMin, perSec := e.cfg.MerchantRate, e.cfg.MerchantRatePerSec
	if acct.RatePerMin > 0 {
		perMin = acct.RatePerMin
	}
	if acct.RatePerSec > 0 {
		perSec = acct.RatePerSec
	}
	return merchantPace(perMin, perSec, min(e.cfg.MerchantBurst, max(int(perMin)-1, 1)))
}

// backoff grows with the calls the attempt has made, with jitter, so that a
// burst of re-checks spreads out.
func (e *Executor) backoff(a reversald.Attempt) time.Duration {
	return backoff.Delay(min(a.GatewayCalls+a.Rechecks, 16)+1, e.cfg.BackoffBase, e.cfg.BackoffMax)
}

// isTooMany reports an HTTP 429.
func isTooMany(err error) bool {
	var h *qfpay.HTTPError
	return errors.As(err, &h) && h.Status == http.StatusTooManyRequests
}

// retryAfter is how long QFPay asked us to wait (HTTP 429 Retry-After), if
// it did.
func retryAfter(err error) time.Duration {
	var h *qfpay.HTTPError
	if errors.As(err, &h) {
		return h.RetryAfter
	}
	return 0
}

// answerDecides reports whether a cancel's answer changes what the decision
// table does later, compared with the same cancel whose answer was lost.
func answerDecides(respcd string) bool {
	return cancelNeedsReview(respcd) || qfpay.CodeClass(respcd) == qfpay.ClassPaid
}
