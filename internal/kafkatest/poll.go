package kafkatest

import (
	"context"
	"time"
)

// pollInterval is how often Poll and WaitFor check their condition.
const pollInterval = 20 * time.Millisecond

// Poll checks cond at once and then every 20ms until it holds (nil) or ctx ends (ctx.Err()).
func Poll(ctx context.Context, cond func() bool) error {
	if cond() {
		return nil
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if cond() {
				return nil
			}
		}
	}
}
