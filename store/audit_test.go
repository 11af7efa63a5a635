package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// TestAuditKeepsTheAppCode: each gateway call's row names the app code that
// signed it (several merchant credentials), and History reads it back.
func TestAuditKeepsTheAppCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	a := got[0]
	a.Status, a.Step = reversald.StatusNeedsReview, reversald.StepDone
	calls := []reversald.Call{
		{Step: "query", Endpoint: "query", AppCode: "APPHK", Request: map[string]string{"out_trade_no": "A"}, Respcd: "0000", At: clk.Now()},
		{Step: "query", Endpoint: "query", AppCode: "APPSG", Request: map[string]string{"out_trade_no": "A"}, Respcd: "1108", At: clk.Now()},
		{Step: "query", Endpoint: "query", Request: map[string]string{"out_trade_no": "A"}, At: clk.Now()},
	}
	a.GatewayCalls = len(calls)
	if err := s.WriteStep(ctx, store.Step{Attempt: a, Calls: calls}); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Calls) != 3 || h.Calls[0].AppCode != "APPHK" || h.Calls[1].AppCode != "APPSG" || h.Calls[2].AppCode != "" {
		t.Errorf("audit app codes = %+v, want APPHK, APPSG and none", h.Calls)
	}
}
