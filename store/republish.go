package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
)

// OutcomeFilter picks stored outcomes (outbox rows). A zero field does not
// filter; the fields that are set must all match.
type OutcomeFilter struct {
	Statuses   []reversald.Status // any of them
	MchID      string
	OutTradeNo string
	EventIDs   []string // any of them
	// Time ranges: From inclusive, To exclusive; zero is open.
	DecidedFrom, DecidedTo     time.Time
	PublishedFrom, PublishedTo time.Time
}

// Validate names every status that no outcome can have.
func (f OutcomeFilter) Validate() error {
	var errs []error
	for _, s := range f.Statuses {
		if !s.Final() || !validStatus(s) {
			errs = append(errs, fmt.Errorf("no outcome has status %q", s))
		}
	}
	return errors.Join(errs...)
}

// PublishedOutcomes calls fn with the outcomes f picks that have been
// published, in the order they were queued (so a later outcome of an event,
// after an operator's retry, comes after the earlier one), in pages of at most
// page rows. It returns how many it handed to fn. Unpublished outcomes are
// left out: the publisher sends them. fn returning an error stops the walk
// with it.
func (s *Store) PublishedOutcomes(ctx context.Context, f OutcomeFilter, page int, fn func([]OutboxRecord) error) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, fmt.Errorf("published outcomes: %w", err)
	}
	if page < 1 {
		return 0, fmt.Errorf("published outcomes: page must be at least 1, got %d", page)
	}
	statuses := make([]string, len(f.Statuses))
	for i, st := range f.Statuses {
		statuses[i] = string(st)
	}
	total := int64(0)
	after := int64(0)
	for {
		// Keyset paging on the outbox id: each page is one short query, so a
		// long walk holds no transaction open against the hot path. The
		// attempt_id conditions repeat the out_trade_no and event_id filters
		// in a form the indexes serve (attempts' key, events' primary key,
		// outbox by attempt), so a narrow filter reads a few rows, not the
		// outbox.
		rows, err := s.pool.Query(ctx, `
			SELECT `+outboxColumns+`
			FROM outbox o JOIN events e ON e.event_id = o.event_id
			WHERE o.published_at IS NOT NULL AND o.id > $1
			  AND (cardinality($2::text[]) = 0 OR o.status = ANY($2::text[]))
			  AND ($3 = '' OR e.mchid = $3)
			  AND ($4 = '' OR e.out_trade_no = $4)
			  AND ($4 = '' OR o.attempt_id IN (SELECT a.id FROM attempts a WHERE a.out_trade_no = $4 AND ($3 = '' OR a.mchid = $3)))
			  AND (cardinality($5::text[]) = 0 OR o.event_id = ANY($5::text[]))
			  AND (cardinality($5::text[]) = 0 OR o.attempt_id IN (SELECT ev.attempt_id FROM events ev WHERE ev.event_id = ANY($5::text[])))
			  AND ($6::timestamptz IS NULL OR o.decided_at >= $6)
			  AND ($7::timestamptz IS NULL OR o.decided_at < $7)
			  AND ($8::timestamptz IS NULL OR o.published_at >= $8)
			  AND ($9::timestamptz IS NULL OR o.published_at < $9)
			ORDER BY o.id
			LIMIT $10`,
			after, statuses, f.MchID, f.OutTradeNo, nonNil(f.EventIDs),
			optTime(f.DecidedFrom), optTime(f.DecidedTo), optTime(f.PublishedFrom), optTime(f.PublishedTo), page)
		if err != nil {
			return int(total), fmt.Errorf("published outcomes after outbox row %d: %w", after, err)
		}
		recs, err := pgx.CollectRows(rows, scanOutbox)
		if err != nil {
			return int(total), fmt.Errorf("published outcomes after outbox row %d: %w", after, err)
		}
		if len(recs) == 0 {
			return int(total), nil
		}
		if err := fn(recs); err != nil {
			return int(total), err
		}
		total += int64(len(recs))
		after = recs[len(recs)-1].ID
		if len(recs) < page {
			return int(total), nil
		}
	}
}

// optTime is nil (SQL NULL) for the zero time.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
