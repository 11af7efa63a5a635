package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// TestRetryKeepsTheCancelHistory: an operator retry of an attempt that sent
// cancels keeps their count and that they may have reached QFPay (so the
// bound holds over the attempt's whole life and "no record" can never become
// not_found), and gives it a fresh gateway-call budget.
func TestRetryKeepsTheCancelHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.NewAttempts[0]
	got, _ := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	a := got[0]
	a.Status, a.Step, a.Reason = reversald.StatusNeedsReview, reversald.StepDone, "the cancel bound (2) is reached"
	a.CancelCalls, a.CancelReached, a.CancelRespcd, a.GatewayCalls, a.BudgetCalls = 2, true, "1143", 9, 9
	a.RecordRespcd, a.RecordCancel, a.RecordTxAmt, a.RecordTxCurrCd = "1143", "0", 2500, "HKD"
	if err := s.WriteStep(ctx, store.Step{Attempt: a}); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(ctx, id, ops); err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if b.CancelCalls != 2 || !b.CancelReached || b.GatewayCalls != 9 {
		t.Errorf("after retry: cancel calls %d, reached %v, gateway calls %d; want 2, true, 9 (history kept)", b.CancelCalls, b.CancelReached, b.GatewayCalls)
	}
	if b.BudgetCalls != 0 {
		t.Errorf("after retry: budget calls %d; want a fresh budget", b.BudgetCalls)
	}
	if b.CancelRespcd != "1143" {
		t.Errorf("after retry: the last cancel answer %q is lost", b.CancelRespcd)
	}
	if b.RecordRespcd != "1143" || b.RecordTxAmt != 2500 {
		t.Errorf("after retry: the last record is lost: %+v", b)
	}
}

// TestWriteStepNeverSchedulesPastTheDeadline: a re-check asked for after the
// deadline (a long Retry-After, a long backoff) is stored at the deadline, so
// that the attempt is claimed again and ends needs_review in time.
func TestWriteStepNeverSchedulesPastTheDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clock := newStore(t)
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	a := got[0]
	a.NextRunAt = clock.Now().Add(30 * 24 * time.Hour)
	if err := s.WriteStep(ctx, store.Step{Attempt: a}); err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(ctx, res.NewAttempts[0])
	if err != nil {
		t.Fatal(err)
	}
	if !b.NextRunAt.Equal(b.DeadlineAt) {
		t.Errorf("next run %s, deadline %s: want the re-check at the deadline", b.NextRunAt, b.DeadlineAt)
	}
}
