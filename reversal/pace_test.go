package reversal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reversald/reversald/store"
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
