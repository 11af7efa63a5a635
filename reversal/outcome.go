package reversal

import (
	"time"

	"github.com/reversald/reversald/store"
)

// SchemaVersion is the version of the Outcome JSON on the results topic. Bump it with any
// change of meaning or name; adding a field is not a change of meaning.
const SchemaVersion = 1

// Status is the final state of an attempt as reconciliation sees it (DESIGN.md, Outcome).
type Status string

// Final statuses.
const (
	StatusReversed    Status = "reversed"     // QFPay confirms the reversal: nothing charged
	StatusClosed      Status = "closed"       // QFPay confirms the close: nothing charged
	StatusPaid        Status = "paid"         // completed and not cancellable: refund it
	StatusRefunded    Status = "refunded"     // already refunded
	StatusNotPaid     Status = "not_paid"     // the payment failed at QFPay
	StatusNotFound    Status = "not_found"    // no such transaction after the re-check window
	StatusUnsupported Status = "unsupported"  // the pay type cannot be cancelled through the API
	StatusNeedsReview Status = "needs_review" // a person must look
)

// Outcome is one message on the results topic: the final state of the attempt an input event
// belongs to. Every field is always present (empty when unknown), so readers see a fixed shape.
// Times are RFC 3339 in UTC.
type Outcome struct {
	EventID       string    `json:"event_id"`
	OutTradeNo    string    `json:"out_trade_no"`
	MchID         string    `json:"mchid"`
	Syssn         string    `json:"syssn"`        // the original payment, if known
	CancelSyssn   string    `json:"cancel_syssn"` // the reversal or close transaction
	Status        Status    `json:"status"`
	Method        string    `json:"method"` // reversal | close | none
	Respcd        string    `json:"respcd"`
	Resperr       string    `json:"resperr"`
	Respmsg       string    `json:"respmsg"`
	TxAmt         int64     `json:"txamt"`
	TxCurrCd      string    `json:"txcurrcd"`
	GatewayCalls  int       `json:"gateway_calls"`
	FirstSeenAt   time.Time `json:"first_seen_at"`
	DecidedAt     time.Time `json:"decided_at"`
	Reason        string    `json:"reason"` // one human sentence
	SchemaVersion int       `json:"schema_version"`
}

// OutcomeFromRecord builds the published outcome of one outbox row. An empty method is
// reported as "none", so the field always holds one of the three documented values.
func OutcomeFromRecord(r store.OutboxRecord) Outcome {
	method := r.Method
	if method == "" {
		method = "none"
	}
	return Outcome{
		EventID:       r.EventID,
		OutTradeNo:    r.OutTradeNo,
		MchID:         r.MchID,
		Syssn:         r.Syssn,
		CancelSyssn:   r.CancelSyssn,
		Status:        Status(r.Status),
		Method:        method,
		Respcd:        r.Respcd,
		Resperr:       r.Resperr,
		Respmsg:       r.Respmsg,
		TxAmt:         r.TxAmt,
		TxCurrCd:      r.TxCurrCd,
		GatewayCalls:  r.GatewayCalls,
		FirstSeenAt:   r.FirstSeenAt.UTC(),
		DecidedAt:     r.DecidedAt.UTC(),
		Reason:        r.Reason,
		SchemaVersion: SchemaVersion,
	}
}
