package main

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestDaemonMoneyTruth drives the daemon against a strict sandbox scripted
// for the money-truth rules (docs/DESIGN.md, decision table) and checks that
// no ambiguous answer becomes a confident status.
func TestDaemonMoneyTruth(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	put := func(txn sandbox.Txn) {
		t.Helper()
		txn.MchID, txn.TxAmt = e2eMchID, 2500
		if txn.PayType == "" {
			txn.PayType = "800101"
		}
		if err := s.sb.Put(txn); err != nil {
			t.Fatal(err)
		}
	}
	// Rule 2: a wait code on the record is in flight, not a failure.
	put(sandbox.Txn{OutTradeNo: "WAIT", State: sandbox.StateInFlight, Respcd: "1161"})
	// Rule 4: cancel=5 is its own status, with QFPay's amount on the outcome.
	put(sandbox.Txn{OutTradeNo: "PART", State: sandbox.StatePartiallyRefunded})
	// Rule 4: QFPay's amount disagrees with the event's.
	put(sandbox.Txn{OutTradeNo: "AMT", State: sandbox.StatePaid, RecordTxAmt: 999})
	// Rule 3: the cancel is acknowledged, then no query finds the payment.
	put(sandbox.Txn{OutTradeNo: "HIDDEN", State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{HideAfterCancel: true}})
	// Rule 5: the cancel keeps answering "in progress" with no effect.
	put(sandbox.Txn{OutTradeNo: "STUCK", State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{InProgress: 10}})
	// Rule 7: an answer outside the table, although the cancel took effect.
	put(sandbox.Txn{OutTradeNo: "ODD", State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{CancelEffectCodes: []string{"9999"}}})
	// Rule 11: no cancel route, and the payment completes: paid, method none.
	put(sandbox.Txn{OutTradeNo: "HKPAID", State: sandbox.StatePaid, PayType: "801501"})

	want := map[string]string{
		"e-WAIT": "reversed", "e-PART": "partially_refunded", "e-AMT": "needs_review", "e-HIDDEN": "needs_review",
		"e-STUCK": "needs_review", "e-ODD": "needs_review", "e-HKPAID": "paid",
	}
	var msgs []kafka.Message
	for id := range want {
		otn := id[2:]
		e := ev{id: id, otn: otn}
		if otn == "HKPAID" {
			e.payType = "801501"
		}
		msgs = append(msgs, e.message())
	}
	out := s.collect(s.results)
	s.runInProcess(nil)
	s.produce(s.in, msgs...)
	got := out.waitOutcomes(t, len(want), 90*time.Second)
	for id, status := range want {
		if o := got[id]; string(o.Status) != status {
			t.Errorf("%s: status %s (%s), want %s", id, o.Status, o.Reason, status)
		}
	}
	if o := got["e-PART"]; o.QFPayTxAmt != 2500 || o.QFPayTxCurrCd == "" {
		t.Errorf("partially refunded: QFPay's amount %d %q missing from the outcome", o.QFPayTxAmt, o.QFPayTxCurrCd)
	}
	if o := got["e-HKPAID"]; o.Method != "none" {
		t.Errorf("HKPAID: method %s, want none", o.Method)
	}
	if n := s.sb.CancelCalls("STUCK"); n != 2 {
		t.Errorf("STUCK: %d cancels sent, want exactly CANCEL_MAX_CALLS (2)", n)
	}
	for _, otn := range []string{"HIDDEN", "ODD", "WAIT"} {
		if n := s.sb.CancelCalls(otn); n != 1 {
			t.Errorf("%s: %d cancels sent, want 1", otn, n)
		}
	}
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}
