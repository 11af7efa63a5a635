package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// settleOne claims the one due attempt and writes it final with status.
func settleOne(t *testing.T, s *store.Store, status reversald.Status) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	a := got[0]
	a.Status, a.Step, a.Method = status, reversald.StepDone, reversald.MethodNone
	if err := s.WriteStep(ctx, store.Step{Attempt: a}); err != nil {
		t.Fatal(err)
	}
}

// TestPublishedOutcomesFilters: only published outbox rows, in the order they
// were queued, picked by every filter; paging changes nothing but the page
// size; a bad status is refused before any query.
func TestPublishedOutcomesFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	t0 := clk.Now()
	// e4 conflicts with A's first event: needs_review at once, decided at t0.
	if _, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "A", 2500), event("e4", "A", 1)}); err != nil {
		t.Fatal(err)
	}
	ids := func(f store.OutcomeFilter, page int) []string {
		t.Helper()
		var got []string
		calls := 0
		n, err := s.PublishedOutcomes(ctx, f, page, func(recs []store.OutboxRecord) error {
			calls++
			if len(recs) > page {
				t.Errorf("a page of %d rows, want at most %d", len(recs), page)
			}
			for _, r := range recs {
				got = append(got, r.EventID)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("published outcomes %+v: %v", f, err)
		}
		if n != len(got) {
			t.Errorf("returned %d, handed %d", n, len(got))
		}
		return got
	}
	if got := ids(store.OutcomeFilter{}, 10); len(got) != 0 {
		t.Fatalf("before any publish: %v, want none (unpublished rows are the publisher's)", got)
	}
	drain(t, s) // e4's, published at t0
	clk.Advance(time.Minute)
	settleOne(t, s, reversald.StatusClosed) // A: e1, e2 decided at t0+1m
	drain(t, s)                             // published at t0+1m
	clk.Advance(time.Hour)
	if _, err := s.Intake(ctx, []reversald.Event{event("e3", "B", 100)}); err != nil {
		t.Fatal(err)
	}
	settleOne(t, s, reversald.StatusPaid) // B: e3 decided at t0+1h1m, not published yet

	mid := t0.Add(30 * time.Second)
	for _, tc := range []struct {
		name string
		f    store.OutcomeFilter
		want []string
	}{
		{"all published, in queue order", store.OutcomeFilter{}, []string{"e4", "e1", "e2"}},
		{"status", store.OutcomeFilter{Statuses: []reversald.Status{reversald.StatusClosed}}, []string{"e1", "e2"}},
		{"statuses", store.OutcomeFilter{Statuses: []reversald.Status{reversald.StatusNeedsReview, reversald.StatusPaid}}, []string{"e4"}},
		{"mchid", store.OutcomeFilter{MchID: "MNxMp11FV35qQN"}, []string{"e4", "e1", "e2"}},
		{"another mchid", store.OutcomeFilter{MchID: "OTHER"}, nil},
		{"out_trade_no unpublished", store.OutcomeFilter{OutTradeNo: "B"}, nil},
		{"out_trade_no", store.OutcomeFilter{OutTradeNo: "A", Statuses: []reversald.Status{reversald.StatusClosed}}, []string{"e1", "e2"}},
		{"event ids", store.OutcomeFilter{EventIDs: []string{"e2", "e3", "nope"}}, []string{"e2"}},
		{"decided from", store.OutcomeFilter{DecidedFrom: mid}, []string{"e1", "e2"}},
		{"decided to (exclusive)", store.OutcomeFilter{DecidedTo: t0.Add(time.Minute)}, []string{"e4"}},
		{"decided range", store.OutcomeFilter{DecidedFrom: t0, DecidedTo: mid}, []string{"e4"}},
		{"published from", store.OutcomeFilter{PublishedFrom: mid}, []string{"e1", "e2"}},
		{"published to", store.OutcomeFilter{PublishedTo: mid}, []string{"e4"}},
		{"nothing", store.OutcomeFilter{DecidedFrom: t0.Add(48 * time.Hour)}, nil},
	} {
		for _, page := range []int{1, 2, 500} {
			if got := ids(tc.f, page); !slices.Equal(got, tc.want) {
				t.Errorf("%s, pages of %d: %v, want %v", tc.name, page, got, tc.want)
			}
		}
	}

	drain(t, s)
	if got := ids(store.OutcomeFilter{OutTradeNo: "B"}, 10); !slices.Equal(got, []string{"e3"}) {
		t.Errorf("B once published: %v, want [e3]", got)
	}

	boom := errors.New("broker down")
	if _, err := s.PublishedOutcomes(ctx, store.OutcomeFilter{}, 1, func([]store.OutboxRecord) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: %v, want it returned", err)
	}
	for _, bad := range []reversald.Status{reversald.StatusPending, "bogus"} {
		if _, err := s.PublishedOutcomes(ctx, store.OutcomeFilter{Statuses: []reversald.Status{bad}}, 10, func([]store.OutboxRecord) error { return nil }); err == nil {
			t.Errorf("status %q accepted", bad)
		}
	}
}
