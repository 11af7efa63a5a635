package storetest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald/internal/testenv"
)

// CPU measures the CPU time that a benchmark costs, which on a busy machine
// says more than its wall-clock rate: this process's (the daemon's code and
// whatever else runs in the test binary) and the PostgreSQL server's on
// DATABASE_URL (its postmaster and every backend, ended ones included). The
// server must run on this machine (the tests' is on loopback).
type CPU struct {
	postmaster int
	overhead   time.Duration // this process's CPU spent in Sample so far
}

// CPUSample is the CPU spent so far.
type CPUSample struct {
	Process, Server time.Duration
}

// NewCPU finds the PostgreSQL server's postmaster.
func NewCPU(tb testing.TB) *CPU {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL(tb))
	if err != nil {
		tb.Fatalf("connect to DATABASE_URL: %v (%s)", err, howToStart)
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		tb.Fatalf("read the backend's pid: %v", err)
	}
	st, err := procStat(backend)
	if err != nil {
		tb.Fatalf("PostgreSQL's processes must be on this machine to measure their CPU: %v", err)
	}
	return &CPU{postmaster: st.ppid}
}

// Sample reads the CPU spent so far. The process's leaves out what Samples
// cost it (reading /proc on a busy machine is a few ms each).
func (c *CPU) Sample(tb testing.TB) CPUSample {
	tb.Helper()
	start := processCPU(tb)
	s := CPUSample{Process: start - c.overhead}
	pm, err := procStat(c.postmaster)
	if err != nil {
		tb.Fatalf("read PostgreSQL's postmaster: %v", err)
	}
	s.Server = pm.self + pm.children // children: the backends that ended
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatalf("read /proc: %v", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(pid); err == nil && st.ppid == c.postmaster {
			s.Server += st.self
		}
	}
	c.overhead += processCPU(tb) - start
	return s
}

// processCPU is this process's CPU time so far (user and system).
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report adds the CPU per op since from to b's metrics.
func (c *CPU) Report(b *testing.B, from CPUSample, n int, unit string) {
	b.Helper()
	to := c.Sample(b)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(per(to.Process-from.Process), "proc-cpu-µs/"+unit)
	b.ReportMetric(per(to.Server-from.Server), "pg-cpu-µs/"+unit)
}

type stat struct {
	ppid           int
	self, children time.Duration
}

// procStat reads /proc/PID/stat: the parent, and CPU in clock ticks (USER_HZ,
// 100 a second on Linux).
func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name is in parentheses and may hold spaces: fields start
	// after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	tick := func(v int64) time.Duration { return time.Duration(v) * (time.Second / 100) }
	// f[0] is the state (field 3): ppid is field 4, utime..cstime 14..17.
	return stat{ppid: int(num(1)), self: tick(num(11) + num(12)), children: tick(num(13) + num(14))}, nil
}

// Analyze updates PostgreSQL's statistics of the database at url, as
// autovacuum does on its own a while after a table changes a lot.
func Analyze(tb testing.TB, url string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect to analyze: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ANALYZE`); err != nil {
		tb.Fatalf("analyze: %v", err)
	}
}

// ProcessCPU is the CPU time process pid has spent so far (a daemon run as
// a process by a benchmark).
func ProcessCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	st, err := procStat(pid)
	if err != nil {
		tb.Fatalf("read the CPU time of process %d: %v", pid, err)
	}
	return st.self
}

// DBStats is what PostgreSQL counted for one database so far: statements
// (pg_stat_statements, which the dev stack preloads; each statement of a
// pipelined batch counts, utility statements such as BEGIN and COMMIT too)
// by text, and committed transactions (pg_stat_database). Unlike a rate,
// neither depends on the machine's load.
type DBStats struct {
	Statements  int64
	Commits     int64
	ByQuery     map[string]int64         // calls by normalised statement text
	TimeByQuery map[string]time.Duration // executor time by normalised statement text
	WALBytes    int64                    // WAL the statements wrote (pg_stat_statements)
	ExecTime    time.Duration            // time the statements spent executing (wall, not CPU)
	// Updates of the attempts table, and how many of them were heap-only
	// (HOT: no index entry written).
	AttemptUpdates, AttemptHOTUpdates int64
}

// Stats reads the counters of the database at url. pg_stat_statements is
// created in it when missing. PostgreSQL publishes a backend's counters
// when its transaction ends and, for pg_stat_database, at most once a
// second while it is busy: read them after the sessions that did the work
// have gone (a stopped daemon), or a little may be missing.
func Stats(tb testing.TB, url string) DBStats {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect to read statement counts: %v (%s)", err, howToStart)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		tb.Fatalf("pg_stat_statements: %v (the dev stack's PostgreSQL preloads it: scripts/devstack.sh)", err)
	}
	// Whatever this session has counted is published before reading.
	if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		tb.Fatalf("clear the statistics snapshot: %v", err)
	}
	st := DBStats{ByQuery: map[string]int64{}, TimeByQuery: map[string]time.Duration{}}
	rows, err := conn.Query(ctx, `
		SELECT query, sum(calls)::bigint, sum(wal_bytes)::bigint, (sum(total_exec_time) * 1000)::bigint FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		GROUP BY query`)
	if err != nil {
		tb.Fatalf("read pg_stat_statements: %v", err)
	}
	for rows.Next() {
		var q string
		var n, wal, us int64
		if err := rows.Scan(&q, &n, &wal, &us); err != nil {
			tb.Fatalf("read pg_stat_statements: %v", err)
		}
		st.ByQuery[q] += n
		st.Statements += n
		st.WALBytes += wal
		st.ExecTime += time.Duration(us) * time.Microsecond
		st.TimeByQuery[q] += time.Duration(us) * time.Microsecond
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("read pg_stat_statements: %v", err)
	}
	if err := conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&st.Commits); err != nil {
		tb.Fatalf("read pg_stat_database: %v", err)
	}
	// No attempts table yet (before the migrations) reads as zero.
	if err := conn.QueryRow(ctx, `
		SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint
		FROM pg_stat_user_tables WHERE relname = 'attempts'`).Scan(&st.AttemptUpdates, &st.AttemptHOTUpdates); err != nil {
		tb.Fatalf("read pg_stat_user_tables: %v", err)
	}
	return st
}

// Since is what was counted between from and s.
func (s DBStats) Since(from DBStats) DBStats {
	d := DBStats{
		Statements: s.Statements - from.Statements, Commits: s.Commits - from.Commits, ByQuery: map[string]int64{},
		WALBytes: s.WALBytes - from.WALBytes, ExecTime: s.ExecTime - from.ExecTime,
		AttemptUpdates: s.AttemptUpdates - from.AttemptUpdates, AttemptHOTUpdates: s.AttemptHOTUpdates - from.AttemptHOTUpdates,
		TimeByQuery: map[string]time.Duration{},
	}
	for q, n := range s.ByQuery {
		if n -= from.ByQuery[q]; n != 0 {
			d.ByQuery[q] = n
			d.TimeByQuery[q] = s.TimeByQuery[q] - from.TimeByQuery[q]
		}
	}
	return d
}

// Top lists the n statements run most often, with their counts and their
// executor time (wall, ms), one line each, their text cut to width.
func (s DBStats) Top(n, width int) string {
	type kv struct {
		q, raw string
		n      int64
	}
	all := make([]kv, 0, len(s.ByQuery))
	for q, c := range s.ByQuery {
		all = append(all, kv{strings.Join(strings.Fields(q), " "), q, c})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].q < all[j].q })
	var b strings.Builder
	for i, e := range all {
		if i == n {
			break
		}
		if len(e.q) > width {
			e.q = e.q[:width] + "…"
		}
		fmt.Fprintf(&b, "%9d %7.0fms  %s\n", e.n, float64(s.TimeByQuery[e.raw])/float64(time.Millisecond), e.q)
	}
	return b.String()
}

// ListenerPID is the process on this machine listening on TCP port (the
// broker of a benchmark, to measure its CPU), or 0 when none is found.
func ListenerPID(port int) int {
	inodes := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// local address is hex ip:port; state 0A is LISTEN.
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			if p, err := strconv.ParseInt(f[1][i+1:], 16, 32); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[target] {
				return pid
			}
		}
	}
	return 0
}
