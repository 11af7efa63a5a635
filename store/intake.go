package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
// Two paths give the same rows. The copy path, taken when no event_id of the
// batch is recorded yet (the common case: new events, some joining attempts
// that exist), reads first and then writes with COPY, nothing speculative:
//
//	newIntakeBatch     which events repeat an event_id, which keys (no I/O)
//	-- one transaction --
//	probe              which keys have an attempt, whether any event_id is recorded, ids for the new attempts
//	copyAttempts       the new attempts, with those ids (only if any)
//	lockAttempts       read and share-lock the attempts that existed (only if any)
//	matchAttempts      each event's attempt, and whether it conflicts with it (no I/O)
//	copyEvents         a row per event
//	queueOutcomes      the outcomes already known (only if any)
//	-- committed --
//	judge              each event's status (no I/O)
//
// A batch that repeats a recorded event_id (a redelivery) takes the upsert
// path in the same transaction instead, and so does a whole batch whose copy
// path met a concurrent writer of one of its keys or event_ids (a unique
// violation or a deadlock: the transaction is rolled back and run again):
//
//	insertAttempts     create the attempts that do not exist yet (ON CONFLICT DO NOTHING)
//	lockAttempts       read and share-lock every key's attempt
//	matchAttempts
//	writeEvents        a row per event_id, unless it is recorded already
//	lookUpRecorded     what the event_ids that were not written stand for (only if any)
//	dropOrphanAttempts attempts created here but left without events (only if any)
//	queueOutcomes
//	-- committed --
//	judge
func (s *Store) Intake(ctx context.Context, events []reversald.Event) (IntakeResult, error) {
	if len(events) == 0 {
		return IntakeResult{Statuses: make([]EventStatus, 0), Reasons: make([]string, 0)}, nil
	}
	b, err := s.intake(ctx, events, true)
	if errors.Is(err, errCopyRace) {
		b, err = s.intake(ctx, events, false)
	}
	if err != nil {
		return IntakeResult{}, fmt.Errorf("intake batch of %d events: %w", len(events), err)
	}
	return b.judge(), nil
}

// errCopyRace: the copy path met a concurrent writer of a key or event_id of
// its batch; the batch is run again on the upsert path.
var errCopyRace = errors.New("intake copy path met a concurrent writer")

// intake runs one transaction for the batch: the copy path when copy is set
// and no event_id is recorded, else the upsert path.
func (s *Store) intake(ctx context.Context, events []reversald.Event, copyPath bool) (*intakeBatch, error) {
	b := newIntakeBatch(events, s.now(), s.deadline)
	b.clock = s.clock()
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{BeginQuery: intakeBegin}, func(tx pgx.Tx) error {
		if copyPath {
			recorded, err := b.probe(ctx, tx)
			if err != nil {
				return err
			}
			if !recorded {
				return b.copyPath(ctx, tx)
			}
		}
		return b.upsertPath(ctx, tx)
	})
	if err != nil {
		if copyPath && isWriteRace(err) {
			return nil, fmt.Errorf("%w: %w", errCopyRace, err)
		}
		return nil, err
	}
	return b, nil
}

// intakeBegin begins intake's transaction with the plans of its statements
// pinned, as the pinned sessions' (pinnedPlans), for this transaction only
// and in the BEGIN's round trip. Every read of intake is a lookup of a
// batch's keys or event_ids: index lookups and nested loops are always its
// best plan. Left to choose, PostgreSQL keeps the generic plan it made while
// the tables were small (a fresh database, no statistics yet): the probe's
// look-up of event_ids became a sequential scan of events, read whole for
// each batch (578 µs an event at batches of 100 over 20,000 events, against
// 4.3 µs pinned).
const intakeBegin = `BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off;
	SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`

// isWriteRace reports a unique violation or a deadlock: another transaction
// wrote a key or an event_id of the batch since the probe read them.
func isWriteRace(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "40P01")
}

func (b *intakeBatch) copyPath(ctx context.Context, tx pgx.Tx) error {
	b.copied = true
	if err := b.copyAttempts(ctx, tx); err != nil {
		return err
	}
	var existing []attemptKey
	for _, k := range b.keys {
		if !b.created[k] {
			existing = append(existing, k)
		}
	}
	if err := b.lockAttempts(ctx, tx, existing); err != nil {
		return err
	}
	if err := b.matchAttempts(); err != nil {
		return err
	}
	if err := b.copyEvents(ctx, tx); err != nil {
		return err
	}
	return b.queueOutcomes(ctx, tx)
}

func (b *intakeBatch) upsertPath(ctx context.Context, tx pgx.Tx) error {
	if err := b.insertAttempts(ctx, tx); err != nil {
		return err
	}
	if err := b.lockAttempts(ctx, tx, b.keys); err != nil {
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

	// probe (copy path): the keys that have an attempt, the ids the new
	// attempts take, and the database's clock (due time and deadline).
	existing     map[attemptKey]bool
	newIDs       []int64
	due, expires time.Time
	copied       bool // the batch took the copy path
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

// probe reads, without writing or locking, which keys of the batch have an
// attempt and whether any of its event_ids is recorded; it takes ids for the
// new attempts from their sequence, and PostgreSQL's clock (a new attempt is
// due at once and its deadline counted from then, as insertAttempts does).
// recorded: the batch must take the upsert path.
func (b *intakeBatch) probe(ctx context.Context, tx pgx.Tx) (recorded bool, err error) {
	mchid, otn := make([]string, len(b.keys)), make([]string, len(b.keys))
	for j, k := range b.keys {
		mchid[j], otn[j] = k.mchid, k.outTradeNo
	}
	ids := make([]string, 0, len(b.firstOfID))
	for i, e := range b.events {
		if !b.repeat(i) {
			ids = append(ids, e.EventID)
		}
	}
	var existing []int32
	err = tx.QueryRow(ctx, `
		WITH existing AS (
			SELECT k.i::int FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(mchid, out_trade_no, i)
			JOIN attempts a ON a.mchid = k.mchid AND a.out_trade_no = k.out_trade_no
		)
		SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($3::text[])),
		       ARRAY(SELECT i FROM existing),
		       ARRAY(SELECT nextval('attempts_id_seq') FROM generate_series(1, $4::int - (SELECT count(*) FROM existing)::int)),
		       `+clockParam(5)+`, `+clockParam(5)+` + $6::interval`,
		mchid, otn, ids, len(b.keys), b.clock, b.deadline,
	).Scan(&recorded, &existing, &b.newIDs, &b.due, &b.expires)
	if err != nil {
		return false, fmt.Errorf("probe keys and event ids: %w", err)
	}
	b.existing = make(map[attemptKey]bool, len(existing))
	for _, i := range existing {
		b.existing[b.keys[i-1]] = true
	}
	return recorded, nil
}

// copyAttempts creates the attempts of the keys probe found none for, from
// the first event of each key, with the ids probe took, in key order (as
// insertAttempts). The attempt takes the trace context of the event that
// creates it.
func (b *intakeBatch) copyAttempts(ctx context.Context, tx pgx.Tx) error {
	var keys []attemptKey
	for _, k := range b.keys {
		if !b.existing[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) != len(b.newIDs) {
		return fmt.Errorf("copy attempts: %d new keys, %d ids", len(keys), len(b.newIDs))
	}
	b.created = make(map[attemptKey]bool, len(keys))
	b.attempts = make(map[attemptKey]lockedAttempt, len(b.keys))
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(x, y attemptKey) int {
		return cmp.Or(strings.Compare(x.mchid, y.mchid), strings.Compare(x.outTradeNo, y.outTradeNo))
	})
	row := make([]any, len(attemptCopyColumns))
	j := -1
	src := pgx.CopyFromFunc(func() ([]any, error) {
		j++
		if j == len(keys) {
			return nil, nil
		}
		e := b.events[b.firstOfKey[keys[j]]]
		row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] =
			b.newIDs[j], e.MchID, e.OutTradeNo, e.Syssn, e.TxAmt, e.TxCurrCd, e.TxDtm, e.PayType, e.Udid
		row[9], row[10], row[11], row[12], row[13], row[14] =
			e.Trace.Parent, e.Trace.State, b.due, b.expires, b.now, b.now
		return row, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"attempts"}, attemptCopyColumns, src); err != nil {
		return fmt.Errorf("copy attempts: %w", err)
	}
	for j, k := range keys {
		e := b.events[b.firstOfKey[k]]
		b.created[k] = true
		b.attempts[k] = lockedAttempt{id: b.newIDs[j], txamt: e.TxAmt, txdtm: e.TxDtm}
	}
	return nil
}

var attemptCopyColumns = []string{
	"id", "mchid", "out_trade_no", "syssn", "txamt", "txcurrcd", "txdtm", "pay_type", "udid",
	"traceparent", "tracestate", "next_run_at", "deadline_at", "first_seen_at", "updated_at",
}

// copyEvents writes a row per event that is not a repeat: probe found none
// of their event_ids recorded (one recorded since fails the copy with a
// unique violation, and the batch takes the upsert path).
func (b *intakeBatch) copyEvents(ctx context.Context, tx pgx.Tx) error {
	rows := eventRows{}
	for i, e := range b.events {
		if !b.repeat(i) {
			rows.add(e, b.attemptOf[i], b.conflict[i], b.now)
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, rows.source()); err != nil {
		return fmt.Errorf("copy events: %w", err)
	}
	b.written = make(map[string]bool, len(rows.id))
	for _, id := range rows.id {
		b.written[id] = true
	}
	return nil
}

type lockedAttempt struct {
	id    int64
	txamt int64
	txdtm string
	final bool // decided already: an event joining it gets its outcome at once
}

// lockAttempts reads the attempts of keys and holds a share lock on them
// until commit, so that an attempt cannot become final between this read and
// the outbox decision made from it (the executor's final write waits for us,
// or we wait for it and read its result). An attempt this transaction created
// needs no lock: no one else sees it before commit.
func (b *intakeBatch) lockAttempts(ctx context.Context, tx pgx.Tx, keys []attemptKey) error {
	if b.attempts == nil {
		b.attempts = make(map[attemptKey]lockedAttempt, len(b.keys))
	}
	if len(keys) == 0 {
		return nil
	}
	mchid, otn := make([]string, len(keys)), make([]string, len(keys))
	for j, k := range keys {
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

// eventColumns are the events table's columns that eventRows holds, in the
// order of its insert and of source's rows.
var eventColumns = []string{
	"event_id", "attempt_id", "mchid", "out_trade_no", "syssn", "txamt", "txcurrcd", "txdtm",
	"pay_type", "reason", "occurred_at", "topic", "kafka_partition", "kafka_offset",
	"conflict", "conflict_reason", "payload", "received_at", "traceparent", "tracestate",
}

// source gives the rows to COPY, in eventColumns' order.
func (r *eventRows) source() pgx.CopyFromSource {
	row := make([]any, len(eventColumns))
	i := -1
	return pgx.CopyFromFunc(func() ([]any, error) {
		i++
		if i == len(r.id) {
			return nil, nil
		}
		var occurred any // a nil *time.Time is NULL
		if r.occurred[i] != nil {
			occurred = *r.occurred[i]
		}
		row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] =
			r.id[i], r.attempt[i], r.mchid[i], r.otn[i], r.syssn[i], r.amt[i], r.currcd[i], r.dtm[i]
		row[8], row[9], row[10], row[11], row[12], row[13] =
			r.ptype[i], r.reason[i], occurred, r.topic[i], r.partition[i], r.offset[i]
		row[14], row[15], row[16], row[17], row[18], row[19] =
			r.conflict[i], r.conflictReason[i], r.payload[i], *r.received[i], r.traceparent[i], r.tracestate[i]
		return row, nil
	})
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
