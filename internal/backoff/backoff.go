// Package backoff is the one retry delay of reversald: exponential from a
// floor, capped, with equal jitter so that instances and attempts that failed
// together do not retry together. The intake, the publisher and the executor
// all use it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay is the wait before retry number n (1-based): lo doubled n-1 times,
// capped at hi, then "equal jitter": a uniform value in [d/2, d]. n below 1
// counts as 1; lo <= 0 gives 0.
func Delay(n int, lo, hi time.Duration) time.Duration {
	if lo <= 0 {
		return 0
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, max(hi, lo))
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits d or until ctx is done; it reports whether the full wait
// happened.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
