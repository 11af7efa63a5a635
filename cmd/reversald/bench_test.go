package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/store/storetest"
)

// BenchmarkEndToEnd runs the daemon as a process on the local stack:
// b.N payment-uncertain events in (every one in flight, so query, reversal
// and confirm: three gateway calls), b.N outcomes out. It reports outcomes/s,
// event-to-outcome latency (p50, p99: from the produce call to the outcome's
// arrival), gateway calls/s, the daemon's peak resident memory, and the CPU
// time per outcome of the daemon and of PostgreSQL.
//
//	make bench BENCH=EndToEnd BENCHTIME=5000x
//	go test -run '^$' -bench EndToEnd -benchtime 5000x ./cmd/reversald
func BenchmarkEndToEnd(b *testing.B) {
	for _, c := range []struct {
		latency time.Duration
		workers int
		rate    int    // events/s offered; 0: all at once (throughput)
		pacing  string // "": off, one merchant; "off" or "cluster": over 1,000 merchants
	}{
		{0, 32, 0, ""}, {0, 64, 0, ""}, {0, 128, 0, ""}, {0, 256, 0, ""}, {0, 32, 300, ""},
		{100 * time.Millisecond, 64, 0, ""}, {100 * time.Millisecond, 256, 0, ""}, {100 * time.Millisecond, 512, 0, ""},
		{100 * time.Millisecond, 64, 150, ""},
		{0, 64, 0, "off"}, {0, 64, 0, "cluster"},
	} {
		name := fmt.Sprintf("gateway=%s/workers=%d/rate=max", c.latency, c.workers)
		if c.rate > 0 {
			name = fmt.Sprintf("gateway=%s/workers=%d/rate=%d", c.latency, c.workers, c.rate)
		}
		if c.pacing != "" {
			name += "/merchants=1000/pacing=" + c.pacing
		}
		b.Run(name, func(b *testing.B) {
			benchEndToEnd(b, c.latency, c.workers, c.rate, c.pacing)
		})
	}
}

// With rate=max the latency figures are mostly queueing (every event is in
// Kafka at once); the paced runs offer a load below capacity and show the
// pipeline's own event-to-outcome latency.
func benchEndToEnd(b *testing.B, latency time.Duration, workers, rate int, pacing string) {
	b.Helper()
	s := newStack(b, 8)
	s.inFlight(b, latency)
	env := map[string]string{}
	if pacing == "cluster" {
		env["MERCHANT_RATE_PER_MIN"], env["PACING"] = "400", "cluster"
	}
	msgs := benchEvents(b.N, pacing != "")
	r := s.measureDaemon(b, workers, rate, env, msgs)
	b.StopTimer()
	r.report(b)
	if latency > 0 {
		b.ReportMetric(r.callsPerSec()/(float64(workers)/latency.Seconds())*100, "%_of_workers/latency")
	}
}

// inFlight makes every benchmark payment (out_trade_no B...) a payment in
// flight at the sandbox, answered after latency: query, reversal, confirm.
func (s *stack) inFlight(tb testing.TB, latency time.Duration) {
	tb.Helper()
	if err := s.sb.AddRule(sandbox.Rule{Prefix: "B", Behavior: sandbox.Behavior{
		InitialState: sandbox.StateInFlight, Latency: sandbox.Latency{Fixed: sandbox.Duration(latency)},
	}}); err != nil {
		tb.Fatal(err)
	}
}

// benchEvents are n payment-uncertain events, one payment each, of one
// merchant or spread over 1,000.
func benchEvents(n int, merchants bool) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		e := ev{id: fmt.Sprintf("b-%d", i), otn: fmt.Sprintf("B%09d", i), payType: "800101"}
		if merchants {
			e.mchid = fmt.Sprintf("M%04d", i%1000)
		}
		msgs[i] = e.message()
	}
	return msgs
}

// daemonRun is what one run of the daemon measured.
type daemonRun struct {
	n          int
	elapsed    time.Duration
	calls      int
	lat        []time.Duration // event to outcome, sorted
	rss        int64
	daemonCPU  time.Duration
	pgCPU      time.Duration
	brokerCPU  time.Duration // the broker's, 0 when not found
	harnessCPU time.Duration // the test process's: the sandbox, the producer and the collector
	statements storetest.DBStats
}

func (r daemonRun) outcomesPerSec() float64 { return float64(r.n) / r.elapsed.Seconds() }
func (r daemonRun) callsPerSec() float64    { return float64(r.calls) / r.elapsed.Seconds() }

func (r daemonRun) report(b *testing.B) {
	b.Helper()
	b.ReportMetric(r.outcomesPerSec(), "outcomes/s")
	b.ReportMetric(r.callsPerSec(), "calls/s")
	b.ReportMetric(float64(r.lat[len(r.lat)/2].Milliseconds()), "p50_ms")
	b.ReportMetric(float64(r.lat[len(r.lat)*99/100].Milliseconds()), "p99_ms")
	b.ReportMetric(float64(r.rss)/(1<<20), "rss_MiB")
	// CPU per outcome, statements and commits per outcome say more than the
	// rate on a busy machine.
	b.ReportMetric(float64(r.daemonCPU.Microseconds())/float64(r.n), "daemon-cpu-µs/outcome")
	b.ReportMetric(float64(r.pgCPU.Microseconds())/float64(r.n), "pg-cpu-µs/outcome")
	b.ReportMetric(float64(r.harnessCPU.Microseconds())/float64(r.n), "harness-cpu-µs/outcome")
	if r.brokerCPU > 0 {
		b.ReportMetric(float64(r.brokerCPU.Microseconds())/float64(r.n), "broker-cpu-µs/outcome")
	}
	b.ReportMetric(float64(r.statements.Statements)/float64(r.n), "statements/outcome")
	b.ReportMetric(float64(r.statements.Commits)/float64(r.n), "commits/outcome")
	b.ReportMetric(float64(r.statements.WALBytes)/float64(r.n), "wal-B/outcome")
	b.ReportMetric(float64(r.statements.ExecTime.Microseconds())/float64(r.n), "pg-exec-µs/outcome")
	if u := r.statements.AttemptUpdates; u > 0 {
		b.ReportMetric(float64(r.statements.AttemptHOTUpdates)/float64(u)*100, "%hot-updates")
	}
	if r.n > 1 {
		fmt.Printf("%s: the statements PostgreSQL ran most often for %d outcomes:\n%s", b.Name(), r.n, r.statements.Top(14, 150))
	}
}

// measureDaemon starts the daemon as a process with workers, produces msgs
// (all at once, in slices of 500, or rate a second), waits for an outcome
// of each, stops the daemon and checks the sandbox's invariants.
func (s *stack) measureDaemon(b *testing.B, workers, rate int, extra map[string]string, msgs []kafka.Message) daemonRun {
	b.Helper()
	out := s.collect(s.results)
	env := map[string]string{
		"EXECUTOR_WORKERS": strconv.Itoa(workers), "DATABASE_MAX_CONNS": strconv.Itoa(workers + 16),
		"EXECUTOR_LEASE": "30s", "QFPAY_TIMEOUT": "5s", "LOG_LEVEL": "warn",
	}
	maps.Copy(env, extra)
	// BENCH_DAEMON_ENV="K=V,K=V" sets more of the daemon's environment, to
	// compare settings (GOGC=100, INTAKE_BATCH_SIZE=100) on the same runs; a
	// value cannot hold a comma.
	for _, kv := range strings.Split(os.Getenv("BENCH_DAEMON_ENV"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	profile := os.Getenv("BENCH_DAEMON_CPUPROFILE")
	if profile != "" {
		env["PPROF"] = "true"
	}
	p := s.start(env)
	profiled := closed()
	if profile != "" && len(msgs) > 1 {
		// The daemon's own profile of its first seconds under load: where
		// its CPU goes (go tool pprof FILE).
		profiled = s.profileDaemon(b, p, profile, 5*time.Second)
	}
	n := len(msgs)
	cpu := storetest.NewCPU(b)
	b.ResetTimer()
	statsFrom := storetest.Stats(b, s.dbURL)
	cpuFrom, daemonFrom := cpu.Sample(b), storetest.ProcessCPU(b, p.cmd.Process.Pid)
	broker := s.brokerPID()
	brokerFrom := time.Duration(0)
	if broker != 0 {
		brokerFrom = storetest.ProcessCPU(b, broker)
	}
	start := time.Now()
	// Produce in slices so that events enter over time, as they would.
	sent := make(map[string]time.Time, n) // by out_trade_no
	slice, every := 500, time.Duration(0)
	if rate > 0 {
		slice, every = max(1, rate/20), 50*time.Millisecond
	}
	next := time.Now()
	for lo := 0; lo < n; lo += slice {
		if every > 0 {
			time.Sleep(time.Until(next))
			next = next.Add(every)
		}
		hi := min(lo+slice, n)
		at := time.Now()
		s.produce(s.in, msgs[lo:hi]...)
		for _, m := range msgs[lo:hi] {
			sent[string(m.Key)] = at
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := out.Wait(ctx, n); err != nil {
		b.Fatalf("outcomes after 10 minutes: %v", err)
	}
	arrived := out.Arrivals()
	last := start
	for _, at := range arrived {
		if at.After(last) {
			last = at
		}
	}
	r := daemonRun{n: n, elapsed: last.Sub(start)}
	r.lat = make([]time.Duration, 0, n)
	for key, at := range arrived {
		r.lat = append(r.lat, at.Sub(sent[key]))
	}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	r.rss = peakRSS(p.cmd.Process.Pid)
	r.daemonCPU = storetest.ProcessCPU(b, p.cmd.Process.Pid) - daemonFrom
	cpuTo := cpu.Sample(b)
	r.pgCPU, r.harnessCPU = cpuTo.Server-cpuFrom.Server, cpuTo.Process-cpuFrom.Process
	if broker != 0 {
		r.brokerCPU = storetest.ProcessCPU(b, broker) - brokerFrom
	}
	<-profiled
	p.stop(b, syscall.SIGTERM)
	// Read after the stop: the daemon's sessions have published their counts.
	r.statements = storetest.Stats(b, s.dbURL).Since(statsFrom)
	r.calls = len(s.sb.Entries())
	if err := s.sb.CheckInvariants(); err != nil {
		b.Fatal(err)
	}
	return r
}

// brokerPID is the process of the first broker when it runs on this
// machine (the dev stack's), else 0.
func (s *stack) brokerPID() int {
	_, port, err := net.SplitHostPort(s.brokers[0])
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	return storetest.ListenerPID(n)
}

// profileDaemon writes a CPU profile of the next d of p to file, in the
// background; the channel closes when it is written.
func (s *stack) profileDaemon(b *testing.B, p *proc, file string, d time.Duration) <-chan struct{} {
	b.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.addr, int(d.Seconds())))
		if err != nil {
			b.Errorf("daemon CPU profile: %v", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(file)
		if err != nil {
			b.Errorf("daemon CPU profile: %v", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			b.Errorf("daemon CPU profile: %v", err)
		}
	}()
	return done
}

func closed() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// peakRSS reads VmHWM (peak resident set) of a process, in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
