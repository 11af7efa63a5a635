package store

import (
	"context"

	"github.com/reversald/reversald"
)

// IntakeVia runs one intake transaction on the path asked for (copy: the
// copy path when no event_id is recorded, else the upsert path), without
// the fallback, and tells whether the copy path wrote the batch.
func IntakeVia(ctx context.Context, s *Store, events []reversald.Event, copyPath bool) (IntakeResult, bool, error) {
	b, err := s.intake(ctx, events, copyPath)
	if err != nil {
		return IntakeResult{}, false, err
	}
	return b.judge(), b.copied, nil
}
