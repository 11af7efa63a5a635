package reversal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// TestStepWritesGroupConcurrentWorkers: step writes made while a batch is
// under way share the next one (one round trip, one commit each); no more
// than maxStepFlushes are under way at once; every worker gets its own
// result, a stale one among them ErrFenced, and each write has landed when
// its worker hears of it.
func TestStepWritesGroupConcurrentWorkers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.New(t)
	const workers = 40
	var events []reversald.Event
	for i := range workers {
		events = append(events, reversald.Event{EventID: fmt.Sprint("e", i), MchID: "M1", OutTradeNo: fmt.Sprint("SW", i),
			TxAmt: 100, TxCurrCd: "HKD", TxDtm: "2026-11-22 09:59:00", PayType: "800101"})
	}
	if _, err := st.Intake(ctx, events); err != nil {
		t.Fatal(err)
	}
	claimed, err := st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: workers})
	if err != nil || len(claimed) != workers {
		t.Fatalf("claimed %d: %v", len(claimed), err)
	}
	var (
		mu                        sync.Mutex
		batches, running, most, n int
	)
	b := stepWrites{write: func(ctx context.Context, steps []store.Step) []error {
		mu.Lock()
		batches++
		running++
		most = max(most, running)
		n += len(steps)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		return st.WriteSteps(ctx, steps)
	}}
	const stale = 7
	var wg sync.WaitGroup
	wrong := make(chan string, workers)
	for i, a := range claimed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Step, a.CancelPending, a.CancelCalls = reversald.StepCancel, true, 1 // an intent
			if i == stale {
				a.Token-- // an older claim's worker
			}
			_, _, err := b.do(ctx, store.Step{Attempt: a, KeepLease: true, Lease: time.Minute,
				Calls: []reversald.Call{{Step: reversald.StepQuery, Endpoint: "query", Respcd: "1143"}}})
			got, gerr := st.Get(ctx, a.ID)
			switch {
			case gerr != nil:
				wrong <- fmt.Sprintf("attempt %d: %v", a.ID, gerr)
			case i == stale && (!errors.Is(err, store.ErrFenced) || got.CancelPending):
				wrong <- fmt.Sprintf("stale worker: %v, intent stored %v; want ErrFenced and nothing stored", err, got.CancelPending)
			case i != stale && (err != nil || !got.CancelPending):
				wrong <- fmt.Sprintf("worker %d: %v, intent stored %v; want it written before the answer", i, err, got.CancelPending)
			}
		}()
	}
	wg.Wait()
	close(wrong)
	for w := range wrong {
		t.Error(w)
	}
	if n != workers {
		t.Errorf("%d steps written for %d workers", n, workers)
	}
	if most > maxStepFlushes {
		t.Errorf("%d batches under way at once, want at most %d", most, maxStepFlushes)
	}
	if batches >= workers/2 {
		t.Errorf("%d batches for %d concurrent workers: not grouped", batches, workers)
	}
}
