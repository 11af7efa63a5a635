package reversal

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

const otn = "4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ"

func at(step reversald.Step, rechecks int) reversald.Attempt {
	return reversald.Attempt{ID: 1, OutTradeNo: otn, TxAmt: 2500, TxCurrCd: "HKD", TxDtm: "2020-03-05 16:50:30", PayType: "800101",
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

// sent is an attempt at step with n cancels sent, the last answered respcd
// ("" lost), as the executor leaves it after the cancel's intent write.
func sent(step reversald.Step, rechecks, n int, respcd string, reached bool) reversald.Attempt {
	a := at(step, rechecks)
	a.CancelCalls, a.CancelRespcd, a.CancelReached = n, respcd, reached
	return a
}

// TestDecide walks the decision table of docs/DESIGN.md and the code classes
// of QFPAY.md §3-§4 row by row.
func TestDecide(t *testing.T) {
	t.Parallel()
	p := Policy{NotFoundRechecks: 3, ConfirmRechecks: 2, CancelMaxCalls: 2, MaxGatewayCalls: 30}
	timeout := fmt.Errorf("post query: %w", context.DeadlineExceeded)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: connection refused")}
	resp := func(code string) error { return &qfpay.RespError{Endpoint: "query", Respcd: code} }
	cancelling := func() reversald.Attempt { return sent("cancel", 0, 1, "", false) }
	tests := []struct {
		name     string
		a        reversald.Attempt
		obs      Observation
		status   reversald.Status
		step     reversald.Step
		sched    Schedule
		rechecks int
	}{
		// query, before any cancel
		{"query paid", at("query", 0), queryOK(rec("0000", "0")), "paid", "done", Final, 0},
		{"query cancel=1 reversed even with respcd 0000", at("query", 0), queryOK(rec("0000", "1")), "reversed", "done", Final, 0},
		{"query cancel=2 closed", at("query", 0), queryOK(rec("0000", "2")), "closed", "done", Final, 0},
		{"query cancel=3 refunded", at("query", 0), queryOK(rec("0000", "3")), "refunded", "done", Final, 0},
		{"query cancel=5 partially refunded", at("query", 0), queryOK(rec("0000", "5")), "partially_refunded", "done", Final, 0},
		{"query cancel=4 undocumented", at("query", 0), queryOK(rec("0000", "4")), "needs_review", "done", Final, 0},
		{"query in flight 1143", at("query", 0), queryOK(rec("1143", "0")), "pending", "cancel", Now, 0},
		{"query in flight 1298", at("query", 0), queryOK(rec("1298", "0")), "pending", "cancel", Now, 0},
		{"query wait 1161 is in flight, not failed", at("query", 0), queryOK(rec("1161", "0")), "pending", "cancel", Now, 0},
		{"query network wait 1296 is in flight", at("query", 0), queryOK(rec("1296", "0")), "pending", "cancel", Now, 0},
		{"query try-later 1205 is in flight", at("query", 0), queryOK(rec("1205", "0")), "pending", "cancel", Now, 0},
		{"query unknown record code is in flight", at("query", 0), queryOK(rec("7777", "0")), "pending", "cancel", Now, 0},
		{"query failed 1147", at("query", 0), queryOK(rec("1147", "0")), "not_paid", "done", Final, 0},
		{"query expired 1181", at("query", 0), queryOK(rec("1181", "0")), "not_paid", "done", Final, 0},
		{"query no record", at("query", 0), queryOK(), "pending", "cancel", Now, 0},
		{"query amount mismatch", at("query", 0), queryOK(amt(rec("0000", "0"), 999, "HKD")), "needs_review", "done", Final, 0},
		{"query currency mismatch", at("query", 0), queryOK(amt(rec("0000", "1"), 2500, "USD")), "needs_review", "done", Final, 0},
		{"query transient 1100", at("query", 0), queryErr(resp("1100")), "pending", "query", Later, 0},
		{"query transient 1111", at("query", 0), queryErr(resp("1111")), "pending", "query", Later, 0},
		{"query http 429", at("query", 0), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 429}), "pending", "query", Later, 0},
		{"query http 503", at("query", 0), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 503}), "pending", "query", Later, 0},
		{"query timeout", at("query", 0), queryErr(timeout), "pending", "query", Later, 0},
		{"query refused", at("query", 0), queryErr(refused), "pending", "query", Later, 0},
		{"query signature 1108", at("query", 0), queryErr(resp("1108")), "needs_review", "done", Final, 0},
		{"query risk 1294", at("query", 0), queryErr(resp("1294")), "needs_review", "done", Final, 0},
		{"query unknown code: re-checked", at("query", 0), queryErr(resp("7777")), "pending", "query", Later, 1},
		{"query unknown code: bounded", at("query", 2), queryErr(resp("7777")), "needs_review", "done", Final, 2},
		{"query no credential for the merchant", at("query", 0), Observation{Query: &qfpay.QueryResult{}, Err: fmt.Errorf("%w for merchant M9", qfpay.ErrNoCredential)}, "needs_review", "done", Final, 0},
		{"confirm no credential after a cancel: waits for it", sent("confirm", 1, 1, "", true), Observation{Err: fmt.Errorf("%w for merchant M9", qfpay.ErrNoCredential)}, "pending", "confirm", Later, 2},
		{"query invalid request", at("query", 0), Observation{Query: &qfpay.QueryResult{}, Err: &qfpay.ValidationError{Field: "out_trade_no", Reason: "too long"}}, "needs_review", "done", Final, 0},
		// after a cancel said the transaction does not exist (not reached)
		{"recheck no record, budget left", sent("confirm", 1, 1, "1136", false), queryOK(), "pending", "query", Later, 2},
		{"recheck no record, budget spent", sent("confirm", 3, 1, "1136", false), queryOK(), "not_found", "done", Final, 3},
		{"recheck finds it in flight: re-checked first", sent("confirm", 1, 1, "1136", false), queryOK(rec("1143", "0")), "pending", "confirm", Later, 2},
		{"recheck in flight at the budget: second cancel", sent("confirm", 2, 1, "1136", false), queryOK(rec("1143", "0")), "pending", "cancel", Now, 2},
		{"in flight at the budget, cancels spent", sent("confirm", 2, 2, "1136", false), queryOK(rec("1143", "0")), "needs_review", "done", Final, 2},
		// after a cancel that may have reached QFPay: only a settled record ends it
		{"reached: reversed", sent("confirm", 0, 1, "0000", true), queryOK(rec("0000", "1")), "reversed", "done", Final, 0},
		{"reached: closed", sent("confirm", 0, 1, "1143", true), queryOK(rec("0000", "2")), "closed", "done", Final, 0},
		{"reached: failed", sent("confirm", 0, 1, "1147", true), queryOK(rec("1147", "0")), "not_paid", "done", Final, 0},
		{"reached: partially refunded", sent("confirm", 0, 1, "1262", true), queryOK(rec("0000", "5")), "partially_refunded", "done", Final, 0},
		{"after an operator retry: paid is not final", sent("query", 0, 1, "", true), queryOK(rec("0000", "0")), "pending", "confirm", Later, 1},
		{"after an operator retry: in flight is not a blind re-cancel", sent("query", 0, 1, "", true), queryOK(rec("1143", "0")), "pending", "confirm", Later, 1},
		{"no credential after a cancel: the confirming query waits", sent("confirm", 0, 1, "0000", true), queryErr(fmt.Errorf("m: %w", qfpay.ErrNoCredential)), "pending", "confirm", Later, 1},
		{"no credential after a cancel, re-checks spent", sent("confirm", 2, 1, "0000", true), queryErr(fmt.Errorf("m: %w", qfpay.ErrNoCredential)), "needs_review", "done", Final, 2},
		{"reached: paid is not final", sent("confirm", 0, 1, "0000", true), queryOK(rec("0000", "0")), "pending", "confirm", Later, 1},
		{"reached: in flight is not a re-cancel", sent("confirm", 0, 1, "", true), queryOK(rec("1143", "0")), "pending", "confirm", Later, 1},
		{"reached: no record is not a re-cancel", sent("confirm", 1, 1, "0000", true), queryOK(), "pending", "confirm", Later, 2},
		{"reached: no record after the budget is never not_found", sent("confirm", 2, 1, "0000", true), queryOK(), "needs_review", "done", Final, 2},
		{"reached: lost answer, no record after the budget", sent("confirm", 2, 1, "", true), queryOK(), "needs_review", "done", Final, 2},
		{"reached: query unanswered", sent("confirm", 1, 1, "", true), queryErr(&qfpay.HTTPError{Endpoint: "query", Status: 503}), "pending", "confirm", Later, 1},
		{"accepted, still paid after the budget", sent("confirm", 2, 1, "0000", true), queryOK(rec("0000", "0")), "needs_review", "done", Final, 2},
		{"1260, still paid after the budget: paid", sent("confirm", 2, 1, "1260", true), queryOK(rec("0000", "0")), "paid", "done", Final, 2},
		{"1260, paid at first: re-checked", sent("confirm", 0, 1, "1260", true), queryOK(rec("0000", "0")), "pending", "confirm", Later, 1},
		{"in progress, in flight after the budget: cancel again", sent("confirm", 2, 1, "1143", true), queryOK(rec("1143", "0")), "pending", "cancel", Now, 2},
		{"unknown cancel answer: review with the record", sent("confirm", 0, 1, "9999", true), queryOK(rec("0000", "1")), "needs_review", "done", Final, 0},
		{"refused cancel: review with the record", sent("confirm", 0, 1, "1294", true), queryOK(rec("1143", "0")), "needs_review", "done", Final, 0},
		// cancel: every answer is confirmed by a query
		{"cancel not cancellable: followed by query", at("cancel", 0), Observation{Err: fmt.Errorf("route 801501: %w", qfpay.ErrNotCancellable)}, "pending", "query", Later, 1},
		{"cancel not cancellable at the bound: unsupported", at("cancel", 2), Observation{Err: fmt.Errorf("route 801501: %w", qfpay.ErrNotCancellable)}, "unsupported", "done", Final, 2},
		{"cancel no credential: none sent", at("cancel", 0), Observation{Err: fmt.Errorf("%w for merchant M9", qfpay.ErrNoCredential)}, "needs_review", "done", Final, 0},
		{"cancel bound", sent("cancel", 0, 2, "0000", true), Observation{Err: ErrCancelBound}, "needs_review", "done", Final, 0},
		{"cancel 0000", cancelling(), cancelAns("0000"), "pending", "confirm", Now, 0},
		{"cancel 1142", cancelling(), cancelAns("1142"), "pending", "confirm", Now, 0},
		{"cancel 1263", cancelling(), cancelAns("1263"), "pending", "confirm", Now, 0},
		{"cancel 1264", cancelling(), cancelAns("1264"), "pending", "confirm", Now, 0},
		{"cancel 1260 paid: confirm", cancelling(), cancelAns("1260"), "pending", "confirm", Now, 0},
		{"cancel 1125 refunded: confirm", cancelling(), cancelAns("1125"), "pending", "confirm", Now, 0},
		{"cancel 1262 refunded: confirm", cancelling(), cancelAns("1262"), "pending", "confirm", Now, 0},
		{"cancel 1181 expired unpaid: confirm", cancelling(), cancelAns("1181"), "pending", "confirm", Now, 0},
		{"cancel 1147 payment failed: confirm", cancelling(), cancelAns("1147"), "pending", "confirm", Now, 0},
		{"cancel in progress 1143", cancelling(), cancelAns("1143"), "pending", "confirm", Later, 0},
		{"cancel in progress 1161", cancelling(), cancelAns("1161"), "pending", "confirm", Later, 0},
		{"cancel in progress 2999", cancelling(), cancelAns("2999"), "pending", "confirm", Later, 0},
		{"cancel duplicate 1102", cancelling(), cancelAns("1102"), "pending", "confirm", Later, 0},
		{"cancel 1268 does not exist", cancelling(), cancelAns("1268"), "pending", "confirm", Later, 1},
		{"cancel 1136 does not exist", cancelling(), cancelAns("1136"), "pending", "confirm", Later, 1},
		{"cancel transient 1205: query, never re-send", cancelling(), cancelAns("1205"), "pending", "confirm", Later, 0},
		{"cancel transient 2010", cancelling(), cancelAns("2010"), "pending", "confirm", Later, 0},
		{"cancel timeout: query, never re-send", cancelling(), cancelErr(timeout), "pending", "confirm", Later, 0},
		{"cancel reset: query, never re-send", cancelling(), cancelErr(fmt.Errorf("read: %w", &net.OpError{Op: "read", Err: fmt.Errorf("connection reset by peer")})), "pending", "confirm", Later, 0},
		{"cancel http 429", cancelling(), cancelErr(&qfpay.HTTPError{Endpoint: "reversal", Status: 429}), "pending", "confirm", Later, 0},
		{"cancel 1294 risk: query first", cancelling(), cancelAns("1294"), "pending", "confirm", Now, 0},
		{"cancel 1108 signature: query first", cancelling(), cancelAns("1108"), "pending", "confirm", Now, 0},
		{"cancel unknown code: query first", cancelling(), cancelAns("8888"), "pending", "confirm", Now, 0},
		// budget
		{"gateway budget spent", func() reversald.Attempt { a := at("query", 0); a.BudgetCalls = 30; return a }(), queryErr(timeout), "needs_review", "done", Final, 0},
		// nonsense
		{"unknown step", at("weird", 0), Observation{}, "needs_review", "done", Final, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, sched := Decide(tt.a, tt.obs, p)
			if got.Status != tt.status || got.Step != tt.step || sched != tt.sched || got.Rechecks != tt.rechecks {
				t.Errorf("Decide = status %s step %s %s rechecks %d; want %s %s %s %d (reason %q)",
					got.Status, got.Step, sched, got.Rechecks, tt.status, tt.step, tt.sched, tt.rechecks, got.Reason)
			}
			if got.Reason == "" {
				t.Error("no reason given")
			}
			if got.Status == reversald.StatusNeedsReview && !strings.Contains(got.Reason, "record") {
				t.Errorf("needs_review without the last record: %q", got.Reason)
			}
		})
	}
}

func amt(r qfpay.Record, txamt int64, cur string) qfpay.Record {
	r.TxAmt, r.TxCurrCd = txamt, cur
	return r
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
	p := Policy{NotFoundRechecks: 3, ConfirmRechecks: 2, CancelMaxCalls: 2, MaxGatewayCalls: 30}
	cancel := func(a reversald.Attempt, o Observation) reversald.Attempt {
		a.CancelCalls++
		a, _ = Decide(a, o, p)
		return a
	}
	// A cancel that says the payment failed, then no record: never a tight
	// cancel/query loop, and never not_found (the cancel reached QFPay).
	a := cancel(at("cancel", 0), cancelAns("1147"))
	a, sched := Decide(a, queryOK(), p)
	if a.Step == reversald.StepCancel || sched == Now {
		t.Errorf("failed cancel then no record: step %s %s; want a later re-check", a.Step, sched)
	}
	// A cancel that keeps answering 1143 while the payment stays in flight:
	// at most CancelMaxCalls cancels, then needs_review.
	a = at("cancel", 0)
	cancels := 0
	for range 40 {
		if a.Final() {
			break
		}
		switch a.Step {
		case reversald.StepCancel:
			cancels++
			a = cancel(a, cancelAns("1143"))
		default:
			a, _ = Decide(a, queryOK(rec("1143", "0")), p)
		}
	}
	if cancels != p.CancelMaxCalls || a.Status != reversald.StatusNeedsReview {
		t.Errorf("1143 forever: %d cancels, %s; want %d cancels then needs_review", cancels, a.Status, p.CancelMaxCalls)
	}
	// A cancel in progress, then a query that still shows the payment paid:
	// not "paid" (someone would refund a payment being reversed), and no
	// second cancel, until the re-check budget is spent.
	a = cancel(at("cancel", 0), cancelAns("1143"))
	for i := 0; i < p.ConfirmRechecks; i++ {
		a, sched = Decide(a, queryOK(rec("0000", "0")), p)
		if a.Final() || a.Step != reversald.StepConfirm || sched != Later {
			t.Fatalf("re-check %d: %s %s %s", i, a.Status, a.Step, sched)
		}
	}
	a, _ = Decide(a, queryOK(rec("0000", "0")), p)
	if a.Status != reversald.StatusNeedsReview {
		t.Errorf("after the budget: %s, want needs_review", a.Status)
	}
	// The same, but the reversal lands meanwhile.
	a = cancel(at("cancel", 0), cancelAns("1143"))
	a, _ = Decide(a, queryOK(rec("0000", "0")), p)
	a, _ = Decide(a, queryOK(rec("0000", "1")), p)
	if a.Status != reversald.StatusReversed {
		t.Errorf("reversal landing after 1143: %s, want reversed", a.Status)
	}
	// Acknowledged, then the queries find nothing: never not_found.
	a = cancel(at("cancel", 0), cancelAns("1143"))
	for !a.Final() {
		a, _ = Decide(a, queryOK(), p)
	}
	if a.Status != reversald.StatusNeedsReview {
		t.Errorf("acknowledged cancel then no record: %s, want needs_review", a.Status)
	}
}
