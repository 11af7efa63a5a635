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
// instance of the group draws from the same one (store.Reserve): N instances
// together never exceed it. Its cost is one round trip per gateway call.
type sharedPacer struct {
	st     *store.Store
	waited func(d time.Duration, ok bool)
}

func (p *sharedPacer) Wait(ctx context.Context, mchid string, pace store.Pace) bool {
	maxWait := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		maxWait = time.Until(dl)
	}
	if maxWait < 0 {
		maxWait = 0
	}
	started := time.Now()
	// The reservation must land even when the wait budget is spent, or a
	// slot due now could not be taken.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	wait, ok, err := p.st.Reserve(rctx, mchid, pace, maxWait)
	cancel()
	if err != nil || !ok {
		p.waited(time.Since(started), false)
		return false // no slot, or the budget cannot be read: no call
	}
	if wait > 0 && !backoff.Sleep(ctx, wait) {
		p.waited(time.Since(started), false)
		return false // the slot is spent unused: the budget holds
	}
	p.waited(time.Since(started), true)
	return true
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
// bunched by network jitter still fit.
func merchantPace(perMinute, perSecond float64, burst int) store.Pace {
	interval := time.Duration(float64(time.Minute) / max(perMinute-float64(burst), 1) * 1.01)
	gap := time.Duration(0)
	if perSecond > 0 {
		gap = time.Duration(float64(time.Second) / perSecond * 1.01)
	}
	return store.Pace{Interval: max(interval, gap), Burst: max(burst, 1), MinGap: gap}
}
