package reversal

import (
	"errors"
	"fmt"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// Policy bounds the re-checks of the decision table.
type Policy struct {
	// NotFoundRechecks is how many queries, after QFPay said the transaction
	// does not exist, still find no record before the outcome is not_found.
	NotFoundRechecks int
	// ConfirmRechecks is how many confirming queries may still show the
	// payment uncancelled after a successful cancel before a person must look.
	ConfirmRechecks int
}

// DefaultPolicy is what production runs with unless configured otherwise.
var DefaultPolicy = Policy{NotFoundRechecks: 3, ConfirmRechecks: 5}

// Validate reports every problem with p.
func (p Policy) Validate() error {
	var errs []error
	if p.NotFoundRechecks < 0 {
		errs = append(errs, fmt.Errorf("not-found re-checks must not be negative, got %d", p.NotFoundRechecks))
	}
	if p.ConfirmRechecks < 0 {
		errs = append(errs, fmt.Errorf("confirm re-checks must not be negative, got %d", p.ConfirmRechecks))
	}
	return errors.Join(errs...)
}

// Observation is what one step saw: the answer to a query (for the query and
// confirm steps) or to a cancel, and the error the client returned with it.
type Observation struct {
	Query  *qfpay.QueryResult
	Cancel *qfpay.CancelResult
	Method qfpay.Method // the cancel's method
	Err    error
}

// Schedule says when the attempt runs next.
type Schedule int

const (
	// Final: the attempt has its outcome.
	Final Schedule = iota
	// Now: go on with the next step at once, under the same lease.
	Now
	// Later: run the next step after a backoff.
	Later
)

func (s Schedule) String() string {
	return [...]string{"final", "now", "later"}[s]
}

// Decide is the executor's decision table (DESIGN.md, QFPAY.md §4): from an
// attempt at a step and what that step observed, the attempt's next state and
// when it runs. It does no I/O and reads no clock.
func Decide(a reversald.Attempt, obs Observation, p Policy) (reversald.Attempt, Schedule) {
	switch a.Step {
	case reversald.StepQuery:
		return decideQuery(a, obs, p)
	case reversald.StepCancel:
		return decideCancel(a, obs)
	case reversald.StepConfirm:
		return decideConfirm(a, obs, p)
	}
	return final(a, reversald.StatusNeedsReview, fmt.Sprintf("attempt is at unknown step %q", a.Step))
}

func decideQuery(a reversald.Attempt, obs Observation, p Policy) (reversald.Attempt, Schedule) {
	a, rec, found, sched, answered := readAnswer(a, obs, "query")
	if !answered {
		return a, sched // a cancel still pending stays pending
	}
	if a.CancelPending {
		return decidePendingCancel(a, rec, found, p)
	}
	if !found {
		if a.Rechecks == 0 {
			// QFPay has not seen it: cancel, so that it cannot complete later.
			return next(a, reversald.StepCancel, 0, "no record at QFPay; cancelling"), Now
		}
		if a.Rechecks >= p.NotFoundRechecks {
			return final(a, reversald.StatusNotFound, fmt.Sprintf("QFPay has no such transaction after %d re-checks", a.Rechecks))
		}
		return next(a, reversald.StepQuery, a.Rechecks+1, "still no record at QFPay; re-checking"), Later
	}
	if a, sched, ok := settled(a, rec); ok {
		return a, sched
	}
	switch rec.State() {
	case qfpay.StatePaid:
		return final(a, reversald.StatusPaid, "the payment completed and cannot be reversed: refund it")
	case qfpay.StateInFlight:
		return next(a, reversald.StepCancel, 0, "payment still in flight; cancelling"), Now
	default: // unreadable (the settled states were taken above)
	}
	return final(a, reversald.StatusNeedsReview, fmt.Sprintf("query record unreadable (respcd %q, cancel %q)", rec.Respcd, rec.Cancel))
}

// decidePendingCancel reads a query made while a cancel's outcome is unknown
// (it answered in progress or "payment failed", or never answered, or its
// worker died). Only a
// cancelled, refunded or failed record settles it. Paid, in flight or no
// record may be the cancel still under way at QFPay: re-check, never conclude
// "paid" (someone would refund a payment that is being reversed) and never
// cancel again at once.
func decidePendingCancel(a reversald.Attempt, rec qfpay.Record, found bool, p Policy) (reversald.Attempt, Schedule) {
	if found {
		if a, sched, ok := settled(a, rec); ok {
			return a, sched
		}
		if rec.State() == qfpay.StateUnknown {
			return final(a, reversald.StatusNeedsReview, fmt.Sprintf("query record unreadable after a cancel (respcd %q, cancel %q)", rec.Respcd, rec.Cancel))
		}
	}
	if a.Rechecks < p.ConfirmRechecks {
		return next(a, reversald.StepQuery, a.Rechecks+1, "a cancel was sent and has not shown at QFPay yet; re-checking"), Later
	}
	// The cancel has not taken after the whole re-check budget.
	n := a.Rechecks
	a.CancelPending = false
	switch {
	case !found:
		return final(a, reversald.StatusNotFound, fmt.Sprintf("QFPay has no such transaction %d re-checks after a cancel", n))
	case rec.State() == qfpay.StateInFlight:
		return next(a, reversald.StepCancel, 0, fmt.Sprintf("a cancel did not take in %d re-checks and the payment is still in flight; cancelling again", n)), Now
	}
	return final(a, reversald.StatusNeedsReview, fmt.Sprintf("a cancel was sent but QFPay still shows the payment paid after %d re-checks: check it before refunding", n))
}

// settled maps the records that end an attempt whatever came before:
// cancelled, refunded, failed.
func settled(a reversald.Attempt, rec qfpay.Record) (reversald.Attempt, Schedule, bool) {
	var (
		status reversald.Status
		reason string
	)
	switch rec.State() {
	case qfpay.StateReversed:
		status, reason = reversald.StatusReversed, "QFPay shows the payment reversed"
	case qfpay.StateClosed:
		status, reason = reversald.StatusClosed, "QFPay shows the payment closed"
	case qfpay.StateRefunded:
		status, reason = reversald.StatusRefunded, "QFPay shows the payment refunded"
	case qfpay.StateFailed:
		status, reason = reversald.StatusNotPaid, "the payment failed at QFPay: nothing was charged"
	default: // paid, in flight, unreadable: not settled
		return a, 0, false
	}
	a, sched := final(a, status, reason)
	return a, sched, true
}

func decideCancel(a reversald.Attempt, obs Observation) (reversald.Attempt, Schedule) {
	if errors.Is(obs.Err, qfpay.ErrNotCancellable) {
		a.Method = reversald.MethodNone
		return final(a, reversald.StatusUnsupported, fmt.Sprintf("pay type %s cannot be cancelled through the API", a.PayType))
	}
	a.Method = methodOf(obs.Method)
	if obs.Cancel != nil {
		setResponse(&a, obs.Cancel.Call)
		if obs.Cancel.Syssn != "" {
			a.CancelSyssn = obs.Cancel.Syssn
		}
		if a.Syssn == "" && obs.Cancel.OrigSyssn != "" {
			a.Syssn = obs.Cancel.OrigSyssn
		}
	}
	cls := qfpay.Classify(obs.Err)
	switch cls {
	case qfpay.ClassSuccess, qfpay.ClassAlreadyCancelled:
		a.CancelPending = false
		return next(a, reversald.StepConfirm, 0, "cancel accepted; confirming"), Now
	case qfpay.ClassPaid:
		a.CancelPending = false
		return final(a, reversald.StatusPaid, "the payment completed before it could be cancelled: refund it")
	case qfpay.ClassRefunded:
		a.CancelPending = false
		return final(a, reversald.StatusRefunded, "QFPay says the payment is already refunded")
	case qfpay.ClassNotFound:
		a.CancelPending = false
		return next(a, reversald.StepQuery, 1, "QFPay says the transaction does not exist; re-checking"), Later
	case qfpay.ClassPaymentFailed:
		// Confirm by query, reading it as after any answered-but-unsettled
		// cancel: only a settled record ends it, and a query that disagrees
		// (in flight, paid, no record) is re-checked with backoff, not met
		// with another cancel at once.
		a.CancelPending = true
		return next(a, reversald.StepQuery, 0, "QFPay says the payment failed; confirming by query"), Now
	case qfpay.ClassInProgress, qfpay.ClassDuplicate:
		// The cancel is under way (or was sent before): it stays pending
		// until a query shows how it ended.
		a.CancelPending = true
		return next(a, reversald.StepQuery, 0, "cancel in progress at QFPay; re-checking by query"), Later
	case qfpay.ClassTransient:
		// The cancel may or may not have happened: never re-send blindly.
		// It stays pending until a query shows how it ended.
		a.CancelPending = true
		return next(a, reversald.StepQuery, 0, "cancel unanswered ("+errText(obs.Err)+"); querying before anything else"), Later
	case qfpay.ClassUnsupported:
		a.Method = reversald.MethodNone
		return final(a, reversald.StatusUnsupported, "pay type cannot be cancelled through the API")
	default: // ClassNeedsReview: configuration, signature, risk, unknown
	}
	a.CancelPending = false
	return final(a, reversald.StatusNeedsReview, "cancel refused: "+errText(obs.Err))
}

func decideConfirm(a reversald.Attempt, obs Observation, p Policy) (reversald.Attempt, Schedule) {
	a, rec, found, sched, answered := readAnswer(a, obs, "confirming query")
	if !answered {
		return a, sched
	}
	if found {
		if a, sched, ok := settled(a, rec); ok {
			return a, sched
		}
	}
	// Paid, in flight, or no record yet: the cancel has not shown up.
	what := "the payment is not shown cancelled"
	if !found {
		what = "QFPay shows no record"
	}
	if a.Rechecks >= p.ConfirmRechecks {
		return final(a, reversald.StatusNeedsReview, fmt.Sprintf("cancel was accepted but after %d re-checks %s", a.Rechecks, what))
	}
	return next(a, reversald.StepConfirm, a.Rechecks+1, "cancel accepted but "+what+" yet; re-checking"), Later
}

// readAnswer reads a query's answer the same way for every step that
// queries: a call that did not answer is re-checked later, a refused one needs
// review, and "no such transaction" is an answer with no record. answered is
// false when it decided on its own (a and sched are then the decision).
func readAnswer(a reversald.Attempt, obs Observation, what string) (_ reversald.Attempt, rec qfpay.Record, found bool, sched Schedule, answered bool) {
	rec, found, cls := readQuery(&a, obs)
	switch cls {
	case qfpay.ClassSuccess:
		return a, rec, found, 0, true
	case qfpay.ClassNotFound:
		return a, rec, false, 0, true
	case qfpay.ClassTransient, qfpay.ClassInProgress, qfpay.ClassDuplicate:
		a.Reason = what + " did not answer; re-checking: " + errText(obs.Err)
		return a, rec, false, Later, false
	default: // anything else a query can be answered with is a refusal
	}
	a, sched = final(a, reversald.StatusNeedsReview, what+" refused: "+errText(obs.Err))
	return a, rec, false, sched, false
}

// readQuery fills what a query taught about the payment into a and returns
// its record.
func readQuery(a *reversald.Attempt, obs Observation) (qfpay.Record, bool, qfpay.Class) {
	cls := qfpay.Classify(obs.Err)
	if obs.Query == nil {
		return qfpay.Record{}, false, cls
	}
	setResponse(a, obs.Query.Call)
	rec, ok := obs.Query.Payment(a.OutTradeNo)
	if !ok {
		return rec, false, cls
	}
	if rec.Syssn != "" {
		a.Syssn = rec.Syssn
	}
	if a.PayType == "" && rec.PayType != "" {
		a.PayType = rec.PayType
	}
	// The record's own code says what happened to the payment.
	a.Respcd, a.Resperr = rec.Respcd, rec.ErrMsg
	return rec, true, cls
}

func setResponse(a *reversald.Attempt, c qfpay.Call) {
	if c.Respcd != "" || c.HTTPStatus != 0 {
		a.Respcd, a.Resperr, a.Respmsg = c.Respcd, c.Resperr, c.Respmsg
	}
}

func final(a reversald.Attempt, status reversald.Status, reason string) (reversald.Attempt, Schedule) {
	a.Status, a.Step, a.Reason, a.CancelPending = status, reversald.StepDone, reason, false
	return a, Final
}

func next(a reversald.Attempt, step reversald.Step, rechecks int, reason string) reversald.Attempt {
	a.Step, a.Rechecks, a.Reason = step, rechecks, reason
	return a
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// methodOf names a gateway method in the domain's words: the one place the
// two vocabularies meet.
func methodOf(m qfpay.Method) reversald.Method {
	switch m {
	case qfpay.MethodReversal:
		return reversald.MethodReversal
	case qfpay.MethodClose:
		return reversald.MethodClose
	default: // MethodNone or an unrouted pay type: nothing was sent
		return reversald.MethodNone
	}
}
