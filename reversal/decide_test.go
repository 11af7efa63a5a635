package reversal

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

const otn = "4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ"

func at(step reversald.Step, rechecks int) reversald.Attempt {
	return reversald.Attempt{ID: 1, OutTradeNo: otn, TxAmt: 2500, TxDtm: "2020-03-05 16:50:30", PayType: "800101",
		Status: reversald.StatusPending, Step: step, Rechecks: rechecks, Method: "none"}
}

func queryOK(recs ...qfpay.Record) Observation {
	for i := range recs {
		recs[i].OutTradeNo = otn
		recs[i].OrderType = "payment"
		recs[i].Syssn = "20200305000100020000000001"
	}
	return Observation{Query: &qfpay.QueryResult{Call: qfpay.Call{Sent: true, HTTPStatus: 200, Respcd: "0000"}, Data: recs}}
}

func pending(rechecks int) reversald.Attempt {
	a := at("query", rechecks)
	a.CancelPending = true
	return a
}

func rec(respcd, cancel string) qfpay.Record { return qfpay.Record{Respcd: respcd, Cancel: cancel} }

func queryErr(err error) Observation {
	return Observation{Query: &qfpay.QueryResult{Call: qfpay.Call{Sent: true}}, Err: err}
}

func cancelAns(respcd string) Observation {
	var err error
	if respcd != "0000" {
		err = &qfpay.RespError{Endpoint: "reversal", Respcd: respcd}
	}
	return Observation{Cancel: &qfpay.CancelResult{Call: qfpay.Call{Sent: true, HTTPStatus: 200, Respcd: respcd}, Syssn: "CANCELSSN"}, Method: qfpay.MethodReversal, Err: err}
}

func cancelErr(err error) Observation {
	return Observation{Cancel: &qfpay.CancelResult{Call: qfpay.Call{Sent: true}}, Method: qfpay.MethodReversal, Err: err}
}

// TestDecide walks the decision table of DESIGN.md and the code classes of
// QFPAY.md §4 row by row.
func TestDecide(t *testing.T) {
	t.Parallel()
	p := Policy{NotFoundRechecks: 3, ConfirmRechecks: 2}
	timeout := fmt.Errorf("post query: %w", context.DeadlineExceeded)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: connection refused")}
	resp := func(code string) error { return &qfpay.RespError{Endpoint: "query", Respcd: code} }
	tests := []struct {
		name     string
		a        reversald.Attempt
		obs      Observation
		status   reversald.Status
		step     reversald.Step
		sched    Schedule
		rechecks int
		pending  bool // CancelPending after the step
	}{
		// query
		{"query paid", at("query", 0), queryOK(rec("0000", "0")), "paid", "done", Final, 0, false},
		{"query cancel=1 reversed even with respcd 0000", at("query", 0), queryOK(rec("0000", "1")), "reversed", "done", Final, 0, false},
		{"query cancel=2 closed", at("query", 0), queryOK(rec("0000", "2")), "closed", "done", Final, 0, false},
		{"query cancel=3 refunded", at("query", 0), queryOK(rec("0000", "3")), "refunded", "done", Final, 0, false},
		{"query cancel=5 partly refunded", at("query", 0), queryOK(rec("0000", "5")), "refunded", "done", Final, 0, false},
		{"query in flight 1143", at("query", 0), queryOK(rec("1143", "0")), "pending", "cancel", Now, 0, false},
		{"query in flight 1145", at("query", 0), queryOK(rec("1145", "0")), "pending", "cancel", Now, 0, false},
		{"query in flight 1298", at("query", 0), queryOK(rec("1298", "0")), "pending", "cancel", Now, 0, false},
		{"query no record", at("query", 0), queryOK(), "pending", "cancel", Now, 0, false},
		{"query other record respcd: failed", at("query", 0), queryOK(rec("1147", "0")), "not_paid", "done", Final, 0, false},
		{"query unreadable cancel flag", at("query", 0), queryOK(rec("0000", "9")), "needs_review", "done", Final, 0, false},
		{"query transient 1100", at("query", 0), queryErr(resp("1100")), "pending", "query", Later, 0, false},
		{"query http 429", at("query", 0), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 429}), "pending", "query", Later, 0, false},
		{"query http 503", at("query", 0), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 503}), "pending", "query", Later, 0, false},
		{"query timeout", at("query", 0), queryErr(timeout), "pending", "query", Later, 0, false},
		{"query refused", at("query", 0), queryErr(refused), "pending", "query", Later, 0, false},
		{"query signature 1108", at("query", 0), queryErr(resp("1108")), "needs_review", "done", Final, 0, false},
		{"query risk 1294", at("query", 0), queryErr(resp("1294")), "needs_review", "done", Final, 0, false},
		{"query unknown code", at("query", 0), queryErr(resp("7777")), "needs_review", "done", Final, 0, false},
		{"query invalid request", at("query", 0), Observation{Query: &qfpay.QueryResult{}, Err: &qfpay.ValidationError{Field: "out_trade_no", Reason: "too long"}}, "needs_review", "done", Final, 0, false},
		// re-checks after the cancel said the transaction does not exist
		{"recheck no record, budget left", at("query", 1), queryOK(), "pending", "query", Later, 2, false},
		{"recheck no record, budget spent", at("query", 3), queryOK(), "not_found", "done", Final, 3, false},
		{"recheck finds it in flight", at("query", 2), queryOK(rec("1143", "0")), "pending", "cancel", Now, 0, false},
		{"query after an unanswered cancel clears the intent", func() reversald.Attempt { a := at("query", 0); a.CancelPending = true; return a }(), queryOK(rec("0000", "1")), "reversed", "done", Final, 0, false},
		// query while a cancel's outcome is unknown: only a settled record ends it
		{"pending: query reversed", pending(0), queryOK(rec("0000", "1")), "reversed", "done", Final, 0, false},
		{"pending: query closed", pending(0), queryOK(rec("0000", "2")), "closed", "done", Final, 0, false},
		{"pending: query failed", pending(0), queryOK(rec("1147", "0")), "not_paid", "done", Final, 0, false},
		{"pending: query paid is not final", pending(0), queryOK(rec("0000", "0")), "pending", "query", Later, 1, true},
		{"pending: query in flight is not a re-cancel", pending(0), queryOK(rec("1143", "0")), "pending", "query", Later, 1, true},
		{"pending: no record is not a re-cancel", pending(1), queryOK(), "pending", "query", Later, 2, true},
		{"pending: query unanswered", pending(1), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 503}), "pending", "query", Later, 1, true},
		{"pending: still paid after the budget", pending(2), queryOK(rec("0000", "0")), "needs_review", "done", Final, 2, false},
		{"pending: still in flight after the budget: cancel again", pending(2), queryOK(rec("1143", "0")), "pending", "cancel", Now, 0, false},
		{"pending: no record after the budget", pending(2), queryOK(), "not_found", "done", Final, 2, false},
		// cancel
		{"cancel not cancellable", at("cancel", 0), Observation{Err: fmt.Errorf("route 801501: %w", qfpay.ErrNotCancellable)}, "unsupported", "done", Final, 0, false},
		{"cancel 0000", at("cancel", 0), cancelAns("0000"), "pending", "confirm", Now, 0, false},
		{"cancel 1142", at("cancel", 0), cancelAns("1142"), "pending", "confirm", Now, 0, false},
		{"cancel 1263", at("cancel", 0), cancelAns("1263"), "pending", "confirm", Now, 0, false},
		{"cancel 1264", at("cancel", 0), cancelAns("1264"), "pending", "confirm", Now, 0, false},
		{"cancel in progress 1143: stays pending", at("cancel", 0), cancelAns("1143"), "pending", "query", Later, 0, true},
		{"cancel in progress 1161", at("cancel", 0), cancelAns("1161"), "pending", "query", Later, 0, true},
		{"cancel in progress 2999", at("cancel", 0), cancelAns("2999"), "pending", "query", Later, 0, true},
		{"cancel duplicate 1102", at("cancel", 0), cancelAns("1102"), "pending", "query", Later, 0, true},
		{"cancel 1260 paid", at("cancel", 0), cancelAns("1260"), "paid", "done", Final, 0, false},
		{"cancel 1125 refunded", at("cancel", 0), cancelAns("1125"), "refunded", "done", Final, 0, false},
		{"cancel 1262 refunded", at("cancel", 0), cancelAns("1262"), "refunded", "done", Final, 0, false},
		{"cancel 1268 does not exist", at("cancel", 0), cancelAns("1268"), "pending", "query", Later, 1, false},
		{"cancel 1136 does not exist", at("cancel", 0), cancelAns("1136"), "pending", "query", Later, 1, false},
		{"cancel 1181 expired unpaid: confirm by query", at("cancel", 0), cancelAns("1181"), "pending", "query", Now, 0, true},
		{"cancel 1147 payment failed: confirm by query", at("cancel", 0), cancelAns("1147"), "pending", "query", Now, 0, true},
		{"cancel transient 1205: query, never re-send", func() reversald.Attempt { a := at("cancel", 0); a.CancelPending = true; return a }(), cancelAns("1205"), "pending", "query", Later, 0, true},
		{"cancel timeout: query, never re-send", func() reversald.Attempt { a := at("cancel", 0); a.CancelPending = true; return a }(), cancelErr(timeout), "pending", "query", Later, 0, true},
		{"cancel reset: query, never re-send", func() reversald.Attempt { a := at("cancel", 0); a.CancelPending = true; return a }(), cancelErr(fmt.Errorf("read: %w", &net.OpError{Op: "read", Err: fmt.Errorf("connection reset by peer")})), "pending", "query", Later, 0, true},
		{"cancel http 429", at("cancel", 0), cancelErr(&qfpay.HTTPError{Endpoint: "reversal", Status: 429}), "pending", "query", Later, 0, true},
		{"cancel 1294 risk", at("cancel", 0), cancelAns("1294"), "needs_review", "done", Final, 0, false},
		{"cancel 1108 signature", at("cancel", 0), cancelAns("1108"), "needs_review", "done", Final, 0, false},
		{"cancel unknown code", at("cancel", 0), cancelAns("8888"), "needs_review", "done", Final, 0, false},
		// confirm
		{"confirm reversed", at("confirm", 0), queryOK(rec("0000", "1")), "reversed", "done", Final, 0, false},
		{"confirm closed", at("confirm", 0), queryOK(rec("0000", "2")), "closed", "done", Final, 0, false},
		{"confirm in flight", at("confirm", 0), queryOK(rec("1143", "0")), "pending", "confirm", Later, 1, false},
		{"confirm paid, budget left", at("confirm", 1), queryOK(rec("0000", "0")), "pending", "confirm", Later, 2, false},
		{"confirm paid, budget spent", at("confirm", 2), queryOK(rec("0000", "0")), "needs_review", "done", Final, 2, false},
		{"confirm no record, budget spent", at("confirm", 2), queryOK(), "needs_review", "done", Final, 2, false},
		{"confirm transient", at("confirm", 1), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 502}), "pending", "confirm", Later, 1, false},
		{"confirm refused 1101", at("confirm", 0), queryErr(resp("1101")), "needs_review", "done", Final, 0, false},
		// nonsense
		{"unknown step", at("weird", 0), Observation{}, "needs_review", "done", Final, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, sched := Decide(tt.a, tt.obs, p)
			if got.Status != tt.status || got.Step != tt.step || sched != tt.sched || got.Rechecks != tt.rechecks || got.CancelPending != tt.pending {
				t.Errorf("Decide = status %s step %s %s rechecks %d pending %v; want %s %s %s %d %v (reason %q)",
					got.Status, got.Step, sched, got.Rechecks, got.CancelPending, tt.status, tt.step, tt.sched, tt.rechecks, tt.pending, got.Reason)
			}
			if got.Reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestDecideKeepsWhatItLearns(t *testing.T) {
	t.Parallel()
	a := at("query", 0)
	a.PayType = ""
	r := rec("1143", "0")
	r.PayType = "800201"
	got, _ := Decide(a, queryOK(r), DefaultPolicy)
	if got.Syssn != "20200305000100020000000001" || got.PayType != "800201" {
		t.Errorf("query did not fill syssn/pay_type: %+v", got)
	}
	got.Step = reversald.StepCancel
	got, _ = Decide(got, cancelAns("0000"), DefaultPolicy)
	if got.CancelSyssn != "CANCELSSN" || got.Method != "reversal" || got.Respcd != "0000" {
		t.Errorf("cancel did not record its answer: %+v", got)
	}
}

// TestDecideSequences replays the answers that once led to a wrong outcome.
func TestDecideSequences(t *testing.T) {
	t.Parallel()
	p := Policy{NotFoundRechecks: 3, ConfirmRechecks: 2}
	// A cancel that says the payment failed, then no record: never a tight
	// cancel/query loop.
	a, _ := Decide(at("cancel", 0), cancelAns("1147"), p)
	a, sched := Decide(a, queryOK(), p)
	if a.Step == reversald.StepCancel || sched == Now {
		t.Errorf("failed cancel then no record: step %s %s; want a later re-check", a.Step, sched)
	}
	// A cancel that says the payment failed, then a query that still shows
	// it in flight: re-checked with backoff, not cancelled again at once.
	a, _ = Decide(at("cancel", 0), cancelAns("1147"), p)
	cancels := 0
	for range 20 {
		if a.Final() {
			break
		}
		switch a.Step {
		case reversald.StepCancel:
			cancels++
			a, _ = Decide(a, cancelAns("1147"), p)
		default:
			a, _ = Decide(a, queryOK(rec("1143", "0")), p)
		}
	}
	if cancels > 20/(p.ConfirmRechecks+2)+1 {
		t.Errorf("payment failed vs in flight: %d cancels in 20 steps; want at most one per re-check budget", cancels)
	}
	// A cancel in progress, then a query that still shows the payment paid:
	// not "paid" (someone would refund a payment being reversed), and no
	// second cancel, until the re-check budget is spent.
	a, _ = Decide(at("cancel", 0), cancelAns("1143"), p)
	for i := 0; i < p.ConfirmRechecks; i++ {
		a, sched = Decide(a, queryOK(rec("0000", "0")), p)
		if a.Final() || a.Step != reversald.StepQuery || sched != Later {
			t.Fatalf("re-check %d: %s %s %s", i, a.Status, a.Step, sched)
		}
	}
	a, _ = Decide(a, queryOK(rec("0000", "0")), p)
	if a.Status != reversald.StatusNeedsReview {
		t.Errorf("after the budget: %s, want needs_review", a.Status)
	}
	// The same, but the reversal lands meanwhile.
	a, _ = Decide(at("cancel", 0), cancelAns("1143"), p)
	a, _ = Decide(a, queryOK(rec("0000", "0")), p)
	a, _ = Decide(a, queryOK(rec("0000", "1")), p)
	if a.Status != reversald.StatusReversed {
		t.Errorf("reversal landing after 1143: %s, want reversed", a.Status)
	}
}
