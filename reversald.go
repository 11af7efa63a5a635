// Package reversald is the domain vocabulary every other package speaks: an
// attempt to settle one uncertain payment, its status, the step it is at, the
// method that cancels it, the event that asked for it, the outcome published
// for it and the audit record of a gateway call.
//
// It is a leaf: it imports nothing of this module and does no I/O. The store
// persists these types, the reversal package decides them, the consumer reads
// and writes them on Kafka. The migration's CHECK lists are tested against
// the enumerations here (store tests), so the database and the code cannot
// drift apart.
package reversald

import "time"

// Status is where an attempt stands. Every status but StatusPending is final
// and is what reconciliation acts on (DESIGN.md, Outcome).
type Status string

// Statuses.
const (
	StatusPending  Status = "pending"  // still being driven
	StatusReversed Status = "reversed" // QFPay confirms the reversal: nothing charged
	StatusClosed   Status = "closed"   // QFPay confirms the close: nothing charged
	StatusPaid     Status = "paid"     // completed and not cancellable: refund it
	StatusRefunded Status = "refunded" // already refunded in full
	// StatusPartiallyRefunded: part refunded, part of the money is still
	// captured (QFPay's record has cancel=5).
	StatusPartiallyRefunded Status = "partially_refunded"
	StatusNotPaid           Status = "not_paid"     // the payment failed at QFPay: nothing charged
	StatusNotFound          Status = "not_found"    // no such transaction after the re-check window
	StatusUnsupported       Status = "unsupported"  // the pay type cannot be cancelled through the API
	StatusNeedsReview       Status = "needs_review" // a person must look
)

// Statuses lists every status, pending first.
var Statuses = []Status{
	StatusPending, StatusReversed, StatusClosed, StatusPaid, StatusRefunded,
	StatusPartiallyRefunded, StatusNotPaid, StatusNotFound, StatusUnsupported, StatusNeedsReview,
}

// Final reports whether s is an outcome (anything but pending).
func (s Status) Final() bool { return s != StatusPending }

// Step is where an attempt is in its state machine.
type Step string

// Steps.
const (
	StepQuery   Step = "query"   // ask QFPay what became of the payment
	StepCancel  Step = "cancel"  // reverse or close it
	StepConfirm Step = "confirm" // query after a cancel was accepted
	StepDone    Step = "done"    // final
)

// Steps lists every step.
var Steps = []Step{StepQuery, StepCancel, StepConfirm, StepDone}

// Method is how a payment is cancelled at QFPay.
type Method string

// Methods.
const (
	MethodReversal Method = "reversal" // POST /trade/v1/reversal
	MethodClose    Method = "close"    // POST /trade/v1/close
	MethodNone     Method = "none"     // no cancel was sent (or none is possible)
)

// Methods lists every method.
var Methods = []Method{MethodReversal, MethodClose, MethodNone}

// Attempt is one payment being driven to a final state, keyed by (MchID,
// OutTradeNo).
type Attempt struct {
	ID         int64
	MchID      string
	OutTradeNo string
	Syssn      string
	TxAmt      int64
	TxCurrCd   string
	TxDtm      string
	PayType    string
	Udid       string

	Status        Status
	Step          Step
	Method        Method
	CancelPending bool // a cancel may be under way: query before anything else
	CancelSyssn   string
	Respcd        string
	Resperr       string
	Respmsg       string
	Reason        string
	GatewayCalls  int // over the attempt's whole life
	Rechecks      int // re-checks spent in the current phase

	// CancelCalls counts the cancels that may have left, over the attempt's
	// whole life (operator retries included): counted when the intent is
	// written, before the send. Bounded by the policy's CancelMaxCalls.
	CancelCalls int
	// CancelReached: a cancel may have reached QFPay (it was acknowledged in
	// any way, or its answer was lost). From then on "no record" is never
	// not_found.
	CancelReached bool
	// CancelRespcd is the last cancel's answer ("" when it was lost).
	CancelRespcd string
	// BudgetCalls counts the gateway calls charged to the per-attempt budget
	// since intake or the last operator retry.
	BudgetCalls int
	// The last payment record read (all empty before one was read): its
	// respcd and cancel flag, and QFPay's own amount and currency.
	RecordRespcd   string
	RecordCancel   string
	RecordTxAmt    int64
	RecordTxCurrCd string

	// ResolvedBy names the operator who resolved the attempt by hand; ""
	// when the daemon decided it (a retry clears it).
	ResolvedBy string

	NextRunAt      time.Time
	DeadlineAt     time.Time
	LeaseOwner     string
	LeaseExpiresAt time.Time // zero when not leased
	Token          int64

	FirstSeenAt time.Time
	DecidedAt   time.Time // zero while pending
	UpdatedAt   time.Time

	// Trace is the trace context of the event that created the attempt:
	// its steps and gateway calls join that trace. Empty when tracing was
	// off at intake.
	Trace TraceContext
}

// Final reports whether the attempt has reached a final status.
func (a Attempt) Final() bool { return a.Status.Final() }

// Event is one payment-uncertain event: a POS terminal could not tell whether
// the payment OutTradeNo went through. The JSON names are those of the input
// contract, so an Event marshalled with encoding/json is a valid input value.
// Source says where intake read it; it is not part of the contract.
type Event struct {
	EventID    string    `json:"event_id"`
	OutTradeNo string    `json:"out_trade_no"`
	Syssn      string    `json:"syssn,omitempty"`
	TxAmt      int64     `json:"txamt"` // minor units, > 0
	TxCurrCd   string    `json:"txcurrcd,omitempty"`
	TxDtm      string    `json:"txdtm"` // QFPay's txdtm layout, kept as the producer sent it
	PayType    string    `json:"pay_type,omitempty"`
	MchID      string    `json:"mchid,omitempty"`
	Udid       string    `json:"udid,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	OccurredAt time.Time `json:"occurred_at,omitzero"` // UTC; zero if absent

	Source Source `json:"-"`
	// Trace is the trace context of the event's intake span (empty when
	// tracing is off). Not part of the contract: it travels in the message's
	// headers, not its value.
	Trace TraceContext `json:"-"`
}

// TraceContext is a W3C trace context as text: the traceparent and
// tracestate header values that continue a trace. It is how a trace crosses
// PostgreSQL from intake to the executor and the publisher. The zero value
// means none (tracing was off).
type TraceContext struct {
	Parent string // traceparent
	State  string // tracestate
}

// Source is where an event was read.
type Source struct {
	Topic     string
	Partition int
	Offset    int64
	Payload   []byte // the original Kafka value
}

// Call is the audit record of one gateway call. It never holds a secret.
type Call struct {
	Step       Step
	Endpoint   string
	AppCode    string // the QFPay app code that signed the call (never the key)
	Request    map[string]string
	HTTPStatus int
	Respcd     string
	Error      string
	Response   []byte // bounded by the caller
	Latency    time.Duration
	At         time.Time
}

// SchemaVersion is the version of the Outcome JSON on the results topic. Bump
// it with any change of meaning or name; adding a field is not a change of
// meaning.
const SchemaVersion = 2

// Outcome is one message on the results topic: the final state of the
// attempt an input event belongs to. Every field but resolved_by is always
// present (empty when unknown), so readers see a fixed shape. Times are RFC 3339 in UTC.
type Outcome struct {
	EventID     string `json:"event_id"`
	OutTradeNo  string `json:"out_trade_no"`
	MchID       string `json:"mchid"`
	Syssn       string `json:"syssn"`        // the original payment, if known
	CancelSyssn string `json:"cancel_syssn"` // the reversal or close transaction
	Status      Status `json:"status"`
	Method      Method `json:"method"` // reversal | close | none
	Respcd      string `json:"respcd"`
	Resperr     string `json:"resperr"`
	Respmsg     string `json:"respmsg"`
	TxAmt       int64  `json:"txamt"`    // the event's amount
	TxCurrCd    string `json:"txcurrcd"` // the event's currency
	// QFPayTxAmt and QFPayTxCurrCd are QFPay's own amount and currency from
	// the last payment record read (0 and "" when no record was read). A
	// mismatch with the event's is needs_review.
	QFPayTxAmt    int64     `json:"qfpay_txamt"`
	QFPayTxCurrCd string    `json:"qfpay_txcurrcd"`
	GatewayCalls  int       `json:"gateway_calls"`
	FirstSeenAt   time.Time `json:"first_seen_at"`
	DecidedAt     time.Time `json:"decided_at"`
	Reason        string    `json:"reason"` // one human sentence
	SchemaVersion int       `json:"schema_version"`
	// ResolvedBy names the operator who decided the status by hand
	// (reversald attempts resolve); absent when the daemon decided it. Added
	// within schema_version 2: it is optional, and readers that do not know
	// it lose nothing.
	ResolvedBy string `json:"resolved_by,omitempty"`
}

// Published returns o in the shape the results topic carries: the method
// always one of the three documented values (none when empty), times in UTC,
// and the schema version stamped.
func (o Outcome) Published() Outcome {
	if o.Method == "" {
		o.Method = MethodNone
	}
	o.FirstSeenAt, o.DecidedAt = o.FirstSeenAt.UTC(), o.DecidedAt.UTC()
	o.SchemaVersion = SchemaVersion
	return o
}
