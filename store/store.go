package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/reversald/reversald/migrations"
)

// Sentinel errors callers can test with errors.Is.
var (
	// ErrFenced: the attempt was claimed by someone else since this worker's
	// claim (its token moved on); nothing was written to the attempt.
	ErrFenced = errors.New("lease lost: attempt was claimed by another worker")
	// ErrNotFound: no attempt with that id or key.
	ErrNotFound = errors.New("attempt not found")
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// Now is the clock; time.Now when nil. Tests inject a fake one, which
	// then also stands in for PostgreSQL's clock in leases; production
	// leaves it nil, and leases run on PostgreSQL's clock only.
	Now func() time.Time
	// Deadline is how long after intake an attempt may run before it must be
	// decided; default 24h.
	Deadline time.Duration
	// MaxConns caps the pool; 0 keeps pgxpool's default.
	MaxConns int32
	// Tracer, when set, traces every statement (pgx's tracer interface;
	// the daemon gives an OpenTelemetry one when tracing is on). nil: none.
	Tracer pgx.QueryTracer
}

// Validate reports every problem with o.
func (o Options) Validate() error {
	var errs []error
	if o.Deadline < 0 {
		errs = append(errs, fmt.Errorf("deadline must not be negative, got %s", o.Deadline))
	}
	if o.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max conns must not be negative, got %d", o.MaxConns))
	}
	return errors.Join(errs...)
}

// Store is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	pinned    *pgxpool.Pool // a few sessions whose plans are pinned (queryPinned)
	now       func() time.Time
	testClock func() time.Time // Options.Now; nil in production
	deadline  time.Duration
}

// Open connects a pool to databaseURL. It does not migrate.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("store options: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", errMalformedURL)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Tracer != nil {
		cfg.ConnConfig.Tracer = opts.Tracer
	}
	pcfg := cfg.Copy()
	pcfg.MaxConns, pcfg.MinConns = pinnedConns, 0
	pcfg.ConnConfig.RuntimeParams = maps.Clone(cfg.ConnConfig.RuntimeParams)
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	maps.Copy(pcfg.ConnConfig.RuntimeParams, pinnedPlans)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	pinned, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	s := &Store{pool: pool, pinned: pinned, now: opts.Now, testClock: opts.Now, deadline: opts.Deadline}
	if s.now == nil {
		s.now = time.Now
	}
	if s.deadline == 0 {
		s.deadline = 24 * time.Hour
	}
	return s, nil
}

// Close closes the pools, waiting for connections in use to be returned.
func (s *Store) Close() {
	s.pool.Close()
	s.pinned.Close()
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Migrate applies every pending migration in migrations.FS to databaseURL.
// It is safe to run from several instances at once: goose serialises them
// with a PostgreSQL advisory lock.
func Migrate(ctx context.Context, databaseURL string) error {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", errMalformedURL)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	locker, err := lockerForMigrations()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// errMalformedURL stands in for pgx's parse error, which can quote the
// connection string and with it a password.
var errMalformedURL = errors.New("malformed connection string (details withheld: it may hold a password)")

func lockerForMigrations() (lock.SessionLocker, error) {
	l, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	return l, nil
}

// dbClock is the time leases are set and compared with: PostgreSQL's now(),
// unless a test gave the store its own clock ($1 then, see clock). No
// instance's clock decides who owns an attempt.
var dbClock = clockParam(1)

// clockParam is dbClock with its parameter at position n of a statement.
func clockParam(n int) string { return fmt.Sprintf("COALESCE($%d::timestamptz, now())", n) }

// clock is dbClock's parameter: the test clock's time, or NULL.
func (s *Store) clock() *time.Time {
	if s.testClock == nil {
		return nil
	}
	t := s.testClock()
	return &t
}

// pinnedConns is the size of the pool of pinned sessions: the claims (one
// dispatcher an instance), the pacing reservations and the grouped step
// writes (WriteSteps; at most two statements under way each) need no more.
const pinnedConns = 6

// pinnedPlans are the settings of the pinned sessions.
var pinnedPlans = map[string]string{
	"plan_cache_mode": "force_generic_plan",
	"enable_seqscan":  "off", "enable_bitmapscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off",
}

// queryPinned runs one statement on a session whose plans are pinned
// (pinnedPlans) and calls each for every row. For the statements that run
// all the time and whose best plan is always the same, index lookups and
// nested loops, whatever PostgreSQL's statistics say: left to choose,
// PostgreSQL plans them again at every call (which cost more than running
// the fair claim), and while its statistics are stale (the first minute of a
// fresh database, before autovacuum has looked) it reads the whole backlog
// with bitmap scans. Settings of the session, not of each call: nothing is
// added to the round trip.
func (s *Store) queryPinned(ctx context.Context, sql string, args []any, each func(pgx.Rows) error) error {
	rows, err := s.pinned.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
