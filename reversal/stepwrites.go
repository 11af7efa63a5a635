package reversal

import (
	"context"
	"sync"
	"time"

	"github.com/reversald/reversald/store"
)

// stepWrites groups the step writes of concurrent workers into few
// transactions, like a group commit (River's batch completer, in spirit): a
// write made while fewer than maxStepFlushes batches are under way starts a
// flusher, which writes every step waiting, up to maxStepBatch a batch, in
// one round trip and one commit (store.WriteSteps), until none is left. A
// worker alone writes at once; busy workers share commits instead of queueing
// for connections. Each write gets its own result (fenced or not) and
// returns only after the commit that made it durable: an intent to cancel
// is committed before the cancel leaves. A write waits for its answer
// however its caller's context ends: a write under way lands either way.
type stepWrites struct {
	write func(context.Context, []store.Step) []error

	mu       sync.Mutex
	pending  []*stepWrite
	flushers int
}

type stepWrite struct {
	st   store.Step
	err  error
	done chan struct{}
}

const (
	maxStepFlushes = 2   // batches under way at once
	maxStepBatch   = 128 // steps a batch
	// stepWriteTimeout bounds one batch's round trip.
	stepWriteTimeout = 15 * time.Second
)

// do queues st and waits for its result. ctx is not a deadline for the
// answer (see stepWrites); a flusher it starts runs on ctx's values only.
func (b *stepWrites) do(ctx context.Context, st store.Step) error {
	w := &stepWrite{st: st, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, w)
	if b.flushers < maxStepFlushes {
		b.flushers++
		go b.flush(context.WithoutCancel(ctx))
	}
	b.mu.Unlock()
	<-w.done
	return w.err
}

// flush writes batches until no write waits.
func (b *stepWrites) flush(ctx context.Context) {
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxStepBatch)
		if n == 0 {
			b.flushers--
			b.mu.Unlock()
			return
		}
		batch := b.pending[:n:n]
		b.pending = append([]*stepWrite(nil), b.pending[n:]...)
		b.mu.Unlock()
		steps := make([]store.Step, len(batch))
		for i, w := range batch {
			steps[i] = w.st
		}
		wctx, cancel := context.WithTimeout(ctx, stepWriteTimeout)
		errs := b.write(wctx, steps)
		cancel()
		for i, w := range batch {
			w.err = errs[i]
			close(w.done)
		}
	}
}
