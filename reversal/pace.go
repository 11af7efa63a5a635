package reversal

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/reversald/reversald/internal/backoff"
	"github.com/reversald/reversald/store"
)

// Pacer spaces one merchant's gateway calls to QFPay's limits. Every gateway
// call of every step waits for it ((*run).call, nowhere else).
type Pacer interface {
	// Wait blocks until mchid may make one more call within its budget p
	// and reports true, or reports false when no slot comes before ctx ends.
	// A merchant's credential decides its mchid (qfpay.Directory), so mchid
	// alone names the (credential, merchant) budget.
	Wait(ctx context.Context, mchid string, p store.Pace) bool
	// Pause holds mchid's calls back for d (QFPay answered 429, or asked to
	// retry after d).
	Pause(ctx context.Context, mchid string, p store.Pace, d time.Duration)
}

// sharedPacer keeps each merchant's budget in PostgreSQL, so that every
// instance of the group draws from the same one (store.ReserveMany): N
// instances together never exceed it. The reservations of this instance's
// workers are grouped (a reservations batch): one round trip takes the slots
// of every worker that asked while the previous one was under way.
type sharedPacer struct {
	st     *store.Store
	waited func(d time.Duration, ok bool)
	batch  reservations
}

func newSharedPacer(st *store.Store, waited func(time.Duration, bool)) *sharedPacer {
	p := &sharedPacer{st: st, waited: waited}
	p.batch.reserve = st.ReserveMany
	return p
}

func (p *sharedPacer) Wait(ctx context.Context, mchid string, pace store.Pace) bool {
	maxWait := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		maxWait = time.Until(dl)
	}
	started := time.Now()
	got, err := p.batch.take(ctx, store.Reservation{MchID: mchid, Pace: pace, MaxWait: max(maxWait, 0)})
	if err != nil || !got.OK {
		p.waited(time.Since(started), false)
		return false // no slot, or the budget cannot be read: no call
	}
	if got.Wait > 0 && !backoff.Sleep(ctx, got.Wait) {
		p.waited(time.Since(started), false)
		return false // the slot is spent unused: the budget holds
	}
	p.waited(time.Since(started), true)
	return true
}

// reservations groups concurrent reservations into few statements, like a
// group commit: a request made while fewer than maxReserveFlushes
// statements are under way starts a flusher, which sends every request
// waiting (one per merchant per statement: a second one for the same
// merchant goes in the next) until none is left. A request waits for its
// answer however its caller's context ends: a slot due now must still be
// taken, and a reservation under way lands either way.
type reservations struct {
	reserve func(context.Context, []store.Reservation) ([]store.Reserved, error)

	mu       sync.Mutex
	pending  []*reservation
	flushers int
}

type reservation struct {
	req  store.Reservation
	got  store.Reserved
	err  error
	done chan struct{}
}

const (
	maxReserveFlushes = 2   // statements under way at once
	maxReserveBatch   = 256 // merchants per statement
)

// take queues req and waits for its answer. ctx is not a deadline for the
// answer (see reservations); a flusher it starts runs on ctx's values only.
func (b *reservations) take(ctx context.Context, req store.Reservation) (store.Reserved, error) {
	r := &reservation{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.flushers < maxReserveFlushes {
		b.flushers++
		go b.flush(context.WithoutCancel(ctx))
	}
	b.mu.Unlock()
	<-r.done
	return r.got, r.err
}

// flush sends batches until no request waits.
func (b *reservations) flush(ctx context.Context) {
	for {
		b.mu.Lock()
		batch := b.next()
		if len(batch) == 0 {
			b.flushers--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		reqs := make([]store.Reservation, len(batch))
		for i, r := range batch {
			reqs[i] = r.req
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := b.reserve(rctx, reqs)
		cancel()
		for i, r := range batch {
			if err != nil {
				r.err = err
			} else {
				r.got = got[i]
			}
			close(r.done)
		}
	}
}

// next takes the oldest waiting requests, at most one per merchant, off
// pending. b.mu is held.
func (b *reservations) next() []*reservation {
	var batch, rest []*reservation
	seen := make(map[string]bool, len(b.pending))
	for _, r := range b.pending {
		if len(batch) < maxReserveBatch && !seen[r.req.MchID] {
			seen[r.req.MchID] = true
			batch = append(batch, r)
		} else {
			rest = append(rest, r)
		}
	}
	b.pending = rest
	return batch
}

func (p *sharedPacer) Pause(ctx context.Context, mchid string, pace store.Pace, d time.Duration) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = p.st.Pause(pctx, mchid, pace, d) // best effort: the backoff of this attempt holds anyway
}

// localPacer is a token bucket per merchant in this process: for one
// instance, or a group that divides the budget by hand.
type localPacer struct {
	waited func(d time.Duration, ok bool)

	mu       sync.Mutex
	limiters map[string]localBucket
	paused   map[string]time.Time
}

type localBucket struct {
	pace store.Pace
	l    *rate.Limiter
}

func newLocalPacer(waited func(time.Duration, bool)) *localPacer {
	return &localPacer{waited: waited, limiters: make(map[string]localBucket), paused: make(map[string]time.Time)}
}

func (p *localPacer) Wait(ctx context.Context, mchid string, pace store.Pace) bool {
	started := time.Now()
	p.mu.Lock()
	b, ok := p.limiters[mchid]
	if !ok || b.pace != pace { // new, or its budget changed with a credentials reload
		b = localBucket{pace: pace, l: rate.NewLimiter(rate.Every(pace.Interval), max(pace.Burst, 1))}
		p.limiters[mchid] = b
	}
	l := b.l
	until := p.paused[mchid]
	p.mu.Unlock()
	if d := time.Until(until); d > 0 && !backoff.Sleep(ctx, d) {
		p.waited(time.Since(started), false)
		return false
	}
	var got bool
	if ctx.Err() != nil {
		got = l.Allow()
	} else {
		got = l.Wait(ctx) == nil
	}
	p.waited(time.Since(started), got)
	return got
}

func (p *localPacer) Pause(_ context.Context, mchid string, _ store.Pace, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := time.Now().Add(d); until.After(p.paused[mchid]) {
		p.paused[mchid] = until
	}
}

// unpaced lets every call through (pacing switched off).
type unpaced struct{}

func (unpaced) Wait(context.Context, string, store.Pace) bool            { return true }
func (unpaced) Pause(context.Context, string, store.Pace, time.Duration) {}

// merchantPace is one merchant's budget that keeps within both of QFPay's
// limits: at most perMinute calls in any 60 s window, with bursts of up to
// burst calls, and at most perSecond a second. Holding the minute limit over
// any window with bursts costs burst calls of the sustained rate: the calls
// are spaced 60s/(perMinute-burst) on average, with a 1% margin so that calls
// bunched by jitter still fit (600 ms of a minute's window). A call leaves
// after its slot by however long the process takes to send it (scheduling,
// the connection, a busy machine), so the per-second spacing has a 20%
// margin: a call may leave up to 200 ms of a second's window late, where 1%
// left 10 ms and a loaded machine met QFPay's 429. It costs nothing that
// binds: at QFPay's limits (100/s, 400/min) the per-second spacing only
// spaces a burst (16 calls in 190 ms instead of 160).
func merchantPace(perMinute, perSecond float64, burst int) store.Pace {
	interval := time.Duration(float64(time.Minute) / max(perMinute-float64(burst), 1) * 1.01)
	gap := time.Duration(0)
	if perSecond > 0 {
		gap = time.Duration(float64(time.Second) / perSecond * 1.2)
	}
	return store.Pace{Interval: max(interval, gap), Burst: max(burst, 1), MinGap: gap}
}
