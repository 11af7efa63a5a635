package reversal

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/tracing"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// BenchmarkExecutor drives b.N in-flight payments (query, reversal, confirm:
// three gateway calls each) to their outcome against an in-process sandbox
// with no latency, and reports attempts/s. The attempts are spread over 1,000
// merchants, so the figure is the executor's and the database's, not QFPay's
// rate limit: with pacing off, and with the group's shared pacing at 400/min
// (its cost: the reservations, grouped per instance, and the paced claim).
// Run: make bench, or
// go test -run '^$' -bench BenchmarkExecutor -benchtime 3000x ./reversal
func BenchmarkExecutor(b *testing.B) {
	for _, pacing := range []string{"off", "cluster"} {
		for _, workers := range []int{32, 64} {
			b.Run(fmt.Sprintf("pacing=%s/workers=%d", pacing, workers), func(b *testing.B) {
				benchExecutor(b, workers, pacing == "cluster", nil)
			})
		}
	}
}

// BenchmarkExecutorTraced is BenchmarkExecutor (pacing off) with tracing on
// as the daemon wires it: every drive, step, QFPay call and statement makes
// spans, batched to an exporter that drops them (the cost of the spans, not
// of a network).
func BenchmarkExecutorTraced(b *testing.B) {
	for _, workers := range []int{32, 64} {
		b.Run(fmt.Sprintf("pacing=off/workers=%d", workers), func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			benchExecutor(b, workers, false, tp)
		})
	}
}

// discard is a span exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func benchExecutor(b *testing.B, workers int, paced bool, tp trace.TracerProvider) {
	b.Helper()
	opts := store.Options{MaxConns: int32(workers + 8)}
	qcfg := qfpay.Config{AppCode: testAppCode, ClientKey: qfpay.NewKey(testKey), Timeout: 5 * time.Second}
	hooks := ExecutorHooks{}
	var tracer trace.Tracer
	if tp != nil {
		opts.Tracer, qcfg.TracerProvider = tracing.PgxTracer(tp), tp
		tracer = tp.Tracer("bench")
	}
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: testAppCode, Key: testKey})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	dbURL := storetest.URL(b)
	st, err := store.Open(context.Background(), dbURL, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	qcfg.BaseURL = url
	gw, err := qfpay.NewDirectory([]qfpay.Credential{{Name: "default", Default: true, Config: qcfg}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(gw.CloseIdleConnections)
	ctx := context.Background()
	txdtm := time.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout)
	var ids []int64
	for lo := 0; lo < b.N; lo += 500 {
		var batch []reversald.Event
		for i := lo; i < min(lo+500, b.N); i++ {
			mch := fmt.Sprintf("M%04d", i%1000)
			otn := fmt.Sprintf("BENCH%08d", i)
			if err := sb.Put(sandbox.Txn{MchID: mch, OutTradeNo: otn, State: sandbox.StateInFlight, TxAmt: 2500, TxDtm: txdtm}); err != nil {
				b.Fatal(err)
			}
			e := reversald.Event{EventID: otn, MchID: mch, OutTradeNo: otn, TxAmt: 2500, TxDtm: txdtm, PayType: "800101"}
			if tracer != nil {
				// As intake stores it: the context of the event's span.
				sctx, span := tracer.Start(ctx, "process")
				e.Trace = tracing.Stored(sctx)
				span.End()
			}
			batch = append(batch, e)
		}
		res, err := st.Intake(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, res.NewAttempts...)
	}
	finals := make(chan struct{}, b.N)
	var paceWaits, paceWaited atomic.Int64 // what pacing costs each gateway call
	rate := -1.0
	if paced {
		rate = 400
	}
	hooks.Final = func(reversald.Status) { finals <- struct{}{} }
	hooks.PaceWait = func(d time.Duration, _ bool) { paceWaits.Add(1); paceWaited.Add(int64(d)) }
	if tp != nil {
		hooks = hooks.Traced(tp)
	}
	ex, err := NewExecutor(ExecutorConfig{
		Owner: "bench", Workers: workers, PollInterval: 20 * time.Millisecond, MerchantRate: rate, SharedPacing: paced, Policy: DefaultPolicy,
		Logger: slog.New(slog.DiscardHandler),
		Hooks:  hooks,
	}, st, gw)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	// Steady state: PostgreSQL's statistics know the backlog, as they do
	// once autovacuum has seen a table (a minute after a fresh database
	// fills, on its default settings).
	storetest.Analyze(b, dbURL)
	cpu := storetest.NewCPU(b)
	b.ResetTimer()
	cpuFrom := cpu.Sample(b)
	go func() { done <- ex.Run(runCtx) }()
	ex.Notify(ids) // the hand-off path the daemon takes; polling finds what does not fit
	for range b.N {
		<-finals
	}
	b.StopTimer()
	cpu.Report(b, cpuFrom, b.N, "attempt")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attempts/s")
	if n := paceWaits.Load(); n > 0 {
		b.ReportMetric(float64(paceWaited.Load())/float64(n)/1e3, "pace-µs/call")
	}
	if err := sb.CheckInvariants(); err != nil {
		b.Fatal(err)
	}
}
