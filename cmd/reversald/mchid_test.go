package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestDaemonKeysTheEffectiveMchID: one POS event names the merchant, the
// other relies on QFPAY_MCHID. They are one payment: one attempt, one set of
// gateway calls, the same outcome for both events.
func TestDaemonKeysTheEffectiveMchID(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	s.seed("M1", sandbox.StatePaid, "800101")
	// Both events carry the same txdtm: another one would be a conflicting
	// duplicate, which is another test's business.
	txdtm := time.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout)
	bare, _ := json.Marshal(map[string]any{
		"event_id": "e-M1-bare", "out_trade_no": "M1", "txamt": 2500, "txcurrcd": "HKD",
		"txdtm": txdtm, "pay_type": "800101",
	})
	out := s.collect(s.results)
	s.runInProcess(map[string]string{"QFPAY_MCHID": e2eMchID})
	s.produce(s.in, ev{id: "e-M1-named", otn: "M1", txdtm: txdtm}.message(), kafka.Message{Key: []byte("M1"), Value: bare})
	got := out.waitOutcomes(t, 2, 60*time.Second)
	named, bareOut := got["e-M1-named"], got["e-M1-bare"]
	if named.Status != "paid" || bareOut.Status != "paid" {
		t.Fatalf("statuses %s and %s, want paid for both", named.Status, bareOut.Status)
	}
	if bareOut.MchID != e2eMchID {
		t.Errorf("the bare event's outcome names mchid %q, want the effective %q", bareOut.MchID, e2eMchID)
	}
	if named.GatewayCalls != bareOut.GatewayCalls || s.sb.Calls("M1", "") != named.GatewayCalls {
		t.Errorf("gateway calls: named %d, bare %d, sandbox %d; want one attempt's", named.GatewayCalls, bareOut.GatewayCalls, s.sb.Calls("M1", ""))
	}
}
