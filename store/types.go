package store

import (
	"time"

	"github.com/reversald/reversald"
)

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

// OutboxRecord is one outcome waiting to be published: a snapshot of the
// attempt's final state joined with the event it answers.
type OutboxRecord struct {
	ID int64 // the outbox row, marked published once the outcome is acknowledged
	// PublishedAt is when the results topic acknowledged it; nil until then.
	PublishedAt *time.Time
	reversald.Outcome
	// Trace is the trace context of the event the outcome answers: the
	// outcome joins that trace. AttemptTrace is the attempt's (only its
	// traceparent): the trace of the gateway calls, another one when the
	// event joined an attempt a first event created. Empty when tracing was
	// off.
	Trace, AttemptTrace reversald.TraceContext
}
