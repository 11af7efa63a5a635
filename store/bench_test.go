package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// BenchmarkIntake records batches of new events (one transaction per batch)
// on a durable server (storetest.Durable: fsync, synchronous_commit and
// full_page_writes on for its run, read back and logged) and reports
// events/s, and per event the load-independent costs: CPU of this process
// and of PostgreSQL, statements, WAL bytes and records (pg_stat_statements,
// pg_current_wal_lsn). Run alone: the WAL and PostgreSQL's CPU are the
// server's. Run: make bench, or
// go test -run '^$' -bench BenchmarkIntake -benchtime 40x ./store
func BenchmarkIntake(b *testing.B) {
	storetest.Durable(b)
	for _, size := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			u := storetest.URL(b)
			s, err := store.Open(ctx, u, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			cpu, stmts := storetest.NewCPU(b), storetest.NewStatements(b, u)
			payload := []byte(`{"event_id":"x","out_trade_no":"y","txamt":2500,"txdtm":"2026-11-22 09:59:00"}`)
			n := 0
			batches := make([][]reversald.Event, b.N)
			for i := range batches {
				batches[i] = make([]reversald.Event, size)
				for j := range batches[i] {
					n++
					batches[i][j] = reversald.Event{
						EventID: fmt.Sprintf("bench-%d", n), MchID: fmt.Sprintf("M%03d", n%100),
						OutTradeNo: fmt.Sprintf("OTN%09d", n), TxAmt: 2500, TxCurrCd: "HKD",
						TxDtm: "2026-11-22 09:59:00", PayType: "800101",
						Source: reversald.Source{Topic: "payment-uncertain", Partition: n % 12, Offset: int64(n), Payload: payload},
					}
				}
			}
			c0, s0 := cpu.Sample(b), stmts.Sample(b)
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.Intake(ctx, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
			cpu.Report(b, c0, b.N*size, "event")
			stmts.Report(b, s0, b.N*size, "event")
		})
	}
}
