package consumer

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/store/storetest"
)

// BenchmarkIntake measures intake on the real stack, Kafka to PostgreSQL with
// the offsets committed, on a durable server (storetest.Durable: fsync,
// synchronous_commit and full_page_writes on, read back and logged): 20,000
// valid events already in a 4-partition topic. events/s counts from the
// group join to the last batch committed; steady-events/s from the first
// batch committed to the last (the join left out). Per event: CPU of this
// process (the intake: the topic is filled before) and of PostgreSQL, statements and WAL (run alone: the WAL and PostgreSQL's CPU
// are the server's).
// Run: make up && . .stack/env && go test -run=^$ -bench=Intake -benchtime=3x ./consumer
func BenchmarkIntake(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	storetest.Durable(b)
	const n, partitions = 20_000, 4
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var total, steady time.Duration
			var steadyEvents int
			cpu := storetest.NewCPU(b)
			var cpuFrom storetest.CPUSample
			var cpuTotal storetest.CPUSample
			var stmtsTotal storetest.StatementsSample
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db := newTestDB(b)
				stmts := storetest.NewStatements(b, db.url)
				in := kafkatest.NewTopic(b, brokers, "bench", partitions)
				msgs := make([]kafka.Message, n)
				for k := range msgs {
					msgs[k] = kafka.Message{Key: fmt.Appendf(nil, "T%05d", k), Value: validValueN(k)}
				}
				kafkatest.Produce(b, brokers, in, msgs...)
				cfg := intakeConfig(brokers, in, in+"-dlq", kafkatest.RandomName("g"))
				cfg.BatchSize = batch
				var (
					mu          sync.Mutex
					done        int
					first, last time.Time
					firstN      int
				)
				cfg.Hooks.Batch = func(m int) {
					mu.Lock()
					defer mu.Unlock()
					done += m
					last = time.Now()
					if first.IsZero() {
						first, firstN = last, m
					}
				}
				it, err := NewIntake(cfg, db.st)
				if err != nil {
					b.Fatal(err)
				}
				s0 := stmts.Sample(b)
				cpuFrom = cpu.Sample(b)
				b.StartTimer()
				start := time.Now()
				stop := runInBackground(b, it.Run)
				kafkatest.WaitFor(b, 5*time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return done >= n }, "all events recorded")
				b.StopTimer()
				mu.Lock()
				total += last.Sub(start)
				steady += last.Sub(first)
				steadyEvents += done - firstN
				mu.Unlock()
				c := cpu.Sample(b)
				cpuTotal.Process += c.Process - cpuFrom.Process
				cpuTotal.Server += c.Server - cpuFrom.Server
				stmtsTotal.Add(stmts.Sample(b).Since(s0))
				stop()
				if got := db.count(b, "events"); got != n {
					b.Fatalf("%d events recorded, want %d", got, n)
				}
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
			b.ReportMetric(float64(steadyEvents)/steady.Seconds(), "steady-events/s")
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n*b.N) }
			b.ReportMetric(per(cpuTotal.Process), "proc-cpu-µs/event")
			b.ReportMetric(per(cpuTotal.Server), "pg-cpu-µs/event")
			stmtsTotal.Report(b, n*b.N, "event")
		})
	}
}
