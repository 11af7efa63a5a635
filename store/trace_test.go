package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// TestTraceContextTravels: the trace context of an event is stored with it;
// the attempt takes the one of the event that created it, which a claim (by
// any instance) reads back; each outbox row carries its own event's context
// and the attempt's traceparent, whether it was queued by the final step or
// at intake (an event for an attempt already final). Events without one
// store nothing.
func TestTraceContextTravels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	tc := func(n string) reversald.TraceContext {
		return reversald.TraceContext{Parent: "00-" + n + "f92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "pos=" + n}
	}
	first, second, plain := event("t1", "TA", 2500), event("t2", "TA", 2500), event("t3", "TB", 2500)
	first.Trace, second.Trace = tc("1"), tc("2")
	if _, err := s.Intake(ctx, []reversald.Event{first, second, plain}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 10})
	if err != nil || len(got) != 2 {
		t.Fatalf("claim: %v %v", got, err)
	}
	for _, a := range got {
		want := reversald.TraceContext{}
		if a.OutTradeNo == "TA" {
			want = tc("1") // the first event's, not the second's
		}
		if a.Trace != want {
			t.Errorf("attempt %s: trace %+v, want %+v", a.OutTradeNo, a.Trace, want)
		}
		a.Status, a.Step = reversald.StatusPaid, reversald.StepDone
		if err := s.WriteStep(ctx, store.Step{Attempt: a}); err != nil {
			t.Fatal(err)
		}
	}
	late := event("t4", "TA", 2500) // the attempt is final: its outcome is queued at intake
	late.Trace = tc("4")
	if _, err := s.Intake(ctx, []reversald.Event{late}); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]reversald.TraceContext{
		"t1": {tc("1"), {Parent: tc("1").Parent}},
		"t2": {tc("2"), {Parent: tc("1").Parent}},
		"t3": {},
		"t4": {tc("4"), {Parent: tc("1").Parent}},
	}
	recs := drain(t, s)
	if len(recs) != len(want) {
		t.Fatalf("%d outcomes, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		if w := want[r.EventID]; r.Trace != w[0] || r.AttemptTrace != w[1] {
			t.Errorf("outcome of %s: trace %+v, attempt trace %+v; want %+v, %+v", r.EventID, r.Trace, r.AttemptTrace, w[0], w[1])
		}
	}
}
