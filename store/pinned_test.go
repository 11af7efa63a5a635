package store

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald/internal/testenv"
)

// TestPinnedSessionsPinPlans: the statements that run all the time (claims,
// pacing reservations) run on sessions with pinnedPlans, and the other
// statements on sessions without them.
func TestPinnedSessionsPinPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, testenv.DatabaseURL(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for name, want := range pinnedPlans {
		var got string
		err := s.queryPinned(ctx, `SELECT current_setting($1)`, []any{name}, func(rows pgx.Rows) error { return rows.Scan(&got) })
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("pinned session: %s = %q, want %q", name, got, want)
		}
		var plain string
		if err := s.pool.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&plain); err != nil {
			t.Fatal(err)
		}
		if plain == want {
			t.Errorf("the main pool's sessions have %s = %q too", name, plain)
		}
	}
}
