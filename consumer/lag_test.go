package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

// TestLag: a group that committed nothing lags by the whole partition; a
// commit at the end of a partition brings its lag to 0, the others' stay.
func TestLag(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "lag", 2)
	group := kafkatest.RandomName("lag-group")
	var msgs []kafka.Message
	for i := range 10 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("v")})
	}
	kafkatest.Produce(t, brokers, topic, msgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	lr, err := NewLagReader(brokers, Security{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lr.Close)
	// A fresh broker answers a group's offsets only once its offsets topic
	// exists: until then Lag says so with an error.
	var lag map[int]int64
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		var err error
		lag, err = lr.Lag(ctx, group, topic)
		return err == nil
	}, "the broker to answer the group's offsets")
	if len(lag) != 2 || lag[0]+lag[1] != 10 {
		t.Fatalf("lag before any commit = %v, want 10 over 2 partitions", lag)
	}
	hw := kafkatest.HighWatermarks(t, brokers, topic)
	tr := &kafka.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: hw[0]}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
	}
	lag, err = lr.Lag(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if lag[0] != 0 || lag[1] != hw[1] {
		t.Errorf("lag after committing partition 0 = %v, want 0 and %d", lag, hw[1])
	}
}

func TestIsIdleTimeout(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]bool{
		"unknown error while fetching: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout":                       true,
		"fetch: context deadline exceeded":                                                                   true,
		"kafka.(*Reader): the kafka reader got an unknown error reading partition 3 of in at offset 12: EOF": false,
		"broker not available": false,
	} {
		if got := isIdleTimeout(text); got != want {
			t.Errorf("isIdleTimeout(%q) = %v, want %v", text, got, want)
		}
	}
}
