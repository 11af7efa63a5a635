package consumer

import (
	"context"
	"errors"
	"testing"
	"time"
)

// runInBackground starts run and returns a stop function that cancels it and waits for it,
// failing the test if run returned an error. It is also registered as a cleanup.
func runInBackground(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("Run did not return within 60s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}
