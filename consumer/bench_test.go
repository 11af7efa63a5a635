package consumer

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

// BenchmarkIntake measures end-to-end intake throughput on the real stack: 10,000 valid events
// already in a 4-partition topic, from group join to the last batch recorded and committed.
// Run: make up && . .stack/env && go test -run=^$ -bench=Intake -benchtime=3x ./consumer
func BenchmarkIntake(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	const n, partitions = 10_000, 4
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db := newTestDB(b)
				in := kafkatest.NewTopic(b, brokers, "bench", partitions)
				msgs := make([]kafka.Message, n)
				for k := range msgs {
					msgs[k] = kafka.Message{Key: fmt.Appendf(nil, "T%05d", k), Value: validValueN(k)}
				}
				kafkatest.Produce(b, brokers, in, msgs...)
				cfg := intakeConfig(brokers, in, in+"-dlq", kafkatest.RandomName("g"))
				cfg.BatchSize = batch
				it, counts := newCountedIntake(b, cfg, db.st)
				b.StartTimer()
				start := time.Now()
				stop := runInBackground(b, it.Run)
				kafkatest.WaitFor(b, 5*time.Minute, func() bool { return counts.stats().Messages == n }, "all events recorded")
				total += time.Since(start)
				b.StopTimer()
				stop()
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
		})
	}
}
