package reversald

import "fmt"

// Intake rules: what an incoming event is, next to what is already recorded.
//
// An event is about one payment. Its attempt is keyed by (MchID, OutTradeNo);
// TxAmt and TxDtm must agree for two events to be about the same payment.
//   - The first event for a key creates the attempt; a later one about the same
//     payment joins it.
//   - A later one under the same key but with another TxAmt or TxDtm is a
//     conflicting duplicate (Conflict): it is kept, answered at once with a
//     needs_review outcome giving the reason, and the attempt is left as it is.
//   - An event whose event_id is already recorded is a redelivery when it is
//     about the same payment (dropped), and a producer's reuse of the event_id
//     for another payment when it is not (ReusedEventID): refused with a
//     reason, never dropped, so that no payment goes missing silently.

// Payment is what an event says about the payment it is about: the fields two
// events must agree on to be about the same payment.
type Payment struct {
	MchID, OutTradeNo string
	TxAmt             int64
	TxDtm             string
}

// Payment returns the payment e is about.
func (e Event) Payment() Payment {
	return Payment{MchID: e.MchID, OutTradeNo: e.OutTradeNo, TxAmt: e.TxAmt, TxDtm: e.TxDtm}
}

// Conflict reports whether e, which has the key of the attempt first recorded
// for first, is about another payment (another TxAmt or TxDtm), and if so the
// reason its needs_review outcome gives. The keys are not compared: e and
// first share one by the caller's construction.
func Conflict(first Payment, e Event) (reason string, conflict bool) {
	switch {
	case first.TxAmt != e.TxAmt && first.TxDtm != e.TxDtm:
		return fmt.Sprintf("conflicting duplicate: txamt %d and txdtm %q differ from the first event's %d and %q",
			e.TxAmt, e.TxDtm, first.TxAmt, first.TxDtm), true
	case first.TxAmt != e.TxAmt:
		return fmt.Sprintf("conflicting duplicate: txamt %d differs from the first event's %d", e.TxAmt, first.TxAmt), true
	case first.TxDtm != e.TxDtm:
		return fmt.Sprintf("conflicting duplicate: txdtm %q differs from the first event's %q", e.TxDtm, first.TxDtm), true
	}
	return "", false
}

// ReusedEventID reports whether e, whose event_id is already recorded for the
// payment recorded, reuses that event_id for another payment, and if so the
// reason it is refused with. When it does not, e is a redelivery: a duplicate.
func ReusedEventID(recorded Payment, e Event) (reason string, reused bool) {
	if recorded == e.Payment() {
		return "", false
	}
	return fmt.Sprintf("event_id %q is already recorded for another payment (%s/%s, txamt %d, txdtm %q)",
		e.EventID, recorded.MchID, recorded.OutTradeNo, recorded.TxAmt, recorded.TxDtm), true
}
