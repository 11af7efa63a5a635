package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// BenchmarkPurgeUnderIntake seeds PURGE_BENCH_ATTEMPTS (default 1,000,000)
// final attempts decided 200 days ago, each with an event, a gateway call
// and a published outcome, then runs intake (batches of 500 new events, one
// transaction each, as INTAKE_BATCH_SIZE's default) without interruption
// while Purge(90d, batches of 1000, PURGE_BENCH_PAUSE between them, default
// 0) runs in every other 10-second window, until every seeded attempt is
// gone. It reports intake's rate in the windows without and with the purge,
// and the purge's rate. Run: make bench-purge, or
// go test -run '^$' -bench BenchmarkPurgeUnderIntake -benchtime 1x -timeout 60m ./store
func BenchmarkPurgeUnderIntake(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("PURGE_BENCH_ATTEMPTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("PURGE_BENCH_ATTEMPTS=%q: want a positive number", v)
		}
	}
	var pause time.Duration
	if v := os.Getenv("PURGE_BENCH_PAUSE"); v != "" {
		var err error
		if pause, err = time.ParseDuration(v); err != nil || pause < 0 {
			b.Fatalf("PURGE_BENCH_PAUSE=%q: want a duration", v)
		}
	}
	window := 10 * time.Second
	ctx := context.Background()
	url := storetest.URL(b)
	s, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	seedStart := time.Now()
	seedFinal(b, url, n)
	b.Logf("seeded %d final attempts with their events, calls and published outcomes in %s", n, time.Since(seedStart).Round(time.Second))

	next := 0
	intake := func(stop func() bool) float64 {
		start, events := time.Now(), 0
		for !stop() {
			batch := make([]reversald.Event, 500)
			for j := range batch {
				next++
				batch[j] = reversald.Event{
					EventID: fmt.Sprintf("live-%d", next), MchID: fmt.Sprintf("M%03d", next%100),
					OutTradeNo: fmt.Sprintf("LIVE%09d", next), TxAmt: 2500, TxCurrCd: "HKD",
					TxDtm: "2026-11-22 09:59:00", PayType: "800101",
					Source: reversald.Source{Topic: "payment-uncertain", Partition: next % 12, Offset: int64(next), Payload: []byte(`{}`)},
				}
			}
			if _, err := s.Intake(ctx, batch); err != nil {
				b.Fatal(err)
			}
			events += len(batch)
		}
		return float64(events) / time.Since(start).Seconds()
	}
	until := func(d time.Duration) func() bool {
		end := time.Now().Add(d)
		return func() bool { return time.Now().After(end) }
	}

	b.ResetTimer()
	for range b.N {
		// Windows without and with the purge alternate until it is done, so
		// that both rates see the same drift of a shared machine and a
		// growing table: off, on, off, on, ..., off.
		type result struct {
			r   store.PurgeResult
			err error
		}
		var (
			off, on   []float64
			purged    int64
			purgeTime time.Duration
			batches   int
		)
		for {
			off = append(off, intake(until(window)))
			pctx, cancel := context.WithCancel(ctx)
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				r, err := s.Purge(pctx, 90*24*time.Hour, 1000, pause)
				done <- result{r, err}
			}()
			var (
				pr       result
				finished bool
			)
			end := time.Now().Add(window)
			on = append(on, intake(func() bool {
				select {
				case pr = <-done:
					finished = true
				default:
				}
				return finished || time.Now().After(end)
			}))
			cancel()
			if !finished {
				pr = <-done
			}
			purgeTime += time.Since(start)
			if pr.err != nil && !errors.Is(pr.err, context.Canceled) {
				b.Fatal(pr.err)
			}
			// A batch whose commit raced the window's end may be done and
			// not counted: the database says what is left.
			batches += pr.r.Batches
			if finished && pr.err == nil {
				break
			}
		}
		off = append(off, intake(until(window)))
		if left := seededLeft(b, url); left != 0 {
			b.Fatalf("%d seeded attempts left after the purge", left)
		}
		purged = int64(n)
		mean := func(xs []float64) float64 {
			sum := 0.0
			for _, x := range xs {
				sum += x
			}
			return sum / float64(len(xs))
		}
		b.ReportMetric(mean(off), "intake_events/s_without_purge")
		b.ReportMetric(mean(on), "intake_events/s_with_purge")
		b.ReportMetric(float64(purged)/purgeTime.Seconds(), "purged_attempts/s")
		b.ReportMetric(purgeTime.Seconds(), "purge_s")
		b.Logf("intake without the purge %.0f events/s, with it %.0f (%.0f%%), over %d and %d windows of %s; purge of %d attempts in %s (%d batches, pause %s)",
			mean(off), mean(on), 100*mean(on)/mean(off), len(off), len(on), window, purged, purgeTime.Round(time.Millisecond), batches, pause)
		b.Logf("windows without: %.0f", off)
		b.Logf("windows with:    %.0f", on)
	}
}

// seededLeft counts the seeded attempts still there.
func seededLeft(b *testing.B, url string) int {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM attempts WHERE out_trade_no LIKE 'SEED%'`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// seedFinal bulk-writes n final attempts decided 200 days ago, each with one
// event, one gateway call and one published outcome, with generate_series.
func seedFinal(b *testing.B, url string, n int) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		`INSERT INTO attempts (mchid, out_trade_no, txamt, txcurrcd, txdtm, status, step, method, next_run_at, deadline_at,
		                       first_seen_at, decided_at, updated_at, token, gateway_calls)
		 SELECT 'S' || (g % 100), 'SEED' || g, 2500, 'HKD', '2026-01-01 10:00:00', 'reversed', 'done', 'reversal',
		        t, t + interval '24 hours', t, t, t, 1, 1
		 FROM generate_series(1, $1::int) g, (SELECT now() - interval '200 days' AS t) c`,
		`INSERT INTO events (event_id, attempt_id, mchid, out_trade_no, txamt, txcurrcd, txdtm, topic, kafka_offset, received_at)
		 SELECT 'seed-' || a.id, a.id, a.mchid, a.out_trade_no, 2500, 'HKD', a.txdtm, 'payment-uncertain', a.id, a.first_seen_at
		 FROM attempts a WHERE a.out_trade_no LIKE 'SEED%' AND $1::int > 0`,
		`INSERT INTO gateway_calls (attempt_id, token, step, endpoint, request, http_status, respcd, response, latency_us, called_at)
		 SELECT a.id, 1, 'query', 'query', jsonb_build_object('out_trade_no', a.out_trade_no), 200, '0000', '\x7b7d'::bytea, 1000, a.decided_at
		 FROM attempts a WHERE a.out_trade_no LIKE 'SEED%' AND $1::int > 0`,
		`INSERT INTO outbox (event_id, attempt_id, status, method, syssn, cancel_syssn, respcd, resperr, respmsg, reason,
		                     gateway_calls, decided_at, created_at, published_at)
		 SELECT 'seed-' || a.id, a.id, 'reversed', 'reversal', '', '', '0000', '', '', 'QFPay confirms the reversal', 1,
		        a.decided_at, a.decided_at, a.decided_at
		 FROM attempts a WHERE a.out_trade_no LIKE 'SEED%' AND $1::int > 0`,
	} {
		if _, err := conn.Exec(ctx, sql, n); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatalf("vacuum analyze after the seed: %v", err)
	}
}
