package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/testclock"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// pathDB is a store on a database of its own, and a session to read its rows.
type pathDB struct {
	s    *store.Store
	conn *pgx.Conn
}

func newPathDB(t *testing.T, clk *testclock.Clock) pathDB {
	t.Helper()
	ctx := context.Background()
	u := storetest.URL(t)
	s, err := store.Open(ctx, u, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return pathDB{s: s, conn: conn}
}

// rows is every row intake writes, as JSON, each table in key order, with
// attempt ids replaced by the attempt's key (the two paths number attempts
// apart: the upsert path spends a sequence value on each key that exists).
func (d pathDB) rows(t *testing.T) string {
	t.Helper()
	var attempts, events, outbox string
	err := d.conn.QueryRow(context.Background(), `
		SELECT
		  (SELECT coalesce(jsonb_agg(to_jsonb(a) - 'id' ORDER BY a.mchid, a.out_trade_no), '[]')::text FROM attempts a),
		  (SELECT coalesce(jsonb_agg(to_jsonb(e) - 'attempt_id' || jsonb_build_object('attempt', a.mchid || '/' || a.out_trade_no)
		                             ORDER BY e.event_id), '[]')::text
		   FROM events e JOIN attempts a ON a.id = e.attempt_id),
		  (SELECT coalesce(jsonb_agg(to_jsonb(o) - 'id' - 'attempt_id' - 'created_at' || jsonb_build_object('attempt', a.mchid || '/' || a.out_trade_no)
		                             ORDER BY o.event_id), '[]')::text
		   FROM outbox o JOIN attempts a ON a.id = o.attempt_id)`).Scan(&attempts, &events, &outbox)
	if err != nil {
		t.Fatal(err)
	}
	return "attempts " + attempts + "\nevents " + events + "\noutbox " + outbox
}

// keysOf names the attempts ids stand for by their key.
func (d pathDB) keysOf(t *testing.T, ids []int64) []string {
	t.Helper()
	keys := make([]string, len(ids))
	for i, id := range ids {
		if err := d.conn.QueryRow(context.Background(), `SELECT mchid || '/' || out_trade_no FROM attempts WHERE id = $1`, id).Scan(&keys[i]); err != nil {
			t.Fatalf("attempt %d: %v", id, err)
		}
	}
	return keys
}

// TestIntakeCopyPathWritesWhatUpsertPathWrites: the same batches of new
// attempts, attached events, in-batch repeats, conflicting duplicates,
// events for a final attempt, a redelivery and event_ids reused for other
// payments, written through the copy path into one database and through the
// upsert path (the statements intake ran before the copy path) into another,
// give the same statuses, reasons, new attempts and rows.
func TestIntakeCopyPathWritesWhatUpsertPathWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := testclock.New(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	viaCopy, viaUpsert := newPathDB(t, clk), newPathDB(t, clk)

	full := event("f1", "B", 100)
	full.Syssn, full.Udid, full.Reason, full.MchID = "20261122000100020001", "POS-7", "timeout", "M2"
	full.OccurredAt = time.Date(2026, 11, 22, 9, 59, 30, 123456000, time.UTC)
	full.Trace = reversald.TraceContext{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", State: "k=v"}
	full.Source = reversald.Source{Topic: "payment-uncertain", Partition: 3, Offset: 77, Payload: []byte(`{"x":1}`)}
	noPayload := event("n1", "C", 300)
	noPayload.MchID, noPayload.Source.Payload = "", nil
	attachedB := full
	attachedB.EventID, attachedB.Trace = "f2", reversald.TraceContext{}

	batches := []struct {
		name   string
		events []reversald.Event
		copied bool // the copy path takes the batch
		before func(d pathDB) error
	}{{
		name: "new attempts, attached, repeat, conflict",
		events: []reversald.Event{
			event("e1", "A", 2500), event("e2", "A", 2500), event("e1", "A", 2500), event("e3", "A", 2600),
			full, noPayload, event("e9", "D", 100), event("e9", "E", 100),
		},
		copied: true,
	}, {
		name: "events for existing attempts and new ones",
		events: []reversald.Event{
			event("e4", "A", 2500), attachedB, event("e5", "D", 999), event("e6", "F", 10), event("e7", "F", 10),
		},
		copied: true,
	}, {
		name: "events for a final attempt",
		before: func(d pathDB) error {
			_, err := d.conn.Exec(ctx, `UPDATE attempts SET status = 'paid', step = 'done', respcd = '0000', decided_at = $1
				WHERE mchid = 'MNxMp11FV35qQN' AND out_trade_no = 'A'`, clk.Now())
			return err
		},
		events: []reversald.Event{event("e8", "A", 2500), event("e10", "A", 1), event("e11", "G", 50)},
		copied: true,
	}, {
		name: "redelivery with reused event_ids",
		events: []reversald.Event{
			event("e1", "A", 2500), event("e12", "H", 5), event("e6", "X", 5), event("e13", "D", 100), event("e3", "A", 2600),
		},
		copied: false,
	}}
	for _, bt := range batches {
		clk.Advance(time.Second)
		var (
			res    [2]store.IntakeResult
			copied [2]bool
		)
		for i, d := range []pathDB{viaCopy, viaUpsert} {
			if bt.before != nil {
				if err := bt.before(d); err != nil {
					t.Fatalf("%s: %v", bt.name, err)
				}
			}
			var err error
			res[i], copied[i], err = store.IntakeVia(ctx, d.s, bt.events, i == 0)
			if err != nil {
				t.Fatalf("%s: %v", bt.name, err)
			}
		}
		if copied[0] != bt.copied || copied[1] {
			t.Fatalf("%s: copy path took it %v, upsert path %v; want %v and false", bt.name, copied[0], copied[1], bt.copied)
		}
		if got, want := fmt.Sprint(res[0].Statuses, res[0].Reasons), fmt.Sprint(res[1].Statuses, res[1].Reasons); got != want {
			t.Errorf("%s: copy path says %s\nupsert path says %s", bt.name, got, want)
		}
		if got, want := fmt.Sprint(viaCopy.keysOf(t, res[0].NewAttempts)), fmt.Sprint(viaUpsert.keysOf(t, res[1].NewAttempts)); got != want {
			t.Errorf("%s: copy path created %s, upsert path %s", bt.name, got, want)
		}
		if got, want := viaCopy.rows(t), viaUpsert.rows(t); got != want {
			t.Fatalf("%s: rows differ\ncopy path:\n%s\nupsert path:\n%s", bt.name, got, want)
		}
	}
	// The batches met every case: the comparison is not between two empty sets.
	var attempts, events, outcomes, conflicts int
	if err := viaCopy.conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM events),
		(SELECT count(*) FROM outbox), (SELECT count(*) FROM events WHERE conflict)`).Scan(&attempts, &events, &outcomes, &conflicts); err != nil {
		t.Fatal(err)
	}
	if attempts != 7 || events != 16 || outcomes != 4 || conflicts != 3 {
		t.Errorf("attempts %d, events %d, outcomes %d, conflicts %d; want 7, 16, 4, 3", attempts, events, outcomes, conflicts)
	}
}

// TestIntakeCopyPathRaceFallsBack: an event_id written by another
// transaction after the copy path's probe read none makes the copy fail on
// the unique index; the batch is run again on the upsert path and the event
// is a duplicate, recorded once.
func TestIntakeCopyPathRaceFallsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := storetest.URL(t)
	s, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })

	// Another instance records r1 (and its attempt) but has not committed:
	// our probe cannot see it, our copy waits for it.
	otherConn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otherConn.Close(context.Background()) })
	other, err := otherConn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Rollback(context.Background()) }) //nolint:errcheck // committed below unless the test failed
	if _, err := other.Exec(ctx, `
		WITH a AS (INSERT INTO attempts (mchid, out_trade_no, txamt, txdtm, next_run_at, deadline_at, first_seen_at, updated_at)
		           VALUES ('MNxMp11FV35qQN', 'R', 100, '2026-11-22 09:59:00', now(), now() + interval '1 day', now(), now()) RETURNING id)
		INSERT INTO events (event_id, attempt_id, mchid, out_trade_no, txamt, txdtm, received_at)
		SELECT 'r1', a.id, 'MNxMp11FV35qQN', 'R', 100, '2026-11-22 09:59:00', now() FROM a`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		res store.IntakeResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := s.Intake(ctx, []reversald.Event{event("r1", "R", 100), event("r2", "S", 100)})
		done <- result{res, err}
	}()
	// Wait (bounded) until intake waits on a lock the other transaction holds.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("intake returned before the other transaction committed: %+v", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("intake never waited for the other transaction")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if want := []store.EventStatus{store.EventDuplicate, store.EventNew}; fmt.Sprint(r.res.Statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses = %v, want %v", r.res.Statuses, want)
	}
	var events, attempts int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM attempts)`).Scan(&events, &attempts); err != nil {
		t.Fatal(err)
	}
	if events != 2 || attempts != 2 {
		t.Fatalf("%d events, %d attempts; want 2 and 2 (r1 once, r2's new attempt)", events, attempts)
	}
}
