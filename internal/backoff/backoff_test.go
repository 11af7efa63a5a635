package backoff

import (
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, 5*time.Second
	for _, tc := range []struct {
		n        int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{7, 2500 * time.Millisecond, 5 * time.Second}, // 6.4s capped
		{1000, 2500 * time.Millisecond, 5 * time.Second},
	} {
		for range 200 {
			d := Delay(tc.n, lo, hi)
			if d < tc.min || d > tc.max {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", tc.n, d, tc.min, tc.max)
			}
		}
	}
}

func TestDelaySpreads(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[Delay(3, time.Second, time.Minute)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("100 delays took only %d values: no jitter", len(seen))
	}
}

func TestDelayZeroFloor(t *testing.T) {
	t.Parallel()
	if d := Delay(5, 0, time.Second); d != 0 {
		t.Fatalf("Delay with lo=0 = %s, want 0", d)
	}
}
