package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store/storetest"
)

// BenchmarkIntake records batches of new events (one transaction per batch)
// and reports events/s. Run: make bench, or
// go test -run '^$' -bench BenchmarkIntake -benchtime 40x ./store
func BenchmarkIntake(b *testing.B) {
	for _, size := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := storetest.New(b)
			ctx := context.Background()
			payload := []byte(`{"event_id":"x","out_trade_no":"y","txamt":2500,"txdtm":"2026-11-22 09:59:00"}`)
			n := 0
			b.ResetTimer()
			for range b.N {
				batch := make([]reversald.Event, size)
				for j := range batch {
					n++
					batch[j] = reversald.Event{
						EventID: fmt.Sprintf("bench-%d", n), MchID: fmt.Sprintf("M%03d", n%100),
						OutTradeNo: fmt.Sprintf("OTN%09d", n), TxAmt: 2500, TxCurrCd: "HKD",
						TxDtm: "2026-11-22 09:59:00", PayType: "800101",
						Source: reversald.Source{Topic: "payment-uncertain", Partition: n % 12, Offset: int64(n), Payload: payload},
					}
				}
				if _, err := s.Intake(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
