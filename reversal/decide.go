package reversal

import (
	"errors"
	"fmt"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// Policy bounds the decision table. Every loop in it ends by one of these
// counts, not only by the attempt's deadline.
type Policy struct {
	// NotFoundRechecks is how many queries may still find no record, when no
	// cancel can have reached QFPay, before the outcome is not_found.
	NotFoundRechecks int
	// ConfirmRechecks is how many re-checks a state that cannot settle yet
	// gets: a cancel not shown yet, a record not visible yet after a cancel,
	// a payment that cannot be cancelled still in flight, an unknown query
	// answer.
	ConfirmRechecks int
	// CancelMaxCalls is the most cancels one attempt may send over its whole
	// life, operator retries included (CANCEL_MAX_CALLS).
	CancelMaxCalls int
	// MaxGatewayCalls is the per-attempt budget of gateway calls, since
	// intake or the last operator retry (GATEWAY_MAX_CALLS).
	MaxGatewayCalls int
}

// DefaultPolicy is what production runs with unless configured otherwise.
var DefaultPolicy = Policy{NotFoundRechecks: 3, ConfirmRechecks: 5, CancelMaxCalls: 2, MaxGatewayCalls: 30}

// Validate reports every problem with p.
func (p Policy) Validate() error {
	var errs []error
	if p.NotFoundRechecks < 0 {
		errs = append(errs, fmt.Errorf("not-found re-checks must not be negative, got %d", p.NotFoundRechecks))
	}
	if p.ConfirmRechecks < 0 {
		errs = append(errs, fmt.Errorf("confirm re-checks must not be negative, got %d", p.ConfirmRechecks))
	}
	if p.CancelMaxCalls < 1 {
		errs = append(errs, fmt.Errorf("cancel max calls must be at least 1, got %d", p.CancelMaxCalls))
	}
	if p.MaxGatewayCalls < 3 {
		errs = append(errs, fmt.Errorf("gateway call budget must be at least 3 (a query, a cancel, the query after it), got %d", p.MaxGatewayCalls))
	}
	return errors.Join(errs...)
}

// ErrCancelBound is observed by a cancel step that refused to send because the
// attempt has used up its cancels.
var ErrCancelBound = errors.New("cancel bound reached: no cancel sent")

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

// Decide is the executor's decision table (docs/DESIGN.md, QFPAY.md §3-§4):
// from an attempt at a step and what that step observed, the attempt's next
// state and when it runs. It does no I/O and reads no clock.
//
// The rule above every row: only a query settles. A final money status
// (reversed, closed, paid, refunded, partially_refunded, not_paid, not_found)
// comes only from a query read after the last cancel answer; a cancel answer
// never settles anything. Ambiguity becomes a re-check or needs_review
// carrying the last record, and every loop ends by a count: re-checks,
// CancelMaxCalls, MaxGatewayCalls.
//
// The caller counts the gateway calls the step made into a.GatewayCalls and
// a.BudgetCalls before calling Decide.
func Decide(a reversald.Attempt, obs Observation, p Policy) (reversald.Attempt, Schedule) {
	var sched Schedule
	switch a.Step {
	case reversald.StepQuery, reversald.StepConfirm:
		a, sched = decideQuery(a, obs, p)
	case reversald.StepCancel:
		a, sched = decideCancel(a, obs, p)
	default:
		return review(a, fmt.Sprintf("attempt is at unknown step %q", a.Step))
	}
	if sched != Final && a.BudgetCalls >= p.MaxGatewayCalls {
		return review(a, fmt.Sprintf("the gateway call budget (%d calls) is spent while %s", p.MaxGatewayCalls, lowerFirst(a.Reason)))
	}
	return a, sched
}

func decideQuery(a reversald.Attempt, obs Observation, p Policy) (reversald.Attempt, Schedule) {
	if errors.Is(obs.Err, qfpay.ErrNoCredential) {
		// No credential signs for the merchant: nothing was sent, and
		// nothing can be until someone configures one. After a cancel the
		// confirming query is owed: wait for the credential (a reload may
		// have dropped it by mistake) within the re-check budget.
		if a.CancelCalls > 0 && a.Rechecks < p.ConfirmRechecks {
			return next(a, a.Step, a.Rechecks+1, errText(obs.Err)+"; a cancel was sent, so the confirming query waits for the credential"), Later
		}
		return review(a, errText(obs.Err))
	}
	rec, found, cls := readQuery(&a, obs)
	switch cls {
	case qfpay.ClassSuccess:
	case qfpay.ClassNotFound:
		found = false // "no such transaction" is an answer with no record
	case qfpay.ClassTransient, qfpay.ClassInProgress, qfpay.ClassDuplicate:
		a.Reason = "the query did not answer; re-checking: " + errText(obs.Err)
		return a, Later
	case qfpay.ClassUnknown:
		if a.Rechecks >= p.ConfirmRechecks {
			return review(a, fmt.Sprintf("the query answered a code outside the table %d times: %s", a.Rechecks+1, errText(obs.Err)))
		}
		return next(a, a.Step, a.Rechecks+1, "the query answered a code outside the table; re-checking: "+errText(obs.Err)), Later
	default: // anything else a query can be answered with is a refusal
		return review(a, "the query was refused: "+errText(obs.Err))
	}
	after := a.CancelCalls > 0
	if after && cancelNeedsReview(a.CancelRespcd) {
		// The cancel's answer was a refusal or outside the table: the query
		// that followed is what the review needs to see.
		return review(a, fmt.Sprintf("the cancel answered %s; a person must look", a.CancelRespcd))
	}
	if !found {
		return decideNoRecord(a, p)
	}
	if mismatch(a) {
		return review(a, fmt.Sprintf("QFPay's record shows %d %s, the event %d %s", a.RecordTxAmt, a.RecordTxCurrCd, a.TxAmt, a.TxCurrCd))
	}
	switch st := rec.State(); st {
	case qfpay.StateReversed, qfpay.StateClosed, qfpay.StateRefunded, qfpay.StatePartiallyRefunded, qfpay.StateFailed:
		status, reason := settledStatus(st)
		return final(a, status, reason)
	case qfpay.StatePaid:
		if !after {
			return final(a, reversald.StatusPaid, "the payment completed and cannot be reversed: refund it")
		}
		if a.Rechecks < p.ConfirmRechecks {
			return next(a, reversald.StepConfirm, a.Rechecks+1, "a cancel was sent and QFPay still shows the payment paid; re-checking"), Later
		}
		if qfpay.CodeClass(a.CancelRespcd) == qfpay.ClassPaid {
			return final(a, reversald.StatusPaid, fmt.Sprintf("QFPay answered the cancel %s (already paid) and %d queries since show the payment paid: refund it", a.CancelRespcd, a.Rechecks+1))
		}
		return review(a, fmt.Sprintf("a cancel was sent but QFPay still shows the payment paid after %d re-checks: check it before refunding", a.Rechecks))
	case qfpay.StateInFlight:
		if !after {
			return toCancel(a, p, "payment still in flight; cancelling")
		}
		if a.Rechecks < p.ConfirmRechecks {
			return next(a, reversald.StepConfirm, a.Rechecks+1, "a cancel was sent and has not shown at QFPay yet; re-checking"), Later
		}
		return toCancel(a, p, fmt.Sprintf("a cancel did not take in %d re-checks and the payment is still in flight; cancelling again", a.Rechecks))
	default: // StateUnknown: an undocumented cancel flag or no respcd
	}
	return review(a, "the query record is unreadable")
}

// decideNoRecord reads a query that found no record.
func decideNoRecord(a reversald.Attempt, p Policy) (reversald.Attempt, Schedule) {
	if a.CancelReached {
		// A cancel may have reached QFPay: QFPay knows the payment, so an
		// empty answer means our query is wrong (range, mchid, credential),
		// or is not caught up yet. Never not_found.
		if a.Rechecks < p.ConfirmRechecks {
			return next(a, reversald.StepConfirm, a.Rechecks+1, "a cancel may have reached QFPay and no record shows yet; re-checking"), Later
		}
		return review(a, fmt.Sprintf("a cancel may have reached QFPay (%s) but %d queries since find no record: check the query range, mchid and credential", cancelHistory(a), a.Rechecks+1))
	}
	if a.CancelCalls == 0 && a.Rechecks == 0 {
		// QFPay has not seen it: cancel, so that it cannot complete later.
		return toCancel(a, p, "no record at QFPay; cancelling")
	}
	if a.Rechecks >= p.NotFoundRechecks {
		return final(a, reversald.StatusNotFound, fmt.Sprintf("QFPay has no such transaction after %d re-checks", a.Rechecks))
	}
	return next(a, reversald.StepQuery, a.Rechecks+1, "still no record at QFPay; re-checking"), Later
}

// toCancel moves to the cancel step, unless the attempt has used up its
// cancels.
func toCancel(a reversald.Attempt, p Policy, reason string) (reversald.Attempt, Schedule) {
	if a.CancelCalls >= p.CancelMaxCalls {
		return review(a, fmt.Sprintf("the cancel bound (%d) is reached and %s", p.CancelMaxCalls, lowerFirst(reason)))
	}
	// A cancel must leave room in the budget for the query that follows it:
	// a cancel answer never settles anything.
	if a.BudgetCalls+2 > p.MaxGatewayCalls {
		return review(a, fmt.Sprintf("the gateway call budget (%d calls) has no room for a cancel and the query after it, and %s", p.MaxGatewayCalls, lowerFirst(reason)))
	}
	// The re-checks carry over: a pay type that cannot be cancelled comes
	// back to query with them (decideCancel), so following it is bounded.
	return next(a, reversald.StepCancel, a.Rechecks, reason), Now
}

func decideCancel(a reversald.Attempt, obs Observation, p Policy) (reversald.Attempt, Schedule) {
	switch {
	case errors.Is(obs.Err, qfpay.ErrNotCancellable):
		// No cancel route: follow the payment by query until it settles;
		// unsupported only if it is still in flight at the bound.
		a.Method = reversald.MethodNone
		if a.Rechecks >= p.ConfirmRechecks {
			return final(a, reversald.StatusUnsupported, fmt.Sprintf("pay type %s cannot be cancelled through the API and the payment was still in flight after %d re-checks", a.PayType, a.Rechecks))
		}
		return next(a, reversald.StepQuery, a.Rechecks+1, fmt.Sprintf("pay type %s cannot be cancelled through the API; following the payment by query", a.PayType)), Later
	case errors.Is(obs.Err, ErrCancelBound):
		return review(a, fmt.Sprintf("the cancel bound (%d) is reached", p.CancelMaxCalls))
	case errors.Is(obs.Err, qfpay.ErrNoCredential):
		// The credential went away (a reload) before the cancel: none was sent.
		return review(a, errText(obs.Err)+"; no cancel was sent for it")
	}
	a.Method = methodOf(obs.Method)
	a.CancelPending = false
	a.CancelRespcd = ""
	if obs.Cancel != nil {
		setResponse(&a, obs.Cancel.Call)
		a.CancelRespcd = obs.Cancel.Call.Respcd
		if obs.Cancel.Syssn != "" {
			a.CancelSyssn = obs.Cancel.Syssn
		}
		if a.Syssn == "" && obs.Cancel.OrigSyssn != "" {
			a.Syssn = obs.Cancel.OrigSyssn
		}
	}
	answer := "answered " + a.CancelRespcd
	if a.CancelRespcd == "" {
		answer = "got no answer (" + errText(obs.Err) + ")"
	}
	// Every answer is confirmed by a query; none settles anything.
	switch cls := qfpay.Classify(obs.Err); cls {
	case qfpay.ClassNotFound:
		// QFPay says it has no such payment: the cancel did nothing.
		return next(a, reversald.StepConfirm, 1, "the cancel "+answer+" (no such transaction); re-checking by query"), Later
	case qfpay.ClassSuccess, qfpay.ClassAlreadyCancelled, qfpay.ClassRefunded, qfpay.ClassPaid, qfpay.ClassPaymentFailed:
		a.CancelReached = true
		return next(a, reversald.StepConfirm, 0, "the cancel "+answer+"; confirming by query"), Now
	case qfpay.ClassInProgress, qfpay.ClassDuplicate, qfpay.ClassTransient:
		// It may or may not have happened: never re-send blindly.
		a.CancelReached = true
		return next(a, reversald.StepConfirm, 0, "the cancel "+answer+"; re-checking by query before anything else"), Later
	default: // ClassNeedsReview, ClassUnknown: query first, so the review carries the fresh record
		a.CancelReached = true
		if a.CancelRespcd == "" {
			a.CancelRespcd = "?" // refused before any respcd: still a refusal
		}
		return next(a, reversald.StepConfirm, 0, "the cancel "+answer+"; querying so the review carries the fresh record"), Now
	}
}

// cancelNeedsReview: the last cancel's answer was a refusal (configuration,
// signature, risk) or a code outside the table.
func cancelNeedsReview(respcd string) bool {
	if respcd == "" {
		return false // lost: re-check like any unanswered cancel
	}
	switch qfpay.CodeClass(respcd) {
	case qfpay.ClassNeedsReview, qfpay.ClassUnknown:
		return true
	default:
		return false
	}
}

// settledStatus maps the records that end an attempt whatever came before.
func settledStatus(st qfpay.RecordState) (reversald.Status, string) {
	switch st {
	case qfpay.StateReversed:
		return reversald.StatusReversed, "QFPay shows the payment reversed"
	case qfpay.StateClosed:
		return reversald.StatusClosed, "QFPay shows the payment closed"
	case qfpay.StateRefunded:
		return reversald.StatusRefunded, "QFPay shows the payment refunded in full"
	case qfpay.StatePartiallyRefunded:
		return reversald.StatusPartiallyRefunded, "QFPay shows the payment partly refunded: part of the money is still captured"
	default: // StateFailed
		return reversald.StatusNotPaid, "the payment failed at QFPay: nothing was charged"
	}
}

// mismatch reports whether QFPay's record disagrees with the event on the
// amount or the currency.
func mismatch(a reversald.Attempt) bool {
	if a.RecordTxAmt != 0 && a.RecordTxAmt != a.TxAmt {
		return true
	}
	return a.RecordTxCurrCd != "" && a.TxCurrCd != "" && a.RecordTxCurrCd != a.TxCurrCd
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
	a.RecordRespcd, a.RecordCancel, a.RecordTxAmt, a.RecordTxCurrCd = rec.Respcd, rec.Cancel, rec.TxAmt, rec.TxCurrCd
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

// review ends the attempt needs_review, its reason carrying the last record
// read and the cancel history, so the person who looks starts from them.
func review(a reversald.Attempt, why string) (reversald.Attempt, Schedule) {
	return final(a, reversald.StatusNeedsReview, why+"; "+lastRecord(a)+"; "+cancelHistory(a))
}

// lastRecord describes the last payment record read.
func lastRecord(a reversald.Attempt) string {
	if a.RecordRespcd == "" && a.RecordCancel == "" && a.RecordTxAmt == 0 {
		return "no payment record was read"
	}
	return fmt.Sprintf("last record: respcd %s, cancel %q, %d %s", a.RecordRespcd, a.RecordCancel, a.RecordTxAmt, a.RecordTxCurrCd)
}

// cancelHistory describes the cancels sent.
func cancelHistory(a reversald.Attempt) string {
	switch {
	case a.CancelCalls == 0:
		return "no cancel sent"
	case a.CancelRespcd == "":
		return fmt.Sprintf("%d cancel(s) sent, the last answer lost", a.CancelCalls)
	}
	return fmt.Sprintf("%d cancel(s) sent, the last answered %s", a.CancelCalls, a.CancelRespcd)
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

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
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
