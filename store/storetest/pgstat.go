package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald/internal/testenv"
)

// durableSettings are what a durable figure needs: every commit flushed to
// disk (fsync, synchronous_commit) and torn pages repairable
// (full_page_writes). The dev stack's cluster runs with all three off.
var durableSettings = []string{"fsync", "synchronous_commit", "full_page_writes"}

// Durable switches the PostgreSQL server on DATABASE_URL to durable commits
// (fsync, synchronous_commit and full_page_writes on, with ALTER SYSTEM and a
// reload) until the benchmark ends, reads the settings back with SHOW on a
// new session, and logs them. On cleanup it puts back what was there. The
// switch is server-wide: tests that share the server while it runs are
// slower, never wrong. Benchmarks that call it run one after the other
// (go test runs packages in parallel): each holds an advisory lock from the
// switch to the put-back, and the next waits for it (30 minutes at most).
// A benchmark killed before its cleanup leaves the server durable (slower,
// never wrong) until ALTER SYSTEM RESET of the three and a reload, or a new
// stack (make down up).
func Durable(tb testing.TB) {
	tb.Helper()
	base := testenv.DatabaseURL(tb)
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer lcancel()
	lock, err := pgx.Connect(lctx, base)
	if err != nil {
		tb.Fatalf("connect to DATABASE_URL: %v (%s)", err, howToStart)
	}
	if _, err := lock.Exec(lctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		_ = lock.Close(context.Background())
		tb.Fatalf("wait for the other durable benchmark: %v", err)
	}
	// Registered first, so it runs last: after the settings are put back.
	// Closing the session releases the lock.
	tb.Cleanup(func() { _ = lock.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to DATABASE_URL: %v (%s)", err, howToStart)
	}
	defer conn.Close(ctx)
	// What ALTER SYSTEM held before (nothing: the config files' value).
	before := map[string]string{}
	rows, err := conn.Query(ctx, `SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf' AND name = ANY($1)`, durableSettings)
	if err != nil {
		tb.Fatalf("read postgresql.auto.conf: %v", err)
	}
	for rows.Next() {
		var name, setting string
		if err := rows.Scan(&name, &setting); err != nil {
			tb.Fatalf("read postgresql.auto.conf: %v", err)
		}
		before[name] = setting
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("read postgresql.auto.conf: %v", err)
	}
	set := func(ctx context.Context, conn *pgx.Conn, values map[string]string) error {
		for _, name := range durableSettings {
			q := "ALTER SYSTEM RESET " + name
			if v, ok := values[name]; ok {
				q = "ALTER SYSTEM SET " + name + " = '" + strings.ReplaceAll(v, "'", "''") + "'"
			}
			if _, err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		_, err := conn.Exec(ctx, `SELECT pg_reload_conf()`)
		return err
	}
	on := map[string]string{}
	for _, name := range durableSettings {
		on[name] = "on"
	}
	if err := set(ctx, conn, on); err != nil {
		tb.Fatalf("switch PostgreSQL to durable commits: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("put PostgreSQL's durability settings back: %v", err)
			return
		}
		defer c.Close(ctx)
		if err := set(ctx, c, before); err != nil {
			tb.Errorf("put PostgreSQL's durability settings back: %v", err)
		}
	})
	// The postmaster reloads, then each new session starts with the new
	// values: wait for one that shows them all.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := Settings(ctx, base)
		if err != nil {
			tb.Fatalf("read durability settings: %v", err)
		}
		if got == "fsync=on synchronous_commit=on full_page_writes=on" {
			tb.Logf("PostgreSQL: %s", got)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("PostgreSQL did not take durable settings within 10s: %s", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Settings reads fsync, synchronous_commit and full_page_writes with SHOW on
// a new session to url, as "fsync=on synchronous_commit=on ...".
func Settings(ctx context.Context, url string) (string, error) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	var parts []string
	for _, name := range durableSettings {
		var v string
		if err := c.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			return "", err
		}
		parts = append(parts, name+"="+v)
	}
	return strings.Join(parts, " "), nil
}

// Statements reads pg_stat_statements for one database (the server loads
// the module; the extension is created in that database on first use): what
// the statements run there cost, a figure that does not depend on the load.
type Statements struct {
	url  string
	conn *pgx.Conn
	dbid uint32
}

// StatementsSample is the database's statements' totals so far, and the
// server's WAL position.
type StatementsSample struct {
	Calls, Rows, WALRecords, WALFPI int64
	WALBytes                        float64
	ExecTime                        float64 // ms
	LSN                             int64   // the server's WAL position (every database's writes)
	perStatement                    map[string]statementTotals
}

type statementTotals struct {
	calls, rows, walRecords int64
	walBytes, execTime      float64
}

// NewStatements opens a session to url (a test database) for reading its
// statements' statistics, closed when the test ends.
func NewStatements(tb testing.TB, url string) *Statements {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect for pg_stat_statements: %v (%s)", err, howToStart)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		tb.Fatalf("create extension pg_stat_statements (the server must load it: shared_preload_libraries, as scripts/devstack.sh starts it): %v", err)
	}
	s := &Statements{url: url, conn: conn}
	if err := conn.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = current_database()`).Scan(&s.dbid); err != nil {
		tb.Fatalf("read the database's oid: %v", err)
	}
	return s
}

// Sample reads the totals so far. Its own queries are left out.
func (s *Statements) Sample(tb testing.TB) StatementsSample {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := StatementsSample{perStatement: map[string]statementTotals{}}
	rows, err := s.conn.Query(ctx, `
		SELECT query, calls, rows, wal_records, wal_fpi, wal_bytes::float8, total_exec_time
		FROM pg_stat_statements
		WHERE dbid = $1 AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_wal_lsn%'`, s.dbid)
	if err != nil {
		tb.Fatalf("read pg_stat_statements: %v", err)
	}
	for rows.Next() {
		var (
			q   string
			t   statementTotals
			fpi int64
		)
		if err := rows.Scan(&q, &t.calls, &t.rows, &t.walRecords, &fpi, &t.walBytes, &t.execTime); err != nil {
			tb.Fatalf("read pg_stat_statements: %v", err)
		}
		out.Calls += t.calls
		out.Rows += t.rows
		out.WALRecords += t.walRecords
		out.WALFPI += fpi
		out.WALBytes += t.walBytes
		out.ExecTime += t.execTime
		old := out.perStatement[q]
		out.perStatement[q] = statementTotals{old.calls + t.calls, old.rows + t.rows, old.walRecords + t.walRecords, old.walBytes + t.walBytes, old.execTime + t.execTime}
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("read pg_stat_statements: %v", err)
	}
	if err := s.conn.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'`).Scan(&out.LSN); err != nil {
		tb.Fatalf("read the WAL position: %v", err)
	}
	return out
}

// Since is what was spent from from to s.
func (s StatementsSample) Since(from StatementsSample) StatementsSample {
	d := StatementsSample{
		Calls: s.Calls - from.Calls, Rows: s.Rows - from.Rows, WALRecords: s.WALRecords - from.WALRecords,
		WALFPI: s.WALFPI - from.WALFPI, WALBytes: s.WALBytes - from.WALBytes, ExecTime: s.ExecTime - from.ExecTime,
		LSN: s.LSN - from.LSN, perStatement: map[string]statementTotals{},
	}
	for q, t := range s.perStatement {
		f := from.perStatement[q]
		if t.calls == f.calls {
			continue
		}
		d.perStatement[q] = statementTotals{t.calls - f.calls, t.rows - f.rows, t.walRecords - f.walRecords, t.walBytes - f.walBytes, t.execTime - f.execTime}
	}
	return d
}

// Add adds d (a Since) to s: the totals of several runs.
func (s *StatementsSample) Add(d StatementsSample) {
	s.Calls += d.Calls
	s.Rows += d.Rows
	s.WALRecords += d.WALRecords
	s.WALFPI += d.WALFPI
	s.WALBytes += d.WALBytes
	s.ExecTime += d.ExecTime
	s.LSN += d.LSN
	if s.perStatement == nil {
		s.perStatement = map[string]statementTotals{}
	}
	for q, t := range d.perStatement {
		o := s.perStatement[q]
		s.perStatement[q] = statementTotals{o.calls + t.calls, o.rows + t.rows, o.walRecords + t.walRecords, o.walBytes + t.walBytes, o.execTime + t.execTime}
	}
}

// Report adds, per unit since from: statements (a round trip each, BEGIN
// and COMMIT included), WAL bytes (the server's, commit records and every
// database's writes included: run alone) and WAL records and full-page
// images of the statements. It logs each statement's calls, WAL and
// execution time per unit, the heaviest first.
func (s *Statements) Report(b *testing.B, from StatementsSample, n int, unit string) {
	b.Helper()
	s.Sample(b).Since(from).Report(b, n, unit)
}

// Report adds s's figures (a Since, or the sum of several) per unit to b's
// metrics, as Statements.Report.
func (s StatementsSample) Report(b *testing.B, n int, unit string) {
	b.Helper()
	per := func(v float64) float64 { return v / float64(n) }
	b.ReportMetric(per(float64(s.Calls)), "stmts/"+unit)
	b.ReportMetric(per(float64(s.LSN)), "wal-B/"+unit)
	b.ReportMetric(per(float64(s.WALRecords)), "wal-recs/"+unit)
	b.ReportMetric(per(float64(s.WALFPI)), "wal-fpi/"+unit)
	b.ReportMetric(per(s.ExecTime)*1000, "pg-exec-µs/"+unit)
	lines := make([]string, 0, len(s.perStatement))
	for q, t := range s.perStatement {
		lines = append(lines, fmt.Sprintf("%8.1f µs %7.2f wal-recs %8.1f wal-B %6.4f calls /%s: %s",
			per(t.execTime)*1000, per(float64(t.walRecords)), per(t.walBytes), per(float64(t.calls)), unit, oneLine(q)))
	}
	slices.Sort(lines) // each starts with its right-aligned time
	slices.Reverse(lines)
	b.Logf("statements per %s (exec time, WAL records, WAL bytes, calls):\n%s", unit, strings.Join(lines, "\n"))
}

func oneLine(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 140 {
		q = q[:140] + "…"
	}
	return q
}
