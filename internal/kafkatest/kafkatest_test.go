package kafkatest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

func messages(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "v%d", i)}
	}
	return msgs
}

// TestRoundTrip: a new topic takes a produce at once; ReadAll, the high watermarks and a
// Collector all see every message, a key on one partition in the order produced.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "kit", 3)
	col := kafkatest.Collect(t, brokers, topic)
	const n = 50
	kafkatest.Produce(t, brokers, topic, messages(n)...)

	all := kafkatest.ReadAll(t, brokers, topic)
	if len(all) != n {
		t.Fatalf("ReadAll: %d messages, want %d", len(all), n)
	}
	partitionOf, last := map[string]int{}, map[string]int{}
	for i, m := range all {
		if i > 0 && (m.Partition < all[i-1].Partition || m.Partition == all[i-1].Partition && m.Offset <= all[i-1].Offset) {
			t.Fatalf("ReadAll not sorted by partition and offset at %d", i)
		}
		k := string(m.Key)
		if p, ok := partitionOf[k]; ok && p != m.Partition {
			t.Errorf("key %s on partitions %d and %d", k, p, m.Partition)
		}
		partitionOf[k] = m.Partition
		var v int
		if _, err := fmt.Sscanf(string(m.Value), "v%d", &v); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[k]; ok && v <= prev {
			t.Errorf("key %s: v%d read after v%d", k, v, prev)
		}
		last[k] = v
	}
	var sum int64
	for _, end := range kafkatest.HighWatermarks(t, brokers, topic) {
		sum += end
	}
	if sum != n {
		t.Errorf("high watermarks add up to %d, want %d", sum, n)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := col.Wait(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || col.Len() != n || len(col.Arrivals()) != 7 {
		t.Errorf("collector: %d messages, Len %d, %d keys; want %d, %d, 7", len(got), col.Len(), len(col.Arrivals()), n, n)
	}
	if ok, err := col.CaughtUp(ctx); err != nil || !ok {
		t.Errorf("CaughtUp = %v, %v after every message was read", ok, err)
	}
	kafkatest.Produce(t, brokers, topic, kafka.Message{Key: []byte("late"), Value: []byte("late")})
	kafkatest.WaitFor(t, 30*time.Second, func() bool {
		// A context per check: ctx above may be spent by now on a loaded machine.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ok, err := col.CaughtUp(ctx)
		return err == nil && ok && col.Len() == n+1
	}, "the collector to read the late message")
}

// TestCollectorWaitGivesUp: Wait returns what there is and the context's error.
func TestCollectorWaitGivesUp(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "kit", 1)
	kafkatest.Produce(t, brokers, topic, messages(2)...)
	col := kafkatest.Collect(t, brokers, topic)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	got, err := col.Wait(ctx, 3)
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != 2 {
		t.Errorf("Wait(3) on 2 messages = %d messages, %v; want 2 and a deadline error", len(got), err)
	}
}

// TestWriteWaitsForTheTopic: a write to a topic that another party creates a moment later
// goes through.
func TestWriteWaitsForTheTopic(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	c := kafkatest.Cluster{Brokers: brokers}
	topic := kafkatest.RandomName("kit-late")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	written := make(chan error, 1)
	go func() { written <- c.Write(ctx, topic, messages(3)...) }()
	if err := c.CreateTopic(ctx, topic, 2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteTopic(context.Background(), topic) })
	if err := <-written; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := kafkatest.ReadAll(t, brokers, topic); len(got) != 3 {
		t.Errorf("%d messages, want 3", len(got))
	}
	if err := c.CreateTopic(ctx, topic, 2); !errors.Is(err, kafka.TopicAlreadyExists) {
		t.Errorf("CreateTopic of an existing topic = %v, want TopicAlreadyExists", err)
	}
}

// TestGroupOffsetsAndMembers: a group member that reads and commits is seen by WaitMembers,
// and its commits by CommittedOffsets; a group that never committed has -1.
func TestGroupOffsetsAndMembers(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	c := kafkatest.Cluster{Brokers: brokers}
	topic := kafkatest.NewTopic(t, brokers, "kit", 2)
	group := kafkatest.RandomName("kit-g")
	kafkatest.Produce(t, brokers, topic, messages(10)...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	none, err := c.CommittedOffsets(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(none) != 2 || none[0] != -1 || none[1] != -1 {
		t.Errorf("offsets of a new group = %v, want -1 for both partitions", none)
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, Topic: topic, GroupID: group, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	t.Cleanup(func() { _ = r.Close() })
	for range 10 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	kafkatest.WaitMembers(t, brokers, group, topic, 1)
	ends := kafkatest.HighWatermarks(t, brokers, topic)
	got, err := c.CommittedOffsets(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		want := end
		if end == 0 {
			want = -1 // an empty partition: nothing to commit
		}
		if got[p] != want {
			t.Errorf("partition %d: committed %d, want %d", p, got[p], want)
		}
	}
}

func TestPoll(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := kafkatest.Poll(ctx, func() bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Poll of a condition that never holds = %v, want the deadline", err)
	}
	n := 0
	if err := kafkatest.Poll(t.Context(), func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Errorf("Poll = %v after %d checks, want nil after 3", err, n)
	}
	start := time.Now()
	kafkatest.WaitFor(t, time.Minute, func() bool { return time.Since(start) > 50*time.Millisecond }, "50ms")
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	m := kafka.Message{Headers: []kafka.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("3")}}}
	if v, ok := kafkatest.Header(m, "a"); !ok || v != "1" {
		t.Errorf(`Header(a) = %q, %v; want the first, "1"`, v, ok)
	}
	if _, ok := kafkatest.Header(m, "c"); ok {
		t.Error("Header(c) found")
	}
	if h := kafkatest.Headers(m); len(h) != 2 || h["a"] != "3" || h["b"] != "2" {
		t.Errorf("Headers = %v", h)
	}
}
