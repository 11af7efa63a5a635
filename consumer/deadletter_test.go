package consumer

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

func TestDeadLetterMessage(t *testing.T) {
	t.Parallel()
	d := &DeadLetters{cfg: DeadLetterConfig{MaxBytes: DefaultMaxDeadLetterBytes}}
	orig := kafka.Message{
		Topic: "in", Partition: 2, Offset: 41,
		Key: []byte("T1"), Value: []byte(`{"x":1}`),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("abc")}},
	}
	m := d.message(Letter{Message: orig, Reason: "invalid event: out_trade_no is required"}, "2024-05-01T04:30:00Z")
	if m.Topic != "" || m.Partition != 0 || m.Offset != 0 {
		t.Fatalf("dead letter keeps the original topic/partition/offset fields: %+v", m)
	}
	if string(m.Key) != "T1" || string(m.Value) != `{"x":1}` {
		t.Fatalf("key/value changed: %q %q", m.Key, m.Value)
	}
	want := map[string]string{
		"trace": "abc", HeaderDLQError: "invalid event: out_trade_no is required", HeaderDLQTopic: "in",
		HeaderDLQPartition: "2", HeaderDLQOffset: "41", HeaderDLQAt: "2024-05-01T04:30:00Z",
	}
	for k, v := range want {
		if got, ok := kafkatest.Header(m, k); !ok || got != v {
			t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := kafkatest.Header(m, HeaderDLQTruncated); ok {
		t.Error("small value marked truncated")
	}
}

func TestDeadLetterMessageTruncatesHugeValue(t *testing.T) {
	t.Parallel()
	d := &DeadLetters{cfg: DeadLetterConfig{MaxBytes: DefaultMaxDeadLetterBytes}}
	value := bytes.Repeat([]byte("v"), 2<<20)
	m := d.message(Letter{Message: kafka.Message{Topic: "in", Key: []byte("k"), Value: value}, Reason: "too big"}, "now")
	if got, _ := kafkatest.Header(m, HeaderDLQTruncated); got != strconv.Itoa(len(value)) {
		t.Fatalf("x-dlq-truncated = %q, want %d", got, len(value))
	}
	if size := letterSize(m.Key, m.Value, m.Headers); size > DefaultMaxDeadLetterBytes {
		t.Fatalf("letter is %d bytes, over %d", size, DefaultMaxDeadLetterBytes)
	}
	if len(m.Value) < DefaultMaxDeadLetterBytes-1024 || !bytes.Equal(m.Value, value[:len(m.Value)]) {
		t.Fatalf("kept value is %d bytes, not a prefix of about %d", len(m.Value), DefaultMaxDeadLetterBytes)
	}
}

// TestDeadLettersOnKafka writes a normal and a 2 MiB letter (over the broker's default 1 MiB
// limit) to a real DLQ topic and reads both back.
func TestDeadLettersOnKafka(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "dlq", 1)
	d, err := NewDeadLetters(DeadLetterConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	at := time.Date(2024, 5, 1, 4, 30, 0, 0, time.UTC)
	d.now = func() time.Time { return at }

	huge := bytes.Repeat([]byte("x"), 2<<20)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = d.Write(ctx,
		Letter{Message: kafka.Message{Topic: "in", Partition: 1, Offset: 7, Key: []byte("T1"), Value: []byte("{"),
			Headers: []kafka.Header{{Key: "trace", Value: []byte("t-1")}}}, Reason: "invalid event: value is not valid JSON"},
		Letter{Message: kafka.Message{Topic: "in", Partition: 0, Offset: 9, Key: nil, Value: huge}, Reason: "invalid event: value is 2097152 bytes"},
	)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := kafkatest.ReadAll(t, brokers, topic)
	if len(got) != 2 {
		t.Fatalf("read %d dead letters, want 2", len(got))
	}
	byOffset := map[string]kafka.Message{}
	for _, m := range got {
		off, _ := kafkatest.Header(m, HeaderDLQOffset)
		byOffset[off] = m
	}
	small, big := byOffset["7"], byOffset["9"]
	if string(small.Key) != "T1" || string(small.Value) != "{" {
		t.Errorf("small letter key/value = %q/%q", small.Key, small.Value)
	}
	for k, v := range map[string]string{"trace": "t-1", HeaderDLQError: "invalid event: value is not valid JSON",
		HeaderDLQTopic: "in", HeaderDLQPartition: "1", HeaderDLQAt: "2024-05-01T04:30:00Z"} {
		if h, _ := kafkatest.Header(small, k); h != v {
			t.Errorf("small letter header %s = %q, want %q", k, h, v)
		}
	}
	if h, _ := kafkatest.Header(big, HeaderDLQTruncated); h != "2097152" {
		t.Errorf("big letter x-dlq-truncated = %q", h)
	}
	if len(big.Value) == 0 || len(big.Value) > DefaultMaxDeadLetterBytes || !bytes.Equal(big.Value, huge[:len(big.Value)]) {
		t.Errorf("big letter value is %d bytes, want a prefix of at most %d", len(big.Value), DefaultMaxDeadLetterBytes)
	}
}
