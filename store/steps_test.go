package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// TestWriteStepsFencesEachStep: the steps of several workers in one batch
// (one round trip, one commit) are each fenced by their own token: a stale
// worker's step changes nothing, its calls are kept as fenced out, and it
// alone learns that it lost its lease; the current owner's step of the same
// attempt, and the other attempts' steps, land.
func TestWriteStepsFencesEachStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "B", 300), event("e3", "C", 700)}); err != nil {
		t.Fatal(err)
	}
	w1, err := s.Claim(ctx, store.Claim{Owner: "w1", Lease: 30 * time.Second, Limit: 10})
	if err != nil || len(w1) != 3 {
		t.Fatalf("w1 claimed %d: %v", len(w1), err)
	}
	clk.Advance(31 * time.Second)
	w2, err := s.Claim(ctx, store.Claim{Owner: "w2", Lease: 30 * time.Second, Limit: 1, IDs: []int64{w1[0].ID}})
	if err != nil || len(w2) != 1 || w2[0].Token != 2 {
		t.Fatalf("takeover = %+v, %v; want token 2", w2, err)
	}
	call := func(step reversald.Step, endpoint, respcd string) reversald.Call {
		return reversald.Call{Step: step, Endpoint: endpoint, Request: map[string]string{"out_trade_no": "x"}, Respcd: respcd, At: clk.Now()}
	}

	stale := w1[0] // w1's late answer for A: it would settle it
	stale.Status, stale.Step, stale.Method, stale.Reason = reversald.StatusReversed, reversald.StepDone, "reversal", "stale worker"
	stale.GatewayCalls++
	owner := w2[0] // w2's intent to cancel A, lease kept
	owner.Step, owner.CancelPending, owner.CancelCalls, owner.Method = reversald.StepCancel, true, 1, "reversal"
	owner.GatewayCalls++
	b := w1[1] // B final
	b.Status, b.Step, b.Method, b.CancelSyssn, b.Respcd = reversald.StatusClosed, reversald.StepDone, "close", "CSN-B", "0000"
	b.GatewayCalls += 2
	c := w1[2] // C scheduled for later
	c.Rechecks, c.NextRunAt, c.Reason = 1, clk.Now().Add(time.Minute), "in flight"
	c.GatewayCalls++

	errs := s.WriteSteps(ctx, []store.Step{
		{Attempt: stale, Calls: []reversald.Call{call(reversald.StepConfirm, "query", "0000")}},
		{Attempt: owner, Calls: []reversald.Call{call(reversald.StepQuery, "query", "1143")}, KeepLease: true, Lease: 30 * time.Second},
		{Attempt: b, Calls: []reversald.Call{call(reversald.StepCancel, "close", "0000"), call(reversald.StepConfirm, "query", "0000")}},
		{Attempt: c, Calls: []reversald.Call{call(reversald.StepQuery, "query", "1143")}, Now: clk.Now()},
	})
	if len(errs) != 4 || !errors.Is(errs[0], store.ErrFenced) || errs[1] != nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("results = %v, want [ErrFenced nil nil nil]", errs)
	}

	hA, err := s.History(ctx, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a := hA.Attempt; a.Status != reversald.StatusPending || !a.CancelPending || a.LeaseOwner != "w2" || a.Token != 2 ||
		!a.LeaseExpiresAt.Equal(clk.Now().Add(30*time.Second)) || a.Reason == "stale worker" {
		t.Errorf("A after the batch = %+v, want w2's intent with its lease renewed", a)
	}
	if len(hA.Outcomes) != 0 {
		t.Errorf("the stale step queued outcomes: %+v", hA.Outcomes)
	}
	fenced := map[int64]bool{}
	for _, r := range hA.Calls {
		fenced[r.Token] = r.FencedOut
	}
	if len(hA.Calls) != 2 || !fenced[1] || fenced[2] {
		t.Errorf("A's audit = %+v, want token 1's call fenced out and token 2's not", hA.Calls)
	}

	hB, err := s.History(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a := hB.Attempt; a.Status != reversald.StatusClosed || a.CancelSyssn != "CSN-B" || a.DecidedAt.IsZero() || a.LeaseOwner != "" || !a.LeaseExpiresAt.IsZero() {
		t.Errorf("B after the batch = %+v, want closed, decided, lease released", a)
	}
	if len(hB.Calls) != 2 || hB.Calls[0].Endpoint != "close" || hB.Calls[1].Endpoint != "query" || hB.Calls[0].FencedOut {
		t.Errorf("B's audit = %+v, want close then query, not fenced out", hB.Calls)
	}
	if recs := drain(t, s); len(recs) != 1 || recs[0].EventID != "e2" || recs[0].Status != reversald.StatusClosed || recs[0].GatewayCalls != 2 {
		t.Errorf("outcomes = %+v, want B's alone", recs)
	}

	gotC, err := s.Get(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gotC.Status != reversald.StatusPending || !gotC.NextRunAt.Equal(clk.Now().Add(time.Minute)) || gotC.Rechecks != 1 || gotC.LeaseOwner != "" {
		t.Errorf("C after the batch = %+v, want pending, re-checked in a minute, lease released", gotC)
	}
}

// TestWriteStepsOneBadStep: a step PostgreSQL refuses fails the batch's
// statement; every step is then written on its own, so the bad one gets
// its error and the others land.
func TestWriteStepsOneBadStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "B", 300), event("e3", "C", 700)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: 30 * time.Second, Limit: 10})
	if err != nil || len(got) != 3 {
		t.Fatalf("claimed %d: %v", len(got), err)
	}
	good1, bad, good2 := got[0], got[1], got[2]
	good1.Status, good1.Step = reversald.StatusPaid, reversald.StepDone
	bad.Status = "bogus" // the attempts table refuses it
	good2.Step, good2.CancelPending = reversald.StepCancel, true
	errs := s.WriteSteps(ctx, []store.Step{
		{Attempt: good1, Calls: []reversald.Call{{Step: reversald.StepQuery, Endpoint: "query", Respcd: "0000"}}},
		{Attempt: bad, Calls: []reversald.Call{{Step: reversald.StepQuery, Endpoint: "query"}}},
		{Attempt: good2, KeepLease: true, Lease: 30 * time.Second},
	})
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("results = %v, want the good steps written", errs)
	}
	if errs[1] == nil || errors.Is(errs[1], store.ErrFenced) {
		t.Fatalf("the bad step's result = %v, want PostgreSQL's refusal", errs[1])
	}
	if a, _ := s.Get(ctx, good1.ID); a.Status != reversald.StatusPaid {
		t.Errorf("good step 1: status %s", a.Status)
	}
	if a, _ := s.Get(ctx, good2.ID); !a.CancelPending || a.LeaseOwner != "w" {
		t.Errorf("good step 2: %+v", a)
	}
	h, err := s.History(ctx, bad.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h.Attempt.Status != reversald.StatusPending || len(h.Calls) != 0 {
		t.Errorf("the bad step left %+v and %d calls", h.Attempt, len(h.Calls))
	}
	if recs := drain(t, s); len(recs) != 1 || recs[0].EventID != "e1" {
		t.Errorf("outcomes = %+v, want e1's alone", recs)
	}
}

// TestWriteStepsStoresWhatWriteStepStores: for steps of every shape, an
// attempt written in a batch reads back as the same attempt written alone,
// calls and outcomes included.
func TestWriteStepsStoresWhatWriteStepStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	shapes := []func(a *reversald.Attempt) store.Step{
		func(a *reversald.Attempt) store.Step { // the intent before a cancel
			a.Step, a.CancelPending, a.CancelCalls, a.Method, a.BudgetCalls, a.GatewayCalls = reversald.StepCancel, true, 1, "reversal", 1, 1
			a.RecordRespcd, a.RecordCancel, a.RecordTxAmt, a.RecordTxCurrCd, a.Syssn, a.PayType = "1143", "0", 2500, "HKD", "SYS1", "800101"
			return store.Step{Attempt: *a, KeepLease: true, Lease: 40 * time.Second,
				Calls: []reversald.Call{{Step: reversald.StepQuery, Endpoint: "query", AppCode: "APP", Request: map[string]string{"out_trade_no": a.OutTradeNo},
					HTTPStatus: 200, Respcd: "0000", Response: []byte(`{"respcd":"0000"}`), Latency: 1500 * time.Microsecond, At: clk.Now()}}}
		},
		func(a *reversald.Attempt) store.Step { // final after a cancel
			a.Status, a.Step, a.Method, a.CancelSyssn, a.Respcd, a.Resperr, a.Respmsg = reversald.StatusReversed, reversald.StepDone, "reversal", "CSN", "0000", "ok", "done"
			a.CancelCalls, a.CancelReached, a.CancelRespcd, a.GatewayCalls, a.BudgetCalls, a.Reason = 1, true, "0000", 3, 3, "reversed"
			return store.Step{Attempt: *a, Now: clk.Now(), Calls: []reversald.Call{
				{Step: reversald.StepCancel, Endpoint: "reversal", Respcd: "0000", Error: "", At: clk.Now()},
				{Step: reversald.StepConfirm, Endpoint: "query", Respcd: "1143", Error: "in flight", HTTPStatus: 200, At: clk.Now()}}}
		},
		func(a *reversald.Attempt) store.Step { // a re-check later, on the writer's clock
			a.Rechecks, a.NextRunAt, a.Reason, a.GatewayCalls = 2, clk.Now().Add(90*time.Second), "not yet", 1
			return store.Step{Attempt: *a, Now: clk.Now().Add(-5 * time.Second)}
		},
		func(a *reversald.Attempt) store.Step { // needs review, no call
			a.Status, a.Step, a.Reason = reversald.StatusNeedsReview, reversald.StepDone, "deadline passed"
			return store.Step{Attempt: *a}
		},
	}
	var events []reversald.Event
	for i := range shapes {
		events = append(events, event(fmt.Sprintf("alone-%d", i), fmt.Sprintf("AL%d", i), 2500), event(fmt.Sprintf("batch-%d", i), fmt.Sprintf("BA%d", i), 2500))
	}
	if _, err := s.Intake(ctx, events); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: 30 * time.Second, Limit: 100})
	if err != nil || len(got) != 2*len(shapes) {
		t.Fatalf("claimed %d: %v", len(got), err)
	}
	byOTN := map[string]reversald.Attempt{}
	for _, a := range got {
		byOTN[a.OutTradeNo] = a
	}
	var batch []store.Step
	for i, shape := range shapes {
		alone, inBatch := byOTN[fmt.Sprintf("AL%d", i)], byOTN[fmt.Sprintf("BA%d", i)]
		if err := s.WriteStep(ctx, shape(&alone)); err != nil {
			t.Fatalf("shape %d alone: %v", i, err)
		}
		batch = append(batch, shape(&inBatch))
	}
	for i, err := range s.WriteSteps(ctx, batch) {
		if err != nil {
			t.Fatalf("shape %d in the batch: %v", i, err)
		}
	}
	outcomes := map[string]store.OutboxRecord{}
	for _, r := range drain(t, s) {
		outcomes[r.OutTradeNo] = r
	}
	for i := range shapes {
		alone, err := s.History(ctx, byOTN[fmt.Sprintf("AL%d", i)].ID)
		if err != nil {
			t.Fatal(err)
		}
		inBatch, err := s.History(ctx, byOTN[fmt.Sprintf("BA%d", i)].ID)
		if err != nil {
			t.Fatal(err)
		}
		same := func(a reversald.Attempt) reversald.Attempt {
			a.ID, a.OutTradeNo, a.UpdatedAt = 0, "", time.Time{}
			return a
		}
		if x, y := same(alone.Attempt), same(inBatch.Attempt); !reflect.DeepEqual(x, y) {
			t.Errorf("shape %d: alone %+v\nin a batch %+v", i, x, y)
		}
		if len(alone.Calls) != len(inBatch.Calls) {
			t.Fatalf("shape %d: %d calls alone, %d in a batch", i, len(alone.Calls), len(inBatch.Calls))
		}
		for j := range alone.Calls {
			x, y := alone.Calls[j], inBatch.Calls[j]
			x.Request, y.Request = nil, nil // they name their own out_trade_no
			if !reflect.DeepEqual(x, y) {
				t.Errorf("shape %d call %d: alone %+v\nin a batch %+v", i, j, x, y)
			}
		}
		x, okX := outcomes[fmt.Sprintf("AL%d", i)]
		y, okY := outcomes[fmt.Sprintf("BA%d", i)]
		if okX != okY || x.Status != y.Status || x.Reason != y.Reason || x.GatewayCalls != y.GatewayCalls || !x.DecidedAt.Equal(y.DecidedAt) {
			t.Errorf("shape %d: outcome alone %v %+v, in a batch %v %+v", i, okX, x, okY, y)
		}
	}
}
