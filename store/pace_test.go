package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// TestReserveSpacesAMerchantsCalls: slots are one interval apart whoever
// asks, a slot further than maxWait is not reserved (nothing is spent), and a
// pause holds every slot back.
func TestReserveSpacesAMerchantsCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clock := newStore(t)
	const iv = 150 * time.Millisecond
	pace := store.Pace{Interval: iv, Burst: 1}
	var waits []time.Duration
	for range 4 {
		w, ok, err := s.Reserve(ctx, "M1", pace, time.Second)
		if err != nil || !ok {
			t.Fatalf("reserve: %v %v", ok, err)
		}
		waits = append(waits, w)
	}
	for i, w := range waits {
		if want := time.Duration(i) * iv; w != want {
			t.Errorf("slot %d: wait %s, want %s", i, w, want)
		}
	}
	// The next slot is 600ms away: not within 500ms, and nothing is spent.
	if _, ok, err := s.Reserve(ctx, "M1", pace, 500*time.Millisecond); err != nil || ok {
		t.Fatalf("reserve beyond maxWait: ok %v, %v; want refused", ok, err)
	}
	if w, ok, _ := s.Reserve(ctx, "M1", pace, time.Second); !ok || w != 4*iv {
		t.Errorf("after a refusal: wait %s ok %v, want %s (the refusal spent nothing)", w, ok, 4*iv)
	}
	// Another merchant has its own budget.
	if w, ok, _ := s.Reserve(ctx, "M2", pace, 0); !ok || w != 0 {
		t.Errorf("another merchant: wait %s ok %v, want at once", w, ok)
	}
	// A pause holds M2 back for everyone.
	if err := s.Pause(ctx, "M2", pace, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Reserve(ctx, "M2", pace, 5*time.Second); ok {
		t.Error("a paused merchant got a slot")
	}
	clock.Advance(10 * time.Second)
	if w, ok, _ := s.Reserve(ctx, "M2", pace, 0); !ok || w != 0 {
		t.Errorf("after the pause: wait %s ok %v, want at once", w, ok)
	}
}

// TestReserveManyAnswersEachMerchantInOrder: one statement takes the slots
// of several merchants, each under its own pace: a known merchant's next
// slot, a new merchant's first (its row inserted), and a refusal for one whose
// slot is beyond its maxWait, answered in the order asked.
func TestReserveManyAnswersEachMerchantInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	slow := store.Pace{Interval: time.Second, Burst: 1}
	fast := store.Pace{Interval: 100 * time.Millisecond, Burst: 1, MinGap: 10 * time.Millisecond}
	for _, m := range []string{"KNOWN", "FULL"} {
		if _, ok, err := s.Reserve(ctx, m, slow, 0); err != nil || !ok {
			t.Fatalf("first slot of %s: %v %v", m, ok, err)
		}
	}
	got, err := s.ReserveMany(ctx, []store.Reservation{
		{MchID: "KNOWN", Pace: fast, MaxWait: time.Second}, // its row says the next slot is a second away
		{MchID: "NEW", Pace: fast, MaxWait: 0},
		{MchID: "FULL", Pace: slow, MaxWait: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Reserved{{Wait: time.Second, OK: true, Calls: 1}, {Wait: 0, OK: true, Calls: 1}, {OK: false}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("answer %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// NEW's row exists now and counted its first call: its next slot is
	// one interval on.
	if w, ok, err := s.Reserve(ctx, "NEW", fast, time.Second); err != nil || !ok || w != fast.Interval {
		t.Errorf("NEW's second slot: wait %s ok %v err %v, want %s", w, ok, err, fast.Interval)
	}
	// The refusal spent nothing: FULL's next slot is still a second after its first.
	if w, ok, err := s.Reserve(ctx, "FULL", slow, 2*time.Second); err != nil || !ok || w != time.Second {
		t.Errorf("FULL after a refusal: wait %s ok %v err %v, want 1s", w, ok, err)
	}
}

// TestPacedClaimSkipsMerchantsWithoutBudget: a paced claim takes no attempt
// of a merchant whose next slot is beyond the look-ahead, and at most
// PerMerchant of one merchant's attempts, so others get the workers.
func TestPacedClaimSkipsMerchantsWithoutBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	var evs []reversald.Event
	for i, m := range []string{"HOT", "HOT", "HOT", "HOT", "HOT", "COLD1", "COLD2", "BUSY"} {
		e := event("e"+string(rune('a'+i)), "O"+string(rune('a'+i)), 2500)
		e.MchID = m
		evs = append(evs, e)
	}
	if _, err := s.Intake(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// BUSY's next slot is a minute away.
	if err := s.Pause(ctx, "BUSY", store.Pace{Interval: time.Second, Burst: 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 100, Paced: true, Lookahead: time.Second, PerMerchant: 2})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]int{}
	for _, a := range got {
		by[a.MchID]++
	}
	if by["HOT"] != 2 || by["COLD1"] != 1 || by["COLD2"] != 1 || by["BUSY"] != 0 {
		t.Errorf("claimed per merchant %v; want HOT 2 (its limit), COLD1 1, COLD2 1, BUSY none", by)
	}
	// Unpaced, everything due is claimed.
	rest, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 100})
	if err != nil || len(rest) != 4 {
		t.Errorf("unpaced claim of the rest: %d, %v; want the 4 left", len(rest), err)
	}
}

// TestReserveBurstThenSpacing: a burst goes out back to back, spaced only by
// the per-second gap; after it, calls come one interval apart.
func TestReserveBurstThenSpacing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	pace := store.Pace{Interval: 150 * time.Millisecond, Burst: 3, MinGap: 10 * time.Millisecond}
	var waits []time.Duration
	for range 5 {
		w, ok, err := s.Reserve(ctx, "M1", pace, time.Minute)
		if err != nil || !ok {
			t.Fatalf("reserve: %v %v", ok, err)
		}
		waits = append(waits, w)
	}
	want := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}
	for i := range want {
		if waits[i] != want[i] {
			t.Errorf("slot %d: wait %s, want %s (all: %v)", i, waits[i], want[i], waits)
		}
	}
}

// TestReserveLease: a lease takes as many slots as the burst has left at its
// first slot (none for a merchant at its sustained rate), and holds everybody
// else's calls of that merchant until its window and a gap have passed.
func TestReserveLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	pace := store.Pace{Interval: 150 * time.Millisecond, Burst: 4, MinGap: 10 * time.Millisecond}
	const window = 100 * time.Millisecond
	lease := func(m string, calls int) store.Reserved {
		t.Helper()
		got, err := s.ReserveMany(ctx, []store.Reservation{{MchID: m, Pace: pace, MaxWait: time.Minute, Calls: calls, Window: window}})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	// A new merchant: three of its burst of four, at once.
	if got := lease("NEW", 3); got != (store.Reserved{Wait: 0, OK: true, Calls: 3}) {
		t.Errorf("lease of a new merchant: %+v, want 3 slots at once", got)
	}
	// Anybody else's next call of NEW waits for the window and a gap.
	if w, ok, err := s.Reserve(ctx, "NEW", pace, time.Minute); err != nil || !ok || w != window+pace.MinGap {
		t.Errorf("a call after the lease: wait %s ok %v err %v, want %s", w, ok, err, window+pace.MinGap)
	}
	// NEW's burst is spent: no lease (nothing taken); a call reserves its
	// own slot, 150ms on.
	if got := lease("NEW", 5); got.OK {
		t.Errorf("lease at the sustained rate: %+v, want none", got)
	}
	if w, ok, err := s.Reserve(ctx, "NEW", pace, time.Minute); err != nil || !ok || w != 150*time.Millisecond {
		t.Errorf("a call at the sustained rate: wait %s ok %v err %v, want 150ms (the refused lease took nothing)", w, ok, err)
	}
	// A known merchant with one call made: the lease gets the three left of
	// its burst, however many it asks for.
	if w, ok, err := s.Reserve(ctx, "KNOWN", pace, 0); err != nil || !ok || w != 0 {
		t.Fatalf("KNOWN's first call: %s %v %v", w, ok, err)
	}
	if got := lease("KNOWN", 10); got != (store.Reserved{Wait: pace.MinGap, OK: true, Calls: 3}) {
		t.Errorf("lease of a known merchant: %+v, want the 3 slots left of its burst after a gap", got)
	}
	// A per-second limit that the burst alone could exceed in a second (5 a
	// second here): no lease, one slot, spaced as any call.
	strict := store.Pace{Interval: 150 * time.Millisecond, Burst: 4, MinGap: 200 * time.Millisecond}
	got, err := s.ReserveMany(ctx, []store.Reservation{{MchID: "STRICT", Pace: strict, MaxWait: time.Minute, Calls: 3, Window: window}})
	if err != nil || got[0] != (store.Reserved{Wait: 0, OK: true, Calls: 1}) {
		t.Errorf("lease under a strict per-second limit: %+v %v, want one slot", got, err)
	}
}

// TestClaimLeasesSlots: a paced claim that asks for slots leases, in its own
// statement, those of its attempts' runs, one lease a merchant (three calls
// an attempt at its query step, as many as the burst has left); the others'
// calls of that merchant wait for the lease's window; without Slots, nothing
// is leased.
func TestClaimLeasesSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	var evs []reversald.Event
	for i, m := range []string{"A", "A", "B", "C", "E"} {
		e := event("e"+string(rune('a'+i)), "O"+string(rune('a'+i)), 2500)
		e.MchID = m
		evs = append(evs, e)
	}
	if _, err := s.Intake(ctx, evs); err != nil {
		t.Fatal(err)
	}
	pace := store.Pace{Interval: 150 * time.Millisecond, Burst: 8, MinGap: 10 * time.Millisecond}
	const window = 100 * time.Millisecond
	// B has made six calls of its burst of eight already, 10ms apart; C none.
	for i := range 6 {
		if w, ok, err := s.Reserve(ctx, "B", pace, time.Minute); err != nil || !ok || w != time.Duration(i)*pace.MinGap {
			t.Fatalf("B's call %d: %s %v %v", i, w, ok, err)
		}
	}
	// E has spent its burst: it is at its sustained rate.
	for range 8 {
		if _, ok, err := s.Reserve(ctx, "E", pace, time.Minute); err != nil || !ok {
			t.Fatalf("E's calls: %v %v", ok, err)
		}
	}
	got, slots, err := s.ClaimSlots(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 2, IDs: []int64{}, Paced: true, Lookahead: time.Second, PerMerchant: 5,
		Slots: &store.SlotLease{Pace: pace, MaxWait: 2 * time.Second, Window: window}})
	if err != nil || len(got) != 0 || len(slots) != 0 {
		t.Fatalf("claim of no ids: %d, %d leases, %v", len(got), len(slots), err)
	}
	got, slots, err = s.ClaimSlots(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 10, Paced: true, Lookahead: time.Second, PerMerchant: 5,
		Slots: &store.SlotLease{Pace: pace, MaxWait: 2 * time.Second, Window: window}})
	if err != nil || len(got) != 5 || len(slots) != 5 {
		t.Fatalf("claim: %d attempts, %d leases, %v; want 5", len(got), len(slots), err)
	}
	want := map[string]store.Reserved{
		"A": {Wait: 0, OK: true, Calls: 6},               // two attempts, three calls each
		"B": {Wait: 6 * pace.MinGap, OK: true, Calls: 2}, // the 2 left of its burst
		"C": {Wait: 0, OK: true, Calls: 3},               // a new merchant
		"E": {},                                          // none: its calls reserve one by one
	}
	for i, a := range got {
		if slots[i] != want[a.MchID] {
			t.Errorf("attempt of %s: lease %+v, want %+v", a.MchID, slots[i], want[a.MchID])
		}
	}
	// The others' next call of A waits for the lease's window and a gap.
	if w, ok, err := s.Reserve(ctx, "A", pace, time.Minute); err != nil || !ok || w != window+pace.MinGap {
		t.Errorf("a call of A after the claim's lease: wait %s ok %v err %v, want %s", w, ok, err, window+pace.MinGap)
	}
	// Without Slots, a paced claim leases nothing.
	e := event("ez", "Oz", 2500)
	e.MchID = "D"
	if _, err := s.Intake(ctx, []reversald.Event{e}); err != nil {
		t.Fatal(err)
	}
	got, slots, err = s.ClaimSlots(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 10, Paced: true, Lookahead: time.Second, PerMerchant: 5})
	if err != nil || len(got) != 1 || slots[0].OK {
		t.Errorf("claim without Slots: %d attempts, leases %+v, %v; want one attempt and no lease", len(got), slots, err)
	}
}
