package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
)

// Intake records a batch of events in one transaction and returns only after
// it committed. Within the batch and across batches: an event_id already seen
// is a duplicate, or rejected if it names another payment; the first event for
// a key creates its attempt; a later event with the same key and the same
// txamt and txdtm joins it; one with a different txamt or txdtm is a conflict,
// kept with a needs_review outcome. What is the same payment, and the reasons
// given, are the domain's (reversald.Conflict, reversald.ReusedEventID).
//
// The phases, in this order, over one intakeBatch (the common path, where no
// event_id was recorded before, is three statements):
//
//	newIntakeBatch     which events repeat an event_id, which keys (no I/O)
//	-- one transaction --
//	insertAttempts     create the attempts that do not exist yet
//	lockAttempts       read and share-lock every key's attempt
//	matchAttempts      each event's attempt, and whether it conflicts with it (no I/O)
//	writeEvents        a row per event_id, unless it is recorded already
//	lookUpRecorded     what the event_ids that were not written stand for (only if any)
//	dropOrphanAttempts attempts created here but left without events (only if any)
//	queueOutcomes      the outcomes already known: conflicts, events of final attempts (only if any)
//	-- committed --
//	judge              each event's status, decided once from the above (no I/O)
func (s *Store) Intake(ctx context.Context, events []reversald.Event) (IntakeResult, error) {
	if len(events) == 0 {
		return IntakeResult{Statuses: make([]EventStatus, 0), Reasons: make([]string, 0)}, nil
	}
	b := newIntakeBatch(events, s.now(), s.deadline)
	b.clock = s.clock()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := b.insertAttempts(ctx, tx); err != nil {
			return err
		}
		if err := b.lockAttempts(ctx, tx); err != nil {
			return err
		}
		if err := b.matchAttempts(); err != nil {
			return err
		}
		if err := b.writeEvents(ctx, tx); err != nil {
			return err
		}
		if err := b.lookUpRecorded(ctx, tx); err != nil {
			return err
		}
		if err := b.dropOrphanAttempts(ctx, tx); err != nil {
			return err
		}
		return b.queueOutcomes(ctx, tx)
	})
	if err != nil {
		return IntakeResult{}, fmt.Errorf("intake batch of %d events: %w", len(events), err)
	}
	return b.judge(), nil
}

type attemptKey struct{ mchid, outTradeNo string }

// intakeBatch is one Intake call: its events and what the phases learn about
// them, in the order they learn it.
type intakeBatch struct {
	now      time.Time
	deadline time.Duration
	events   []reversald.Event

	// newIntakeBatch: an event_id's first event in the batch counts; a later
	// one is a repeat, judged against what its event_id stands for. Keys come
	// from the events that are not repeats.
	firstOfID  map[string]int     // event_id → its first event
	keys       []attemptKey       // one per key, in batch order
	firstOfKey map[attemptKey]int // key → its first event that is not a repeat

	created  map[attemptKey]bool          // insertAttempts: the keys whose attempt it created
	attempts map[attemptKey]lockedAttempt // lockAttempts: every key's attempt

	// matchAttempts, per event (repeats excepted): its attempt, and why it
	// conflicts with the attempt's payment ("" when it does not).
	attemptOf []int64
	conflict  []string

	// writeEvents: the event_ids whose row it wrote, and those it found
	// recorded already (by an earlier batch or a concurrent one).
	written   map[string]bool
	unwritten []string

	recorded map[string]reversald.Payment // lookUpRecorded: what the unwritten event_ids stand for
	// clock is dbClock's parameter: a new attempt is due, and its deadline
	// counted, on PostgreSQL's clock, whichever instance took it in.
	clock *time.Time
}

func newIntakeBatch(events []reversald.Event, now time.Time, deadline time.Duration) *intakeBatch {
	b := &intakeBatch{
		now: now, deadline: deadline, events: events,
		firstOfID:  make(map[string]int, len(events)),
		firstOfKey: make(map[attemptKey]int, len(events)),
		recorded:   map[string]reversald.Payment{},
	}
	for i, e := range events {
		if _, repeat := b.firstOfID[e.EventID]; repeat {
			continue
		}
		b.firstOfID[e.EventID] = i
		k := attemptKey{e.MchID, e.OutTradeNo}
		if _, seen := b.firstOfKey[k]; !seen {
			b.firstOfKey[k] = i
			b.keys = append(b.keys, k)
		}
	}
	return b
}

// repeat reports whether event i repeats an event_id met earlier in the batch.
func (b *intakeBatch) repeat(i int) bool { return b.firstOfID[b.events[i].EventID] != i }

// insertAttempts creates the attempts for keys that have none, from the first
// event of each key.
func (b *intakeBatch) insertAttempts(ctx context.Context, tx pgx.Tx) error {
	n := len(b.keys)
	mchid, otn, syssn, currcd, dtm, ptype, udid := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	tparent, tstate := make([]string, n), make([]string, n)
	amt := make([]int64, n)
	for j, k := range b.keys {
		e := b.events[b.firstOfKey[k]]
		mchid[j], otn[j], syssn[j], amt[j], currcd[j], dtm[j], ptype[j], udid[j] =
			e.MchID, e.OutTradeNo, e.Syssn, e.TxAmt, e.TxCurrCd, e.TxDtm, e.PayType, e.Udid
		tparent[j], tstate[j] = e.Trace.Parent, e.Trace.State
	}
	// The attempt takes the trace context of the event that creates it: its
	// steps and gateway calls join that event's trace.
	rows, err := tx.Query(ctx, `
		INSERT INTO attempts (mchid, out_trade_no, syssn, txamt, txcurrcd, txdtm, pay_type, udid,
		                      traceparent, tracestate, next_run_at, deadline_at, first_seen_at, updated_at)
		SELECT k.*, `+clockParam(11)+`, `+clockParam(11)+` + $10::interval, $9::timestamptz, $9::timestamptz
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
		            $12::text[], $13::text[])
		     AS k(mchid, out_trade_no, syssn, txamt, txcurrcd, txdtm, pay_type, udid, traceparent, tracestate)
		ORDER BY k.mchid, k.out_trade_no
		ON CONFLICT (mchid, out_trade_no) DO NOTHING
		RETURNING mchid, out_trade_no`,
		mchid, otn, syssn, amt, currcd, dtm, ptype, udid, b.now, b.deadline, b.clock, tparent, tstate)
	if err != nil {
		return fmt.Errorf("insert attempts: %w", err)
	}
	b.created = make(map[attemptKey]bool, n)
	var k attemptKey
	_, err = pgx.ForEachRow(rows, []any{&k.mchid, &k.outTradeNo}, func() error {
		b.created[k] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert attempts: %w", err)
	}
	return nil
}

type lockedAttempt struct {
	id    int64
	txamt int64
	txdtm string
	final bool // decided already: an event joining it gets its outcome at once
}

// lockAttempts reads the attempts of the batch's keys and holds a share lock
// on them until commit, so that an attempt cannot become final between this
// read and the outbox decision made from it (the executor's final write waits
// for us, or we wait for it and read its result).
func (b *intakeBatch) lockAttempts(ctx context.Context, tx pgx.Tx) error {
	mchid, otn := make([]string, len(b.keys)), make([]string, len(b.keys))
	for j, k := range b.keys {
		mchid[j], otn[j] = k.mchid, k.outTradeNo
	}
	rows, err := tx.Query(ctx, `
		SELECT a.id, a.mchid, a.out_trade_no, a.txamt, a.txdtm, a.status <> 'pending'
		FROM attempts a
		JOIN unnest($1::text[], $2::text[]) AS k(mchid, out_trade_no)
		  ON a.mchid = k.mchid AND a.out_trade_no = k.out_trade_no
		ORDER BY a.id
		FOR SHARE OF a`, mchid, otn)
	if err != nil {
		return fmt.Errorf("lock attempts: %w", err)
	}
	b.attempts = make(map[attemptKey]lockedAttempt, len(b.keys))
	var (
		k attemptKey
		a lockedAttempt
	)
	_, err = pgx.ForEachRow(rows, []any{&a.id, &k.mchid, &k.outTradeNo, &a.txamt, &a.txdtm, &a.final}, func() error {
		b.attempts[k] = a
		return nil
	})
	if err != nil {
		return fmt.Errorf("lock attempts: %w", err)
	}
	return nil
}

// matchAttempts finds each event's attempt and asks the domain whether the
// event is about the attempt's payment.
func (b *intakeBatch) matchAttempts() error {
	b.attemptOf, b.conflict = make([]int64, len(b.events)), make([]string, len(b.events))
	for i, e := range b.events {
		if b.repeat(i) {
			continue
		}
		k := attemptKey{e.MchID, e.OutTradeNo}
		a, ok := b.attempts[k]
		if !ok {
			return fmt.Errorf("intake event %s: attempt for %s/%s vanished", e.EventID, e.MchID, e.OutTradeNo)
		}
		b.attemptOf[i] = a.id
		b.conflict[i], _ = reversald.Conflict(reversald.Payment{MchID: k.mchid, OutTradeNo: k.outTradeNo, TxAmt: a.txamt, TxDtm: a.txdtm}, e)
	}
	return nil
}

// writeEvents writes a row per event that is not a repeat, skipping event_ids
// recorded already, and keeps the event_ids it wrote.
func (b *intakeBatch) writeEvents(ctx context.Context, tx pgx.Tx) error {
	rows := eventRows{}
	for i, e := range b.events {
		if !b.repeat(i) {
			rows.add(e, b.attemptOf[i], b.conflict[i], b.now)
		}
	}
	var err error
	if b.written, err = rows.insert(ctx, tx); err != nil {
		return err
	}
	for _, id := range rows.id {
		if !b.written[id] {
			b.unwritten = append(b.unwritten, id)
		}
	}
	return nil
}

// lookUpRecorded reads what the event_ids that writeEvents did not write were
// recorded for. Only these cost a look-up; on the common path there are none.
func (b *intakeBatch) lookUpRecorded(ctx context.Context, tx pgx.Tx) error {
	if len(b.unwritten) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT event_id, mchid, out_trade_no, txamt, txdtm FROM events WHERE event_id = ANY($1)`, b.unwritten)
	if err != nil {
		return fmt.Errorf("look up recorded events: %w", err)
	}
	var (
		id string
		p  reversald.Payment
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &p.MchID, &p.OutTradeNo, &p.TxAmt, &p.TxDtm}, func() error {
		b.recorded[id] = p
		return nil
	})
	if err != nil {
		return fmt.Errorf("look up recorded events: %w", err)
	}
	return nil
}

// dropOrphanAttempts deletes the attempts this batch created that are left
// without an event (their only event_id was recorded before, for another
// payment). Only needed when some event_id was not written.
func (b *intakeBatch) dropOrphanAttempts(ctx context.Context, tx pgx.Tx) error {
	if len(b.unwritten) == 0 {
		return nil
	}
	var createdIDs []int64
	for k := range b.created {
		createdIDs = append(createdIDs, b.attempts[k].id)
	}
	if _, err := tx.Exec(ctx, `
		DELETE FROM attempts a WHERE a.id = ANY($1)
		  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.attempt_id = a.id)`, createdIDs); err != nil {
		return fmt.Errorf("drop attempts left without events: %w", err)
	}
	return nil
}

// queueOutcomes writes the outcomes that are already known for the events
// written: a conflict's (needs_review, with its reason), and that of an
// attempt already final for an event joining it.
func (b *intakeBatch) queueOutcomes(ctx context.Context, tx pgx.Tx) error {
	var ids []string
	for i, e := range b.events {
		if !b.repeat(i) && b.written[e.EventID] && (b.conflict[i] != "" || b.attempts[attemptKey{e.MchID, e.OutTradeNo}].final) {
			ids = append(ids, e.EventID)
		}
	}
	if len(ids) == 0 {
		return nil // the common path: nothing is known yet, no statement
	}
	// A conflict's outcome is decided at e.received_at: b.now, as writeEvents
	// wrote every one of these events.
	if _, err := tx.Exec(ctx, queueKnownOutcomes, ids); err != nil {
		return fmt.Errorf("queue known outcomes: %w", err)
	}
	return nil
}

// queueKnownOutcomes queues the outcomes of the events $1 that are known at
// intake: conflicts, and events of attempts already final.
const queueKnownOutcomes = insertOutcomes + `e.event_id = ANY($1) AND (e.conflict OR a.status <> 'pending')`

// judge decides each event's status, once, from what the phases found, and
// lists the attempts the batch created for the executor's fast path.
func (b *intakeBatch) judge() IntakeResult {
	res := IntakeResult{Statuses: make([]EventStatus, len(b.events)), Reasons: make([]string, len(b.events))}
	for i, e := range b.events {
		k := attemptKey{e.MchID, e.OutTradeNo}
		prev, recorded := b.standsFor(i)
		switch {
		case recorded:
			if reason, reused := reversald.ReusedEventID(prev, e); reused {
				res.Statuses[i], res.Reasons[i] = EventRejected, reason
			} else {
				res.Statuses[i] = EventDuplicate
			}
		case b.created[k] && b.firstOfKey[k] == i:
			res.Statuses[i] = EventNew
		case b.conflict[i] != "":
			res.Statuses[i] = EventConflict
		default:
			res.Statuses[i] = EventAttached
		}
	}
	for _, k := range b.keys {
		if i := b.firstOfKey[k]; b.created[k] && res.Statuses[i] == EventNew {
			res.NewAttempts = append(res.NewAttempts, b.attempts[k].id)
		}
	}
	return res
}

// standsFor returns the payment event i's event_id stood for before event i
// came, if any: the record of an earlier batch (or a concurrent one) if there
// is one, else, for a repeat, the batch's first event with that id. An event
// that was not written yet whose record could not be read gets the zero
// Payment: it is refused rather than taken for a duplicate.
func (b *intakeBatch) standsFor(i int) (reversald.Payment, bool) {
	id := b.events[i].EventID
	if p, ok := b.recorded[id]; ok {
		return p, true
	}
	if first := b.firstOfID[id]; first != i {
		return b.events[first].Payment(), true
	}
	if !b.written[id] {
		return reversald.Payment{}, true
	}
	return reversald.Payment{}, false
}

// eventRows gathers the columns of the events table for one unnest insert.
type eventRows struct {
	id, mchid, otn, syssn, currcd, dtm, ptype, reason, topic, conflictReason []string
	traceparent, tracestate                                                  []string
	attempt, amt, offset                                                     []int64
	partition                                                                []int32
	conflict                                                                 []bool
	occurred, received                                                       []*time.Time
	payload                                                                  [][]byte
}

// add appends e's row; conflictReason is "" when e does not conflict with its
// attempt.
func (r *eventRows) add(e reversald.Event, attemptID int64, conflictReason string, now time.Time) {
	var occ *time.Time
	if !e.OccurredAt.IsZero() {
		t := e.OccurredAt
		occ = &t
	}
	r.id = append(r.id, e.EventID)
	r.attempt = append(r.attempt, attemptID)
	r.mchid = append(r.mchid, e.MchID)
	r.otn = append(r.otn, e.OutTradeNo)
	r.syssn = append(r.syssn, e.Syssn)
	r.amt = append(r.amt, e.TxAmt)
	r.currcd = append(r.currcd, e.TxCurrCd)
	r.dtm = append(r.dtm, e.TxDtm)
	r.ptype = append(r.ptype, e.PayType)
	r.reason = append(r.reason, e.Reason)
	r.occurred = append(r.occurred, occ)
	r.topic = append(r.topic, e.Source.Topic)
	r.partition = append(r.partition, int32(e.Source.Partition)) //nolint:gosec // a Kafka partition is an int32 on the wire
	r.offset = append(r.offset, e.Source.Offset)
	r.conflict = append(r.conflict, conflictReason != "")
	r.conflictReason = append(r.conflictReason, conflictReason)
	r.payload = append(r.payload, e.Source.Payload)
	r.received = append(r.received, &now)
	r.traceparent = append(r.traceparent, e.Trace.Parent)
	r.tracestate = append(r.tracestate, e.Trace.State)
}

// insert writes the rows, skipping event_ids already recorded, and returns
// the event_ids it wrote.
func (r *eventRows) insert(ctx context.Context, tx pgx.Tx) (map[string]bool, error) {
	inserted := make(map[string]bool, len(r.id))
	if len(r.id) == 0 {
		return inserted, nil
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO events (event_id, attempt_id, mchid, out_trade_no, syssn, txamt, txcurrcd, txdtm,
		                    pay_type, reason, occurred_at, topic, kafka_partition, kafka_offset,
		                    conflict, conflict_reason, payload, received_at, traceparent, tracestate)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[],
		                     $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[],
		                     $13::int[], $14::bigint[], $15::bool[], $16::text[], $17::bytea[], $18::timestamptz[],
		                     $19::text[], $20::text[])
		ON CONFLICT (event_id) DO NOTHING
		RETURNING event_id`,
		r.id, r.attempt, r.mchid, r.otn, r.syssn, r.amt, r.currcd, r.dtm, r.ptype, r.reason, r.occurred,
		r.topic, r.partition, r.offset, r.conflict, r.conflictReason, r.payload, r.received, r.traceparent, r.tracestate)
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		inserted[id] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	return inserted, nil
}
