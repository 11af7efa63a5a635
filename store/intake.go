package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
)

type attemptKey struct{ mchid, outTradeNo string }

// Intake records a batch of events in one transaction and returns only after
// it committed. Within the batch and across batches: an event_id already seen
// is a duplicate; the first event for a key creates its attempt; a later event
// with the same key and the same txamt and txdtm joins it; one with a different
// txamt or txdtm is a conflict, kept with a needs_review outcome.
func (s *Store) Intake(ctx context.Context, events []reversald.Event) (IntakeResult, error) {
	res := IntakeResult{Statuses: make([]EventStatus, len(events)), Reasons: make([]string, len(events))}
	if len(events) == 0 {
		return res, nil
	}
	now := s.now()

	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// In-batch repeats of an event_id: the first one counts; a repeat is
		// a duplicate if it names the same payment and refused if not.
		// (Event_ids recorded by earlier batches are told apart below, once
		// the insert has shown which ones they are.)
		firstOfID := make(map[string]int, len(events))
		var (
			keys    []attemptKey
			repeats []int // judged once it is known what their id stands for
		)
		firstOfKey := make(map[attemptKey]int, len(events))
		for i, e := range events {
			if _, dup := firstOfID[e.EventID]; dup {
				res.Statuses[i] = EventDuplicate // for now: see repeats below
				repeats = append(repeats, i)
				continue
			}
			firstOfID[e.EventID] = i
			k := attemptKey{e.MchID, e.OutTradeNo}
			if _, dup := firstOfKey[k]; !dup {
				firstOfKey[k] = i
				keys = append(keys, k)
			}
		}
		created, err := s.insertAttempts(ctx, tx, events, keys, firstOfKey, now)
		if err != nil {
			return err
		}
		known, err := lockAttempts(ctx, tx, keys)
		if err != nil {
			return err
		}
		rows := eventRows{}
		for i, e := range events {
			if res.Statuses[i] == EventDuplicate || res.Statuses[i] == EventRejected {
				continue
			}
			k := attemptKey{e.MchID, e.OutTradeNo}
			a, ok := known[k]
			if !ok {
				return fmt.Errorf("intake event %s: attempt for %s/%s vanished", e.EventID, e.MchID, e.OutTradeNo)
			}
			st := EventAttached
			switch {
			case created[k] && firstOfKey[k] == i:
				st = EventNew
			case a.txamt != e.TxAmt || a.txdtm != e.TxDtm:
				st = EventConflict
			}
			res.Statuses[i] = st
			rows.add(e, a.id, st == EventConflict, conflictReason(a, e), now)
		}
		inserted, err := rows.insert(ctx, tx)
		if err != nil {
			return err
		}
		// An event_id recorded before (by an earlier or a concurrent batch):
		// a redelivery if it names the same payment, and a producer's mistake
		// if it names another, which is refused (dead-lettered) rather than
		// dropped. Only these cost a look-up.
		var lost []reversald.Event
		for i, e := range events {
			if st := res.Statuses[i]; st != EventDuplicate && st != EventRejected && !inserted[e.EventID] {
				lost = append(lost, e)
			}
		}
		recorded := map[string]recordedEvent{}
		if len(lost) > 0 {
			if recorded, err = recordedEvents(ctx, tx, lost); err != nil {
				return err
			}
			for i, e := range events {
				if st := res.Statuses[i]; st == EventDuplicate || st == EventRejected || inserted[e.EventID] {
					continue
				}
				res.Statuses[i], res.Reasons[i] = judgeRecorded(e, recorded[e.EventID])
			}
			// An attempt this batch created is never left without an event
			// (its only event_id may have been recorded before, for another
			// payment).
			var createdIDs []int64
			for k := range created {
				createdIDs = append(createdIDs, known[k].id)
			}
			if _, err := tx.Exec(ctx, `
				DELETE FROM attempts a WHERE a.id = ANY($1)
				  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.attempt_id = a.id)`, createdIDs); err != nil {
				return fmt.Errorf("drop attempts left without events: %w", err)
			}
		}
		// A repeat within the batch answers to what its id stands for: the
		// earlier record if there was one, else the batch's first event.
		for _, i := range repeats {
			e := events[i]
			prev, ok := recorded[e.EventID]
			if !ok {
				first := events[firstOfID[e.EventID]]
				prev = recordedEvent{first.MchID, first.OutTradeNo, first.TxDtm, first.TxAmt}
			}
			res.Statuses[i], res.Reasons[i] = judgeRecorded(e, prev)
		}
		// Outcomes that are already known: conflicts, and events joining an
		// attempt that is final.
		_, err = tx.Exec(ctx, `
			INSERT INTO outbox (event_id, attempt_id, status, method, syssn, cancel_syssn, respcd,
			                    resperr, respmsg, reason, gateway_calls, decided_at)
			SELECT e.event_id, a.id,
			       CASE WHEN e.conflict THEN 'needs_review' ELSE a.status END,
			       CASE WHEN e.conflict THEN 'none' ELSE a.method END,
			       CASE WHEN e.conflict THEN e.syssn ELSE a.syssn END,
			       CASE WHEN e.conflict THEN '' ELSE a.cancel_syssn END,
			       CASE WHEN e.conflict THEN '' ELSE a.respcd END,
			       CASE WHEN e.conflict THEN '' ELSE a.resperr END,
			       CASE WHEN e.conflict THEN '' ELSE a.respmsg END,
			       CASE WHEN e.conflict THEN e.conflict_reason ELSE a.reason END,
			       CASE WHEN e.conflict THEN 0 ELSE a.gateway_calls END,
			       CASE WHEN e.conflict THEN $2 ELSE a.decided_at END
			FROM events e JOIN attempts a ON a.id = e.attempt_id
			WHERE e.event_id = ANY($1) AND (e.conflict OR a.status <> 'pending')`,
			rows.newIDs(inserted), now)
		if err != nil {
			return fmt.Errorf("queue known outcomes: %w", err)
		}
		for k, i := range firstOfKey {
			if created[k] && res.Statuses[i] == EventNew && inserted[events[i].EventID] {
				res.NewAttempts = append(res.NewAttempts, known[k].id)
			}
		}
		return nil
	})
	if err != nil {
		return IntakeResult{}, fmt.Errorf("intake batch of %d events: %w", len(events), err)
	}
	return res, nil
}

type recordedEvent struct {
	mchid, outTradeNo, txdtm string
	txamt                    int64
}

// judgeRecorded tells a redelivery (the same payment) from a producer's
// reuse of an event_id for another payment.
func judgeRecorded(e reversald.Event, prev recordedEvent) (EventStatus, string) {
	if prev == (recordedEvent{e.MchID, e.OutTradeNo, e.TxDtm, e.TxAmt}) {
		return EventDuplicate, ""
	}
	return EventRejected, fmt.Sprintf("event_id %q is already recorded for another payment (%s/%s, txamt %d, txdtm %q)",
		e.EventID, prev.mchid, prev.outTradeNo, prev.txamt, prev.txdtm)
}

// recordedEvents returns what is already recorded for the batch's event_ids.
func recordedEvents(ctx context.Context, tx pgx.Tx, events []reversald.Event) (map[string]recordedEvent, error) {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.EventID
	}
	rows, err := tx.Query(ctx, `SELECT event_id, mchid, out_trade_no, txamt, txdtm FROM events WHERE event_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up recorded events: %w", err)
	}
	seen := map[string]recordedEvent{}
	var (
		id string
		r  recordedEvent
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &r.mchid, &r.outTradeNo, &r.txamt, &r.txdtm}, func() error {
		seen[id] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up recorded events: %w", err)
	}
	return seen, nil
}

// insertAttempts creates the attempts for keys that have none, from the first
// event of each key, and reports which keys it created.
func (s *Store) insertAttempts(ctx context.Context, tx pgx.Tx, events []reversald.Event, keys []attemptKey, firstOfKey map[attemptKey]int, now time.Time) (map[attemptKey]bool, error) {
	n := len(keys)
	mchid, otn, syssn, currcd, dtm, ptype, udid := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amt := make([]int64, n)
	for j, k := range keys {
		e := events[firstOfKey[k]]
		mchid[j], otn[j], syssn[j], amt[j], currcd[j], dtm[j], ptype[j], udid[j] =
			e.MchID, e.OutTradeNo, e.Syssn, e.TxAmt, e.TxCurrCd, e.TxDtm, e.PayType, e.Udid
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO attempts (mchid, out_trade_no, syssn, txamt, txcurrcd, txdtm, pay_type, udid,
		                      next_run_at, deadline_at, first_seen_at, updated_at)
		SELECT k.*, $9::timestamptz, $9::timestamptz + $10::interval, $9::timestamptz, $9::timestamptz
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
		     AS k(mchid, out_trade_no, syssn, txamt, txcurrcd, txdtm, pay_type, udid)
		ORDER BY k.mchid, k.out_trade_no
		ON CONFLICT (mchid, out_trade_no) DO NOTHING
		RETURNING mchid, out_trade_no`,
		mchid, otn, syssn, amt, currcd, dtm, ptype, udid, now, s.deadline)
	if err != nil {
		return nil, fmt.Errorf("insert attempts: %w", err)
	}
	created := make(map[attemptKey]bool, n)
	var k attemptKey
	_, err = pgx.ForEachRow(rows, []any{&k.mchid, &k.outTradeNo}, func() error {
		created[k] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert attempts: %w", err)
	}
	return created, nil
}

type lockedAttempt struct {
	id    int64
	txamt int64
	txdtm string
}

// lockAttempts reads the attempts for keys and holds a share lock on them
// until commit, so that an attempt cannot become final between this read and
// the outbox decision made from it (the executor's final write waits for us,
// or we wait for it and read its result).
func lockAttempts(ctx context.Context, tx pgx.Tx, keys []attemptKey) (map[attemptKey]lockedAttempt, error) {
	mchid, otn := make([]string, len(keys)), make([]string, len(keys))
	for j, k := range keys {
		mchid[j], otn[j] = k.mchid, k.outTradeNo
	}
	rows, err := tx.Query(ctx, `
		SELECT a.id, a.mchid, a.out_trade_no, a.txamt, a.txdtm
		FROM attempts a
		JOIN unnest($1::text[], $2::text[]) AS k(mchid, out_trade_no)
		  ON a.mchid = k.mchid AND a.out_trade_no = k.out_trade_no
		ORDER BY a.id
		FOR SHARE OF a`, mchid, otn)
	if err != nil {
		return nil, fmt.Errorf("lock attempts: %w", err)
	}
	known := make(map[attemptKey]lockedAttempt, len(keys))
	var (
		k attemptKey
		a lockedAttempt
	)
	_, err = pgx.ForEachRow(rows, []any{&a.id, &k.mchid, &k.outTradeNo, &a.txamt, &a.txdtm}, func() error {
		known[k] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock attempts: %w", err)
	}
	return known, nil
}

func conflictReason(a lockedAttempt, e reversald.Event) string {
	switch {
	case a.txamt != e.TxAmt && a.txdtm != e.TxDtm:
		return fmt.Sprintf("conflicting duplicate: txamt %d and txdtm %q differ from the first event's %d and %q", e.TxAmt, e.TxDtm, a.txamt, a.txdtm)
	case a.txamt != e.TxAmt:
		return fmt.Sprintf("conflicting duplicate: txamt %d differs from the first event's %d", e.TxAmt, a.txamt)
	case a.txdtm != e.TxDtm:
		return fmt.Sprintf("conflicting duplicate: txdtm %q differs from the first event's %q", e.TxDtm, a.txdtm)
	}
	return ""
}

// eventRows gathers the columns of the events table for one unnest insert.
type eventRows struct {
	id, mchid, otn, syssn, currcd, dtm, ptype, reason, topic, conflictReason []string
	attempt, amt, offset                                                     []int64
	partition                                                                []int32
	conflict                                                                 []bool
	occurred, received                                                       []*time.Time
	payload                                                                  [][]byte
}

func (r *eventRows) add(e reversald.Event, attemptID int64, conflict bool, reason string, now time.Time) {
	if !conflict {
		reason = ""
	}
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
	r.conflict = append(r.conflict, conflict)
	r.conflictReason = append(r.conflictReason, reason)
	r.payload = append(r.payload, e.Source.Payload)
	r.received = append(r.received, &now)
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
		                    conflict, conflict_reason, payload, received_at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[],
		                     $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[],
		                     $13::int[], $14::bigint[], $15::bool[], $16::text[], $17::bytea[], $18::timestamptz[])
		ON CONFLICT (event_id) DO NOTHING
		RETURNING event_id`,
		r.id, r.attempt, r.mchid, r.otn, r.syssn, r.amt, r.currcd, r.dtm, r.ptype, r.reason, r.occurred,
		r.topic, r.partition, r.offset, r.conflict, r.conflictReason, r.payload, r.received)
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

func (r *eventRows) newIDs(inserted map[string]bool) []string {
	ids := make([]string, 0, len(inserted))
	for _, id := range r.id {
		if inserted[id] {
			ids = append(ids, id)
		}
	}
	return ids
}
