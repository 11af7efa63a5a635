package store

import "time"

// Event is one valid input event as intake records it.
type Event struct {
	EventID    string
	MchID      string
	OutTradeNo string
	Syssn      string
	TxAmt      int64
	TxCurrCd   string
	TxDtm      string
	PayType    string
	Udid       string
	Reason     string
	OccurredAt time.Time // zero when absent

	Topic     string
	Partition int
	Offset    int64
	Payload   []byte // the original Kafka value
}

// EventStatus says what intake did with one event.
type EventStatus int

const (
	// EventNew created the attempt.
	EventNew EventStatus = iota + 1
	// EventAttached joined an existing attempt with the same key and amounts.
	EventAttached
	// EventDuplicate: the event_id was recorded before; nothing was written.
	EventDuplicate
	// EventConflict: same key as an existing attempt but a different txamt or
	// txdtm. The event is kept and gets a needs_review outcome; the attempt is
	// untouched.
	EventConflict
	// EventRejected: the event_id is already recorded for another payment
	// (another key, amount or time). Nothing was written; IntakeResult.Reasons
	// says why, and intake dead-letters it.
	EventRejected
)

func (s EventStatus) String() string {
	switch s {
	case EventNew:
		return "new"
	case EventAttached:
		return "attached"
	case EventDuplicate:
		return "duplicate"
	case EventConflict:
		return "conflict"
	case EventRejected:
		return "rejected"
	}
	return "unknown"
}

// IntakeResult reports a committed intake batch.
type IntakeResult struct {
	Statuses    []EventStatus // one per input event, same order
	Reasons     []string      // for EventRejected, why; "" otherwise
	NewAttempts []int64       // attempts created by this batch
}

// Statuses of an attempt. Every status but StatusPending is final.
const (
	StatusPending     = "pending"
	StatusReversed    = "reversed"
	StatusClosed      = "closed"
	StatusPaid        = "paid"
	StatusRefunded    = "refunded"
	StatusNotPaid     = "not_paid"
	StatusNotFound    = "not_found"
	StatusUnsupported = "unsupported"
	StatusNeedsReview = "needs_review"
)

// Steps of an attempt's state machine.
const (
	StepQuery   = "query"
	StepCancel  = "cancel"
	StepConfirm = "confirm"
	StepDone    = "done"
)

// Attempt is one payment being driven to a final state.
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

	Status        string
	Step          string
	Method        string
	CancelPending bool
	CancelSyssn   string
	Respcd        string
	Resperr       string
	Respmsg       string
	Reason        string
	GatewayCalls  int
	Rechecks      int

	NextRunAt      time.Time
	DeadlineAt     time.Time
	LeaseOwner     string
	LeaseExpiresAt time.Time // zero when not leased
	Token          int64

	FirstSeenAt time.Time
	DecidedAt   time.Time // zero while pending
	UpdatedAt   time.Time
}

// Final reports whether the attempt has reached a final status.
func (a Attempt) Final() bool { return a.Status != StatusPending }

// Call is the audit record of one gateway call. It never holds a secret.
type Call struct {
	Step       string
	Endpoint   string
	Request    map[string]string
	HTTPStatus int
	Respcd     string
	Error      string
	Response   []byte // bounded by the caller
	Latency    time.Duration
	At         time.Time
}

// OutboxRecord is one outcome waiting to be published: a snapshot of the
// attempt's final state joined with the event it answers.
type OutboxRecord struct {
	ID           int64
	EventID      string
	OutTradeNo   string
	MchID        string
	Syssn        string
	CancelSyssn  string
	Status       string
	Method       string
	Respcd       string
	Resperr      string
	Respmsg      string
	TxAmt        int64
	TxCurrCd     string
	GatewayCalls int
	FirstSeenAt  time.Time
	DecidedAt    time.Time
	Reason       string
}
