package reversald_test

import (
	"testing"

	"github.com/reversald/reversald"
)

func intakeEvent(id, mchid, otn string, amt int64, dtm string) reversald.Event {
	return reversald.Event{EventID: id, MchID: mchid, OutTradeNo: otn, TxAmt: amt, TxDtm: dtm, Syssn: "S1", Reason: "timeout"}
}

func TestConflict(t *testing.T) {
	t.Parallel()
	first := reversald.Payment{MchID: "M1", OutTradeNo: "A", TxAmt: 2500, TxDtm: "2026-11-22 09:59:00"}
	for _, tc := range []struct {
		name       string
		e          reversald.Event
		conflict   bool
		wantReason string
	}{
		{"same payment", intakeEvent("e2", "M1", "A", 2500, "2026-11-22 09:59:00"), false, ""},
		{"same payment, other event fields", reversald.Event{EventID: "e3", MchID: "M1", OutTradeNo: "A", TxAmt: 2500,
			TxDtm: "2026-11-22 09:59:00", Syssn: "other", PayType: "800101", Udid: "pos-9"}, false, ""},
		{"keys are the caller's: not compared", intakeEvent("e4", "M2", "B", 2500, "2026-11-22 09:59:00"), false, ""},
		{"txamt differs", intakeEvent("e5", "M1", "A", 2600, "2026-11-22 09:59:00"), true,
			"conflicting duplicate: txamt 2600 differs from the first event's 2500"},
		{"txdtm differs", intakeEvent("e6", "M1", "A", 2500, "2026-11-22 10:01:00"), true,
			`conflicting duplicate: txdtm "2026-11-22 10:01:00" differs from the first event's "2026-11-22 09:59:00"`},
		{"both differ", intakeEvent("e7", "M1", "A", 1, "2026-11-23 00:00:00"), true,
			`conflicting duplicate: txamt 1 and txdtm "2026-11-23 00:00:00" differ from the first event's 2500 and "2026-11-22 09:59:00"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reason, conflict := reversald.Conflict(first, tc.e)
			if conflict != tc.conflict || reason != tc.wantReason {
				t.Errorf("Conflict = %q, %v; want %q, %v", reason, conflict, tc.wantReason, tc.conflict)
			}
		})
	}
}

func TestReusedEventID(t *testing.T) {
	t.Parallel()
	recorded := reversald.Payment{MchID: "M1", OutTradeNo: "A", TxAmt: 2500, TxDtm: "2026-11-22 09:59:00"}
	const other = `event_id "e1" is already recorded for another payment (M1/A, txamt 2500, txdtm "2026-11-22 09:59:00")`
	for _, tc := range []struct {
		name       string
		recorded   reversald.Payment
		e          reversald.Event
		reused     bool
		wantReason string
	}{
		{"redelivery", recorded, intakeEvent("e1", "M1", "A", 2500, "2026-11-22 09:59:00"), false, ""},
		{"redelivery with other non-payment fields", recorded, reversald.Event{EventID: "e1", MchID: "M1", OutTradeNo: "A",
			TxAmt: 2500, TxDtm: "2026-11-22 09:59:00", Syssn: "other", Reason: "network_error"}, false, ""},
		{"other out_trade_no", recorded, intakeEvent("e1", "M1", "B", 2500, "2026-11-22 09:59:00"), true, other},
		{"other merchant", recorded, intakeEvent("e1", "M2", "A", 2500, "2026-11-22 09:59:00"), true, other},
		{"other txamt", recorded, intakeEvent("e1", "M1", "A", 700, "2026-11-22 09:59:00"), true, other},
		{"other txdtm", recorded, intakeEvent("e1", "M1", "A", 2500, "2026-11-22 10:00:00"), true, other},
		{"nothing known of the record", reversald.Payment{}, intakeEvent("e1", "M1", "A", 2500, "2026-11-22 09:59:00"), true,
			`event_id "e1" is already recorded for another payment (/, txamt 0, txdtm "")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reason, reused := reversald.ReusedEventID(tc.recorded, tc.e)
			if reused != tc.reused || reason != tc.wantReason {
				t.Errorf("ReusedEventID = %q, %v; want %q, %v", reason, reused, tc.wantReason, tc.reused)
			}
		})
	}
}

func TestEventPayment(t *testing.T) {
	t.Parallel()
	e := reversald.Event{EventID: "e1", MchID: "M1", OutTradeNo: "A", TxAmt: 2500, TxDtm: "2026-11-22 09:59:00", Syssn: "S", PayType: "800101"}
	want := reversald.Payment{MchID: "M1", OutTradeNo: "A", TxAmt: 2500, TxDtm: "2026-11-22 09:59:00"}
	if got := e.Payment(); got != want {
		t.Errorf("Payment() = %+v, want %+v", got, want)
	}
}
