package testclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/reversald/reversald/internal/testclock"
)

func TestClockMovesOnlyWhenAdvanced(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := testclock.New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() moved by itself: %v", got)
	}
	c.Advance(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Advance(90s) Now() = %v, want %v", got, want)
	}
}

// TestClockConcurrentUse: readers and advancers at once (run with -race); every Advance counts.
func TestClockConcurrentUse(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := testclock.New(start)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Advance(time.Millisecond)
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if c.Now().Before(start) {
					t.Error("the clock went back")
				}
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(800*time.Millisecond); !got.Equal(want) {
		t.Errorf("Now() = %v after 800 Advance(1ms), want %v", got, want)
	}
}
