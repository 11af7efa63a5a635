package main

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
		{0, 32, 0, ""}, {0, 64, 0, ""}, {0, 32, 300, ""}, {100 * time.Millisecond, 64, 0, ""}, {100 * time.Millisecond, 64, 150, ""},
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
	if err := s.sb.AddRule(sandbox.Rule{Prefix: "B", Behavior: sandbox.Behavior{
		InitialState: sandbox.StateInFlight, Latency: sandbox.Latency{Fixed: sandbox.Duration(latency)},
	}}); err != nil {
		b.Fatal(err)
	}
	out := s.collect(s.results)
	env := map[string]string{
		"EXECUTOR_WORKERS": strconv.Itoa(workers), "DATABASE_MAX_CONNS": strconv.Itoa(workers + 16),
		"EXECUTOR_LEASE": "30s", "QFPAY_TIMEOUT": "5s", "LOG_LEVEL": "warn",
	}
	if pacing == "cluster" {
		env["MERCHANT_RATE_PER_MIN"], env["PACING"] = "400", "cluster"
	}
	p := s.start(env)
	msgs := make([]kafka.Message, b.N)
	for i := range msgs {
		e := ev{id: fmt.Sprintf("b-%d", i), otn: fmt.Sprintf("B%09d", i), payType: "800101"}
		if pacing != "" {
			e.mchid = fmt.Sprintf("M%04d", i%1000)
		}
		msgs[i] = e.message()
	}
	cpu := storetest.NewCPU(b)
	b.ResetTimer()
	cpuFrom, daemonFrom := cpu.Sample(b), storetest.ProcessCPU(b, p.cmd.Process.Pid)
	start := time.Now()
	// Produce in slices so that events enter over time, as they would.
	sent := make(map[string]time.Time, b.N) // by out_trade_no
	slice, every := 500, time.Duration(0)
	if rate > 0 {
		slice, every = max(1, rate/20), 50*time.Millisecond
	}
	next := time.Now()
	for lo := 0; lo < b.N; lo += slice {
		if every > 0 {
			time.Sleep(time.Until(next))
			next = next.Add(every)
		}
		hi := min(lo+slice, b.N)
		at := time.Now()
		s.produce(s.in, msgs[lo:hi]...)
		for _, m := range msgs[lo:hi] {
			sent[string(m.Key)] = at
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := out.Wait(ctx, b.N); err != nil {
		b.Fatalf("outcomes after 10 minutes: %v", err)
	}
	arrived := out.Arrivals()
	last := start
	for _, at := range arrived {
		if at.After(last) {
			last = at
		}
	}
	elapsed := last.Sub(start)
	b.StopTimer()
	lat := make([]time.Duration, 0, b.N)
	for key, at := range arrived {
		lat = append(lat, at.Sub(sent[key]))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rss := peakRSS(p.cmd.Process.Pid)
	daemonCPU := storetest.ProcessCPU(b, p.cmd.Process.Pid) - daemonFrom
	pgCPU := cpu.Sample(b).Server - cpuFrom.Server
	p.stop(b, syscall.SIGTERM)
	calls := len(s.sb.Entries())
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "outcomes/s")
	b.ReportMetric(float64(calls)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99_ms")
	b.ReportMetric(float64(rss)/(1<<20), "rss_MiB")
	// CPU per outcome says more than the rate on a busy machine.
	b.ReportMetric(float64(daemonCPU.Microseconds())/float64(b.N), "daemon-cpu-µs/outcome")
	b.ReportMetric(float64(pgCPU.Microseconds())/float64(b.N), "pg-cpu-µs/outcome")
	if latency > 0 {
		b.ReportMetric(float64(calls)/elapsed.Seconds()/(float64(workers)/latency.Seconds())*100, "%_of_workers/latency")
	}
	if err := s.sb.CheckInvariants(); err != nil {
		b.Fatal(err)
	}
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
