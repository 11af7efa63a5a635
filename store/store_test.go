package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/testclock"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

func newStore(t *testing.T) (*store.Store, *testclock.Clock) {
	t.Helper()
	c := testclock.New(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	return storetest.New(t, store.Options{Now: c.Now}), c
}

func event(id, otn string, amt int64) reversald.Event {
	return reversald.Event{
		EventID: id, MchID: "MNxMp11FV35qQN", OutTradeNo: otn, TxAmt: amt, TxCurrCd: "HKD",
		TxDtm: "2026-11-22 09:59:00", PayType: "800101",
		Source: reversald.Source{Topic: "payment-uncertain", Payload: []byte(`{}`)},
	}
}

func TestIntakeTellsNewAttachedDuplicateAndConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)

	res, err := s.Intake(ctx, []reversald.Event{
		event("e1", "A", 2500),
		event("e2", "A", 2500), // same payment, second POS event
		event("e1", "A", 2500), // redelivered within the batch
		event("e3", "A", 2600), // same key, different amount
		event("e4", "B", 100),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.EventStatus{store.EventNew, store.EventAttached, store.EventDuplicate, store.EventConflict, store.EventNew}
	if fmt.Sprint(res.Statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses = %v, want %v", res.Statuses, want)
	}
	if len(res.NewAttempts) != 2 {
		t.Fatalf("new attempts = %v, want 2", res.NewAttempts)
	}

	// The same batch again: everything is a duplicate, nothing is created.
	res, err = s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e3", "A", 2600), event("e4", "B", 100)})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range res.Statuses {
		if st != store.EventDuplicate {
			t.Errorf("redelivered event %d: status %v, want duplicate", i, st)
		}
	}
	if len(res.NewAttempts) != 0 {
		t.Errorf("redelivery created attempts %v", res.NewAttempts)
	}

	// The conflict did not touch the first attempt and is already queued as needs_review.
	a, err := s.Find(ctx, "MNxMp11FV35qQN", "A")
	if err != nil {
		t.Fatal(err)
	}
	if a.TxAmt != 2500 || a.Status != reversald.StatusPending {
		t.Errorf("attempt A = %d %s, want 2500 pending", a.TxAmt, a.Status)
	}
	recs := drain(t, s)
	if len(recs) != 1 || recs[0].EventID != "e3" || recs[0].Status != reversald.StatusNeedsReview || recs[0].TxAmt != 2600 {
		t.Fatalf("outbox = %+v, want one needs_review outcome for e3 with txamt 2600", recs)
	}
	if recs[0].Reason == "" {
		t.Error("conflict outcome has no reason")
	}
	if !recs[0].DecidedAt.Equal(clk.Now()) || recs[0].QFPayTxAmt != 0 || recs[0].QFPayTxCurrCd != "" {
		t.Errorf("conflict outcome decided %v with QFPay's %d %q; want decided at intake (%v), no record read",
			recs[0].DecidedAt, recs[0].QFPayTxAmt, recs[0].QFPayTxCurrCd, clk.Now())
	}
}

func TestClaimLeasesSkipsHeldAndFences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "B", 300)}); err != nil {
		t.Fatal(err)
	}
	w1, err := s.Claim(ctx, store.Claim{Owner: "w1", Lease: 30 * time.Second, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(w1) != 2 || w1[0].Token != 1 || w1[0].LeaseOwner != "w1" {
		t.Fatalf("w1 claimed %+v", w1)
	}
	// A claimed attempt is next due when its lease ends (the README's
	// "next run" of an attempt being worked).
	for _, a := range w1 {
		if want := clk.Now().Add(30 * time.Second); !a.NextRunAt.Equal(want) || !a.LeaseExpiresAt.Equal(want) {
			t.Errorf("claimed %s: next run %s, lease until %s; want both %s", a.OutTradeNo, a.NextRunAt, a.LeaseExpiresAt, want)
		}
	}
	// Held leases are not handed out again, by due time or by id.
	if got, err := s.Claim(ctx, store.Claim{Owner: "w2", Lease: 30 * time.Second, Limit: 10}); err != nil || len(got) != 0 {
		t.Fatalf("w2 claimed %d (%v) while w1 holds the leases", len(got), err)
	}
	if got, err := s.Claim(ctx, store.Claim{Owner: "w2", Lease: 30 * time.Second, Limit: 10, IDs: []int64{w1[0].ID}}); err != nil || len(got) != 0 {
		t.Fatalf("w2 claimed %d by id (%v) while w1 holds the lease", len(got), err)
	}

	// w1 stalls past its lease; w2 takes over; w1's late write changes nothing.
	clk.Advance(31 * time.Second)
	w2, err := s.Claim(ctx, store.Claim{Owner: "w2", Lease: 30 * time.Second, Limit: 10, IDs: []int64{w1[0].ID}})
	if err != nil || len(w2) != 1 || w2[0].Token != 2 {
		t.Fatalf("takeover = %+v, %v; want token 2", w2, err)
	}
	stale := w1[0]
	stale.Status, stale.Step, stale.Reason = reversald.StatusReversed, reversald.StepDone, "stale worker"
	call := reversald.Call{Step: "cancel", Endpoint: "reversal", Request: map[string]string{"out_trade_no": "A"}, Respcd: "0000", At: clk.Now()}
	err = s.WriteStep(ctx, store.Step{Attempt: stale, Calls: []reversald.Call{call}})
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale write: err = %v, want ErrFenced", err)
	}
	h, err := s.History(ctx, stale.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h.Attempt.Status != reversald.StatusPending || h.Attempt.LeaseOwner != "w2" || h.Attempt.GatewayCalls != 0 {
		t.Errorf("stale write changed the attempt: %+v", h.Attempt)
	}
	if len(h.Outcomes) != 0 {
		t.Errorf("stale write queued outcomes: %+v", h.Outcomes)
	}
	if len(h.Calls) != 1 || !h.Calls[0].FencedOut || h.Calls[0].Token != 1 {
		t.Errorf("fenced-out call audit = %+v, want one row marked fenced out with token 1", h.Calls)
	}

	// The owner's write lands.
	cur := w2[0]
	cur.Status, cur.Step, cur.Method, cur.Respcd = reversald.StatusReversed, reversald.StepDone, "reversal", "0000"
	if err := s.WriteStep(ctx, store.Step{Attempt: cur, Calls: []reversald.Call{call}}); err != nil {
		t.Fatalf("owner write: %v", err)
	}
}

// TestIntakeRejectsReusedEventID: an event_id already recorded for another
// payment is refused with a reason (intake dead-letters it); it neither
// creates an attempt nor passes for a duplicate.
func TestIntakeRejectsReusedEventID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "B", 700), event("e1", "A", 2500), event("e2", "C", 1)})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.EventStatus{store.EventRejected, store.EventDuplicate, store.EventNew}
	if fmt.Sprint(res.Statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses = %v, want %v", res.Statuses, want)
	}
	if res.Reasons[0] == "" || len(res.NewAttempts) != 1 {
		t.Fatalf("reason %q, new attempts %v", res.Reasons[0], res.NewAttempts)
	}
	if _, err := s.Find(ctx, "MNxMp11FV35qQN", "B"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the rejected event created an attempt: %v", err)
	}
	// The same within one batch.
	res, err = s.Intake(ctx, []reversald.Event{event("e9", "D", 100), event("e9", "E", 100)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.EventStatus{store.EventNew, store.EventRejected}; fmt.Sprint(res.Statuses) != fmt.Sprint(want) {
		t.Fatalf("in-batch reuse: statuses = %v, want %v", res.Statuses, want)
	}
}

// TestWriteStepCleansGatewayText: a NUL or an endless message from the
// gateway must not make every write of the attempt fail.
func TestWriteStepCleansGatewayText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	a := got[0]
	a.Status, a.Step = reversald.StatusNeedsReview, reversald.StepDone
	a.Resperr, a.Respmsg = "bad\x00thing", strings.Repeat("é", 5000)
	call := reversald.Call{Step: "query", Endpoint: "query", Error: "nul\x00here", Respcd: "1108"}
	if err := s.WriteStep(ctx, store.Step{Attempt: a, Calls: []reversald.Call{call}}); err != nil {
		t.Fatalf("write with gateway text: %v", err)
	}
	b, _ := s.Get(ctx, a.ID)
	if b.Resperr != "badthing" || len(b.Respmsg) > 512 || !utf8.ValidString(b.Respmsg) {
		t.Errorf("stored resperr %q, respmsg of %d bytes", b.Resperr, len(b.Respmsg))
	}
}

func TestClaimByIDWaitsForDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	a := got[0]
	a.NextRunAt = clk.Now().Add(time.Hour) // backed off
	if err := s.WriteStep(ctx, store.Step{Attempt: a}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1, IDs: res.NewAttempts}); err != nil || len(got) != 0 {
		t.Fatalf("a stale hand-off claimed a backed-off attempt: %v %v", got, err)
	}
}

func TestFinalStepQueuesOneOutcomePerEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "A", 2500), event("e3", "A", 1)}); err != nil {
		t.Fatal(err)
	}
	drain(t, s) // the conflict's outcome
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	a := got[0]
	a.Status, a.Step, a.Method, a.CancelSyssn, a.Respcd = reversald.StatusClosed, reversald.StepDone, "close", "CSN1", "0000"
	a.RecordTxAmt, a.RecordTxCurrCd = 2500, "HKD" // the payment record the query read
	calls := []reversald.Call{{Step: "query", Endpoint: "query"}, {Step: "cancel", Endpoint: "close", Respcd: "0000"}}
	a.GatewayCalls += len(calls) // the executor counts the calls it makes
	if err := s.WriteStep(ctx, store.Step{Attempt: a, Calls: calls}); err != nil {
		t.Fatal(err)
	}
	recs := drain(t, s)
	if len(recs) != 2 {
		t.Fatalf("outcomes = %d, want 2 (one per non-conflicting event)", len(recs))
	}
	for _, r := range recs {
		if r.Status != reversald.StatusClosed || r.CancelSyssn != "CSN1" || r.GatewayCalls != 2 || r.DecidedAt.IsZero() ||
			r.QFPayTxAmt != 2500 || r.QFPayTxCurrCd != "HKD" {
			t.Errorf("outcome %+v", r)
		}
	}
	// A late event for the final attempt gets the same outcome at once; a late
	// conflicting one gets needs_review. Both carry QFPay's amount as last read.
	clk.Advance(time.Minute)
	if _, err := s.Intake(ctx, []reversald.Event{event("e4", "A", 2500), event("e5", "A", 7)}); err != nil {
		t.Fatal(err)
	}
	recs = drain(t, s)
	late := map[string]store.OutboxRecord{}
	for _, r := range recs {
		late[r.EventID] = r
	}
	if e4, e5 := late["e4"], late["e5"]; len(recs) != 2 || e4.Status != reversald.StatusClosed || e4.CancelSyssn != "CSN1" ||
		e5.Status != reversald.StatusNeedsReview || !e5.DecidedAt.Equal(clk.Now()) {
		t.Fatalf("late event outcomes = %+v", recs)
	}
	for _, r := range recs {
		if r.QFPayTxAmt != 2500 || r.QFPayTxCurrCd != "HKD" {
			t.Errorf("late event %s: QFPay's amount %d %q, want the attempt's last read 2500 HKD", r.EventID, r.QFPayTxAmt, r.QFPayTxCurrCd)
		}
	}
}

func TestPublishOutboxMarksOnlyAfterSuccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "A", 1)}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("broker down")
	n, err := s.PublishOutbox(ctx, 10, func(context.Context, []store.OutboxRecord) error { return boom })
	if !errors.Is(err, boom) || n != 0 {
		t.Fatalf("failed publish: n=%d err=%v", n, err)
	}
	if b, _ := s.Backlog(ctx); b.Outbox != 1 {
		t.Fatalf("backlog after failed publish = %d, want 1", b.Outbox)
	}
	if got := drain(t, s); len(got) != 1 {
		t.Fatalf("published %d, want 1", len(got))
	}
	if b, _ := s.Backlog(ctx); b.Outbox != 0 {
		t.Fatalf("backlog after publish = %d, want 0", b.Outbox)
	}
}

func TestRetryOnlyNeedsReview(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.NewAttempts[0]
	if err := s.Retry(ctx, id, ops); !errors.Is(err, store.ErrNotRetryable) {
		t.Fatalf("retry pending: %v, want ErrNotRetryable", err)
	}
	if err := s.Retry(ctx, 999999, ops); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retry missing: %v, want ErrNotFound", err)
	}
	got, _ := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	a := got[0]
	a.Status, a.Step, a.Reason = reversald.StatusNeedsReview, reversald.StepDone, "respcd 1108: signature"
	if err := s.WriteStep(ctx, store.Step{Attempt: a}); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(ctx, id, ops); err != nil {
		t.Fatal(err)
	}
	b, _ := s.Get(ctx, id)
	if b.Status != reversald.StatusPending || b.Step != reversald.StepQuery || !b.DecidedAt.IsZero() || b.Token != a.Token+1 {
		t.Fatalf("after retry: %+v", b)
	}
	list, err := s.List(ctx, reversald.StatusPending, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("list pending = %d, %v", len(list), err)
	}
}

// drain publishes and returns everything in the outbox.
func drain(t *testing.T, s *store.Store) []store.OutboxRecord {
	t.Helper()
	var all []store.OutboxRecord
	for {
		n, err := s.PublishOutbox(context.Background(), 100, func(_ context.Context, recs []store.OutboxRecord) error {
			all = append(all, recs...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return all
		}
	}
}

// TestIntakeConcurrentReuse: two batches (two partitions) record the same
// event_id for different payments at the same time. One wins; the other is
// refused, never taken for a duplicate (which would drop a payment silently).
func TestIntakeConcurrentReuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	for i := range 10 {
		id := fmt.Sprintf("race-%d", i)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   [2]store.EventStatus
			errs  [2]error
		)
		for j, otn := range []string{"RA" + id, "RB" + id} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := s.Intake(ctx, []reversald.Event{event(id, otn, 100)})
				errs[j] = err
				if err == nil {
					got[j] = res.Statuses[0]
				}
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v / %v", i, errs[0], errs[1])
		}
		if one := map[store.EventStatus]int{got[0]: 1, got[1]: 1}; one[store.EventNew] != 1 || one[store.EventRejected] != 1 {
			t.Fatalf("round %d: statuses %v; want one new and one rejected", i, got)
		}
	}
}

// ops is the operator of the store tests' retries.
var ops = store.Operator{Name: "tester", Note: "checked by hand"}
