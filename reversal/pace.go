package reversal

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// Pacer spaces one merchant's gateway calls to QFPay's limits. Every gateway
// call of every step waits for it (the drive loop's call, nowhere else).
//
// This is the seam for pacing shared by a whole consumer group: the local
// pacer below holds the budget of one process.
type Pacer interface {
	// Wait blocks until mchid may make one more call and reports true, or
	// reports false when no slot comes before ctx ends.
	Wait(ctx context.Context, mchid string) bool
}

// localPacer is a token bucket per merchant in this process: perMinute
// calls a minute, with a burst of a quarter of that (QFPay allows 100/s
// within its 400/min).
type localPacer struct {
	perMinute float64

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func newLocalPacer(perMinute float64) *localPacer {
	return &localPacer{perMinute: perMinute, limiters: make(map[string]*rate.Limiter)}
}

func (p *localPacer) Wait(ctx context.Context, mchid string) bool {
	p.mu.Lock()
	l, ok := p.limiters[mchid]
	if !ok {
		l = rate.NewLimiter(rate.Limit(p.perMinute/60), max(1, int(p.perMinute/4)))
		p.limiters[mchid] = l
	}
	p.mu.Unlock()
	if ctx.Err() != nil {
		return l.Allow()
	}
	return l.Wait(ctx) == nil
}

// unpaced lets every call through (pacing switched off).
type unpaced struct{}

func (unpaced) Wait(context.Context, string) bool { return true }
