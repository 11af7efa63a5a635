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
	ctx  context.Context // the worker's, without its cancel
	st   store.Step
	err  error
	done chan struct{}
	// batch is the number of steps written together; leader is the context
	// the batch's statements ran under (the first waiter's: their spans are
	// in its trace).
	batch  int
	leader context.Context
}

const (
	maxStepFlushes = 2   // batches under way at once
	maxStepBatch   = 128 // steps a batch
	// stepWriteTimeout bounds one batch's round trip.
	stepWriteTimeout = 15 * time.Second
)

// do queues st and waits for its result; it also returns how many steps were
// written together and the context their statements ran under. ctx is not
// a deadline for the answer (see stepWrites); a batch runs on the values
// (the trace) of its first waiter's ctx.
func (b *stepWrites) do(ctx context.Context, st store.Step) (batch int, leader context.Context, err error) {
	w := &stepWrite{ctx: context.WithoutCancel(ctx), st: st, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, w)
	if b.flushers < maxStepFlushes {
		b.flushers++
		go b.flush()
	}
	b.mu.Unlock()
	<-w.done
	return w.batch, w.leader, w.err
}

// flush writes batches until no write waits.
func (b *stepWrites) flush() {
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
		leader := batch[0].ctx
		wctx, cancel := context.WithTimeout(leader, stepWriteTimeout)
		errs := b.write(wctx, steps)
		cancel()
		for i, w := range batch {
			w.err, w.batch, w.leader = errs[i], len(batch), leader
			close(w.done)
		}
	}
}
