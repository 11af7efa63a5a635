package consumer

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// BenchmarkIntake measures end-to-end intake throughput on the real stack: 10,000 valid events
// already in a 4-partition topic, from group join to the last batch recorded and committed.
// Run: make up && . .stack/env && go test -run=^$ -bench=Intake -benchtime=3x ./consumer
func BenchmarkIntake(b *testing.B) {
	brokers := kafkaBrokers(b)
	const n, partitions = 10_000, 4
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db := newTestDB(b)
				in := newTopic(b, brokers, "bench", partitions)
				msgs := make([]kafka.Message, n)
				for k := range msgs {
					msgs[k] = kafka.Message{Key: fmt.Appendf(nil, "T%05d", k), Value: validValueN(k)}
				}
				produce(b, brokers, in, msgs...)
				cfg := intakeConfig(brokers, in, in+"-dlq", randomName("g"))
				cfg.BatchSize = batch
				it, counts := newCountedIntake(b, cfg, db.st)
				b.StartTimer()
				start := time.Now()
				stop := runInBackground(b, it.Run)
				waitFor(b, 5*time.Minute, "all events recorded", func() bool { return counts.stats().Messages == n })
				total += time.Since(start)
				b.StopTimer()
				stop()
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
		})
	}
}
