package reversal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// TestReservationsGroupConcurrentRequests: requests made while a statement
// is under way share the next one; no statement asks twice for one merchant;
// no more than maxReserveFlushes are under way at once; every request gets
// its own answer.
func TestReservationsGroupConcurrentRequests(t *testing.T) {
	t.Parallel()
	var (
		mu              sync.Mutex
		statements      int
		running, most   int
		twiceInOneBatch []string
	)
	b := reservations{reserve: func(_ context.Context, rs []store.Reservation) ([]store.Reserved, error) {
		mu.Lock()
		statements++
		running++
		most = max(most, running)
		seen := map[string]bool{}
		for _, r := range rs {
			if seen[r.MchID] {
				twiceInOneBatch = append(twiceInOneBatch, r.MchID)
			}
			seen[r.MchID] = true
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a round trip
		mu.Lock()
		running--
		mu.Unlock()
		got := make([]store.Reserved, len(rs))
		for i, r := range rs {
			got[i] = store.Reserved{Wait: r.MaxWait, OK: true} // echo: whose answer is this
		}
		return got, nil
	}}
	const merchants, each = 10, 8
	var wg sync.WaitGroup
	wrong := make(chan string, merchants*each)
	for m := range merchants {
		for i := range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := time.Duration(m*each + i)
				got, err := b.take(context.Background(), store.Reservation{MchID: fmt.Sprint("M", m), MaxWait: id})
				if err != nil || !got.OK || got.Wait != id {
					wrong <- fmt.Sprintf("request %d: %+v %v", id, got, err)
				}
			}()
		}
	}
	wg.Wait()
	close(wrong)
	for w := range wrong {
		t.Error(w)
	}
	if len(twiceInOneBatch) > 0 {
		t.Errorf("one statement asked twice for %v", twiceInOneBatch)
	}
	if most > maxReserveFlushes {
		t.Errorf("%d statements under way at once, want at most %d", most, maxReserveFlushes)
	}
	// Each merchant's requests need `each` statements at least; many more
	// than that would mean requests were not grouped.
	if statements < each || statements >= merchants*each/2 {
		t.Errorf("%d statements for %d requests of %d merchants", statements, merchants*each, merchants)
	}
	// The flushers end once nothing waits.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		flushers, pending := b.flushers, len(b.pending)
		b.mu.Unlock()
		if flushers == 0 && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the last answer: %d flushers, %d pending", flushers, pending)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReservationsShareAFailure: when the statement fails, every request in
// it gets the error (and so no slot: no call is made).
func TestReservationsShareAFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("database unreachable")
	b := reservations{reserve: func(context.Context, []store.Reservation) ([]store.Reserved, error) { return nil, boom }}
	for _, m := range []string{"A", "B"} {
		if got, err := b.take(context.Background(), store.Reservation{MchID: m}); !errors.Is(err, boom) || got.OK {
			t.Errorf("merchant %s: %+v %v, want the statement's error", m, got, err)
		}
	}
}

// TestLeasedSlotsAreSpentHere: a claim's lease is one reservation for the
// slots of a merchant's calls, spent here; the next call after them reserves again and comes after the lease's window; a
// 429 gives the rest of a lease up; a lease past its window is not spent.
func TestLeasedSlotsAreSpentHere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newSharedPacer(storetest.New(t), func(time.Duration, bool) {})
	var statements atomic.Int32
	reserve := p.batch.reserve
	p.batch.reserve = func(ctx context.Context, rs []store.Reservation) ([]store.Reserved, error) {
		statements.Add(1)
		return reserve(ctx, rs)
	}
	pace := store.Pace{Interval: 100 * time.Millisecond, Burst: 5, MinGap: 20 * time.Millisecond}
	wait := func(m string, d time.Duration) bool {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return p.Wait(wctx, m, pace)
	}

	start := time.Now()
	p.lease(ctx, []slotWant{{key: "L1", pace: pace, calls: 3}})
	for i := range 3 {
		if !wait("L1", time.Second) {
			t.Fatalf("leased call %d got no slot", i)
		}
	}
	if n := statements.Load(); n != 1 {
		t.Errorf("%d statements for three leased calls, want 1", n)
	}
	if !wait("L1", 2*time.Second) {
		t.Fatal("the call after the lease got no slot")
	}
	if n := statements.Load(); n != 2 {
		t.Errorf("%d statements after the lease, want 2 (a reservation of its own)", n)
	}
	if took := time.Since(start); took < leaseWindow+pace.MinGap {
		t.Errorf("the call after the lease went %s after it, want after its window and a gap (%s)", took, leaseWindow+pace.MinGap)
	}

	// A claim's lease (keep) is spent the same way, with no statement.
	before := statements.Load()
	now := time.Now()
	p.keep("K1", pace, store.Reserved{OK: true, Calls: 2}, now, now)
	for i := range 2 {
		if !wait("K1", time.Second) {
			t.Fatalf("call %d of a claim's lease got no slot", i)
		}
	}
	if n := statements.Load() - before; n != 0 {
		t.Errorf("%d statements for a claim's two leased calls, want none", n)
	}
	if !wait("K1", 2*time.Second) || statements.Load() != before+1 {
		t.Errorf("the call after a claim's lease: %d statements, want one of its own", statements.Load()-before)
	}

	// A 429 gives the lease up: the merchant is paused for everybody.
	p.lease(ctx, []slotWant{{key: "L2", pace: pace, calls: 3}})
	if !wait("L2", time.Second) {
		t.Fatal("L2's first leased call got no slot")
	}
	p.Pause(ctx, "L2", pace, 10*time.Second)
	if wait("L2", 500*time.Millisecond) {
		t.Error("a leased slot was spent after a 429")
	}

	// A claim sent before a 429 that is answered after it: its lease is
	// not taken up (the claim statement may have run before the pause).
	sent := time.Now()
	p.Pause(ctx, "K2", pace, 10*time.Second)
	p.keep("K2", pace, store.Reserved{OK: true, Calls: 3}, sent, time.Now())
	if at, ok := p.leased(ctx, "K2", pace); ok {
		t.Errorf("a claim's lease sent before a 429 gave a slot at %s", at)
	}

	// A leased slot handed out before a 429 and waiting for its time is
	// not spent once the 429 came.
	now = time.Now()
	p.keep("K3", pace, store.Reserved{OK: true, Wait: 200 * time.Millisecond, Calls: 2}, now, now)
	got := make(chan bool, 1)
	go func() { got <- wait("K3", time.Second) }()
	time.Sleep(50 * time.Millisecond) // the call waits for its slot, 200 ms away
	p.Pause(ctx, "K3", pace, 10*time.Second)
	if <-got {
		t.Error("a leased slot handed out before a 429 was spent after it")
	}

	// A lease granted under one budget is not spent under another (a
	// credential reload changed the merchant's rates).
	now = time.Now()
	p.keep("K4", pace, store.Reserved{OK: true, Calls: 3}, now, now)
	stricter := pace
	stricter.MinGap = 200 * time.Millisecond
	if _, ok := p.leased(ctx, "K4", stricter); ok {
		t.Error("a lease granted under one pace was spent under a stricter one")
	}
	if _, ok := p.leased(ctx, "K4", pace); ok {
		t.Error("a lease dropped for a changed pace was spent after all")
	}

	// A lease past its window is not spent.
	p.lease(ctx, []slotWant{{key: "L3", pace: pace, calls: 3}})
	if !wait("L3", time.Second) {
		t.Fatal("L3's first leased call got no slot")
	}
	before = statements.Load()
	time.Sleep(leaseWindow + 10*time.Millisecond) // the window passes
	if !wait("L3", 2*time.Second) || statements.Load() != before+1 {
		t.Errorf("after the window: %d statements more, want the call to reserve its own slot", statements.Load()-before)
	}
}
