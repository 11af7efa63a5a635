package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/reversal"
)

// BenchmarkVersusNaive is issue 13's same-run comparison: b.N
// payment-uncertain events (every payment in flight: query, reversal,
// confirm) over 12 partitions, read first by a naive consumer and then by
// the daemon (a process, with its database), each from a topic of its own
// holding the same events, against the same sandbox (reset in between). It
// reports both rates and ratio = reversald / naive.
//
// The naive consumer keeps no state and guarantees nothing past a crash; it
// is what the daemon's durability costs are measured against: one goroutine
// per partition, each fetching a message, making the three signed calls with
// the project's QFPay client, and committing its offset, in turn.
//
//	make bench-naive (20,000 payments, as issue 13 measures)
//	go test -run '^$' -bench VersusNaive -benchtime 20000x ./cmd/reversald
func BenchmarkVersusNaive(b *testing.B) {
	for _, workers := range []int{64, 128, 256} {
		b.Run(fmt.Sprintf("gateway=0s/workers=%d", workers), func(b *testing.B) {
			const partitions = 12
			s := newStack(b, partitions)
			msgs := benchEvents(b.N, false)

			naiveIn := kafkatest.RandomName("naive")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c := kafkatest.Cluster{Brokers: s.brokers}
			if err := c.CreateTopic(ctx, naiveIn, partitions); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = c.DeleteTopic(ctx, naiveIn)
			})
			s.inFlight(b, 0)
			naive := s.measureNaive(b, naiveIn, partitions, msgs)

			s.sb.Reset()
			s.inFlight(b, 0)
			r := s.measureDaemon(b, workers, 0, nil, msgs)
			b.StopTimer()
			r.report(b)
			b.ReportMetric(naive, "naive-events/s")
			ratio := r.outcomesPerSec() / naive
			b.ReportMetric(ratio, "ratio")
			if b.N == 1 {
				return // the benchmark framework's first, one-event run: no figure
			}
			fmt.Printf("%s: reversald %.0f outcomes/s, naive per-partition consumer %.0f events/s: ratio = reversald / naive = %.2f\n",
				b.Name(), r.outcomesPerSec(), naive, ratio)
		})
	}
}

// measureNaive runs the naive consumer on topic (partitions of them) while
// msgs are produced to it in slices of 500, as measureDaemon does, and
// returns its events/s: from the first produce to the last commit. It then
// checks that every offset was committed, that the sandbox saw three calls
// an event, and the sandbox's invariants.
func (s *stack) measureNaive(b *testing.B, topic string, partitions int, msgs []kafka.Message) float64 {
	b.Helper()
	gw, err := qfpay.New(qfpay.Config{BaseURL: s.sbURL, AppCode: e2eAppCode, ClientKey: qfpay.NewKey(secretKey), Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer gw.CloseIdleConnections()
	group := kafkatest.RandomName("naive-g")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := int64(len(msgs))
	var (
		done     atomic.Int64
		lastMu   sync.Mutex
		last     time.Time
		finished = make(chan struct{})
		errs     = make(chan error, partitions)
		wg       sync.WaitGroup
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Transport: transport}
	// A group PostgreSQL-free consumers commit to without joining: its
	// coordinator is looked up once before the first commit.
	if _, err := client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer}); err != nil {
		b.Fatalf("find the naive group's coordinator: %v", err)
	}
	for p := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := naivePartition(runCtx, s.brokers, client, topic, group, p, gw, func() {
				lastMu.Lock()
				last = time.Now()
				lastMu.Unlock()
				if done.Add(1) == n {
					close(finished)
				}
			})
			if err != nil && runCtx.Err() == nil {
				errs <- fmt.Errorf("partition %d: %w", p, err)
			}
		}()
	}
	b.ResetTimer()
	start := time.Now()
	for lo := 0; lo < len(msgs); lo += 500 {
		s.produce(topic, msgs[lo:min(lo+500, len(msgs))]...)
	}
	select {
	case <-finished:
	case err := <-errs:
		b.Fatal(err)
	case <-ctx.Done():
		b.Fatalf("naive consumer: %d of %d events after 10 minutes", done.Load(), n)
	}
	b.StopTimer()
	stop()
	wg.Wait()
	lastMu.Lock()
	elapsed := last.Sub(start)
	lastMu.Unlock()

	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	cl := kafkatest.Cluster{Brokers: s.brokers}
	// A partition created a moment ago may still answer "not leader".
	var ends map[int]int64
	if perr := kafkatest.Poll(cctx, func() bool { ends, err = cl.HighWatermarks(cctx, topic); return err == nil }); perr != nil {
		b.Fatalf("naive topic's end offsets: %v (last: %v)", perr, err)
	}
	committed, err := cl.CommittedOffsets(cctx, group, topic)
	if err != nil {
		b.Fatal(err)
	}
	for p, end := range ends {
		if end > 0 && committed[p] != end {
			b.Fatalf("naive consumer: partition %d committed %d of %d", p, committed[p], end)
		}
	}
	if calls := len(s.sb.Entries()); calls != 3*len(msgs) {
		b.Fatalf("naive consumer: the sandbox saw %d calls for %d events, want 3 each", calls, len(msgs))
	}
	if err := s.sb.CheckInvariants(); err != nil {
		b.Fatal(err)
	}
	return float64(n) / elapsed.Seconds()
}

// naivePartition is the naive consumer's loop for one partition, from its
// first offset: fetch, query, reversal or close, query, commit, until ctx
// ends. Offsets are committed to group as a standalone consumer (no
// membership), one commit a message.
func naivePartition(ctx context.Context, brokers []string, client *kafka.Client, topic, group string, partition int, gw *qfpay.Client, handled func()) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 50 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return err
		}
		e, err := reversal.DecodeEvent(m.Value, "")
		if err != nil {
			return fmt.Errorf("offset %d: %w", m.Offset, err)
		}
		q := qfpay.QueryRequest{MchID: e.MchID, OutTradeNo: e.OutTradeNo}
		if t, err := time.Parse(qfpay.TxDtmLayout, e.TxDtm); err == nil {
			// QFPay's range stays inside the month of txdtm.
			from, to := t.Add(-24*time.Hour), t.Add(48*time.Hour)
			if month := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC); from.Before(month) {
				from = month
			}
			if end := time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second); to.After(end) {
				to = end
			}
			q.StartTime, q.EndTime = from.Format(qfpay.TxDtmLayout), to.Format(qfpay.TxDtmLayout)
		}
		if _, err := gw.Query(ctx, q); err != nil {
			return err
		}
		cancelReq := qfpay.CancelRequest{MchID: e.MchID, Syssn: e.Syssn, OutTradeNo: e.OutTradeNo, TxAmt: e.TxAmt, TxDtm: e.TxDtm, Udid: e.Udid}
		if _, err := gw.Cancel(ctx, e.PayType, cancelReq); err != nil {
			return err
		}
		if _, err := gw.Query(ctx, q); err != nil {
			return err
		}
		res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
			Addr: client.Addr, GroupID: group, GenerationID: -1,
			Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: partition, Offset: m.Offset + 1}}},
		})
		if err != nil {
			return fmt.Errorf("commit offset %d: %w", m.Offset+1, err)
		}
		for _, ps := range res.Topics {
			for _, pr := range ps {
				if pr.Error != nil {
					return fmt.Errorf("commit offset %d: %w", m.Offset+1, pr.Error)
				}
			}
		}
		handled()
	}
}
