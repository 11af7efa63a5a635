package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

// letterOf is what ReadDeadLetters makes of the dead letter DeadLetters writes for orig.
func letterOf(orig kafka.Message, reason string) DeadLetter {
	d := &DeadLetters{cfg: DeadLetterConfig{MaxBytes: DefaultMaxDeadLetterBytes}}
	m := d.message(Letter{Message: orig, Reason: reason}, "2024-05-01T04:30:00.5Z")
	return decodeDeadLetter(0, 7, time.Unix(0, 0).UTC(), m.Key, m.Value, m.Headers)
}

func TestDecodeDeadLetter(t *testing.T) {
	t.Parallel()
	orig := kafka.Message{Topic: "in", Partition: 2, Offset: 41, Key: []byte("T1"), Value: []byte(`{"out_trade_no":"T1"}`),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("abc")}}}
	l := letterOf(orig, "invalid event: txamt is required")
	if l.Reason != "invalid event: txamt is required" || l.Origin != (Origin{"in", 2, 41}) || l.Origin.String() != "in/2/41" ||
		!l.At.Equal(time.Date(2024, 5, 1, 4, 30, 0, 5e8, time.UTC)) || l.TruncatedFrom != 0 || len(l.Problems) != 0 {
		t.Fatalf("decoded %+v", l)
	}
	if len(l.Headers) != 1 || l.Headers[0].Key != "trace" {
		t.Errorf("original headers %v, want only trace", l.Headers)
	}
	if l.EventID() != "in/2/41" {
		t.Errorf("event_id of a value without one: %q, want the origin", l.EventID())
	}
	if err := l.Replayable(); err != nil {
		t.Errorf("replayable: %v", err)
	}
	orig.Value = []byte(`{"event_id":"pos-1","out_trade_no":"T1"}`)
	if id := letterOf(orig, "x").EventID(); id != "pos-1" {
		t.Errorf("event_id %q, want the value's", id)
	}

	// Too big for the dead-letter topic: cut, and never replayed.
	orig.Value = bytes.Repeat([]byte("v"), 2<<20)
	big := letterOf(orig, "invalid event: value is too big")
	if big.TruncatedFrom != 2<<20 || !errors.Is(big.Replayable(), ErrNotReplayable) {
		t.Errorf("truncated letter: from %d, replayable %v", big.TruncatedFrom, big.Replayable())
	}
	if _, err := ReplayMessage(big); !errors.Is(err, ErrNotReplayable) {
		t.Errorf("replay of a truncated letter: %v", err)
	}

	// Not written by reversald: every problem named, no origin, so a value
	// without event_id cannot be replayed.
	odd := decodeDeadLetter(1, 2, time.Time{}, []byte("k"), []byte(`{}`), []kafka.Header{
		{Key: HeaderDLQPartition, Value: []byte("-3")}, {Key: HeaderDLQAt, Value: []byte("yesterday")},
		{Key: "x-dlq-future", Value: []byte("kept")},
	})
	for _, want := range []string{"x-dlq-partition \"-3\"", "x-dlq-at \"yesterday\"", "x-dlq-error is missing", "x-dlq-topic is missing", "x-dlq-offset is missing"} {
		if !strings.Contains(strings.Join(odd.Problems, "; "), want) {
			t.Errorf("problems %q lack %q", odd.Problems, want)
		}
	}
	if odd.Origin.Known() || odd.EventID() != "" || !errors.Is(odd.Replayable(), ErrNotReplayable) {
		t.Errorf("letter without origin: %+v, event_id %q, replayable %v", odd.Origin, odd.EventID(), odd.Replayable())
	}
	if len(odd.Headers) != 1 || odd.Headers[0].Key != "x-dlq-future" {
		t.Errorf("an unknown x-dlq-* header should be shown with the others: %v", odd.Headers)
	}
	odd.Value = []byte(`{"event_id":"e-odd"}`)
	if m, err := ReplayMessage(odd); err != nil || len(m.Headers) != 0 {
		t.Errorf("replay of a letter with an unknown x-dlq-* header: %v, headers %v; want none of ours", err, m.Headers)
	}
}

func TestReplayMessage(t *testing.T) {
	t.Parallel()
	orig := kafka.Message{Topic: "in", Partition: 2, Offset: 41, Key: []byte("T1"), Value: []byte(`{"out_trade_no":"T1"}`),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("abc")}}}
	m, err := ReplayMessage(letterOf(orig, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Key) != "T1" || string(m.Value) != string(orig.Value) || m.Topic != "" {
		t.Errorf("replay %+v", m)
	}
	if got := kafkatest.Headers(m); len(got) != 2 || got["trace"] != "abc" || got[HeaderReplayOf] != "in/2/41" {
		t.Errorf("replay headers %v, want trace and %s=in/2/41", got, HeaderReplayOf)
	}
	if fallbackEventID(kafka.Message{Topic: "in", Partition: 0, Offset: 999, Headers: m.Headers}) != "in/2/41" {
		t.Error("intake does not take the replay's origin as the event_id")
	}

	// The replay is refused again and dead-lettered at in/0/999, then
	// replayed again: it keeps the first origin, once.
	again := orig
	again.Partition, again.Offset, again.Headers = 0, 999, m.Headers
	m2, err := ReplayMessage(letterOf(again, "still refused"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range m2.Headers {
		if h.Key == HeaderReplayOf {
			n++
			if string(h.Value) != "in/2/41" {
				t.Errorf("second replay's origin %q, want the first in/2/41", h.Value)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d %s headers, want 1", n, HeaderReplayOf)
	}
}

func TestFallbackEventID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header []kafka.Header
		want   string
	}{
		{"none", nil, "in/1/5"},
		{"replay", []kafka.Header{{Key: HeaderReplayOf, Value: []byte("in/0/3")}}, "in/0/3"},
		{"empty", []kafka.Header{{Key: HeaderReplayOf}}, "in/1/5"},
		{"too long", []kafka.Header{{Key: HeaderReplayOf, Value: bytes.Repeat([]byte("a"), 129)}}, "in/1/5"},
		{"control character", []kafka.Header{{Key: HeaderReplayOf, Value: []byte("in/0/3\n")}}, "in/1/5"},
		{"not UTF-8", []kafka.Header{{Key: HeaderReplayOf, Value: []byte{0xff, 0xfe}}}, "in/1/5"},
	} {
		if got := fallbackEventID(kafka.Message{Topic: "in", Partition: 1, Offset: 5, Headers: tc.header}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestReadDeadLettersIsBounded: a read ends at the high watermarks seen when
// it started, even while letters keep arriving, and decodes what the real
// writer wrote; an empty topic reads nothing; a missing one is an error that
// creates nothing.
func TestReadDeadLettersIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "dlqread", 3)
	dl, err := NewDeadLetters(DeadLetterConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dl.Close() })
	write := func(from, n int) {
		t.Helper()
		var ls []Letter
		for i := from; i < from+n; i++ {
			ls = append(ls, Letter{Reason: fmt.Sprintf("reason %d", i), Message: kafka.Message{
				Topic: "in", Partition: i % 4, Offset: int64(100 + i), Key: fmt.Appendf(nil, "K%d", i), Value: []byte(`{}`)}})
		}
		if err := dl.Write(ctx, ls...); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 7)
	cfg := DeadLetterReadConfig{Brokers: brokers, Topic: topic}
	var got []DeadLetter
	err = ReadDeadLetters(ctx, cfg, func(l DeadLetter) error {
		if len(got) == 0 {
			write(7, 3) // arrive during the read: not part of it
		}
		got = append(got, l)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("read %d letters, want the 7 there at the start", len(got))
	}
	for _, l := range got {
		var i int
		if _, err := fmt.Sscanf(string(l.Key), "K%d", &i); err != nil {
			t.Fatalf("key %q", l.Key)
		}
		if l.Reason != fmt.Sprintf("reason %d", i) || l.Origin != (Origin{"in", i % 4, int64(100 + i)}) || l.At.IsZero() || len(l.Problems) != 0 {
			t.Errorf("letter %s decoded as %+v", l.Key, l)
		}
	}
	// Again, one record batch per fetch (the broker answers at least one whole batch): the two
	// writes are two batches per partition, so the read takes several fetches.
	small := cfg
	small.fetchBytes = 1
	var keys []string
	if err := ReadDeadLetters(ctx, small, func(l DeadLetter) error { keys = append(keys, string(l.Key)); return nil }); err != nil || len(keys) != 10 {
		t.Errorf("second read: %d letters (%v), %v; want 10", len(keys), keys, err)
	}
	if slices.Sort(keys); len(slices.Compact(keys)) != len(keys) {
		t.Errorf("a letter read twice: %v", keys)
	}
	stop := errors.New("stop")
	if err := ReadDeadLetters(ctx, cfg, func(DeadLetter) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: %v", err)
	}

	empty := kafkatest.NewTopic(t, brokers, "dlqempty", 2)
	if err := ReadDeadLetters(ctx, DeadLetterReadConfig{Brokers: brokers, Topic: empty}, func(DeadLetter) error {
		t.Error("a letter in an empty topic")
		return nil
	}); err != nil {
		t.Errorf("empty topic: %v", err)
	}

	missing := kafkatest.RandomName("nosuch")
	err = ReadDeadLetters(ctx, DeadLetterReadConfig{Brokers: brokers, Topic: missing}, func(DeadLetter) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing topic: %v", err)
	}
	if _, err := NewTopicWriter(ctx, TopicWriterConfig{Brokers: brokers, Topic: missing}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("writer to a missing topic: %v", err)
	}
	if _, err := (kafkatest.Cluster{Brokers: brokers}).HighWatermarks(ctx, missing); err == nil {
		t.Errorf("looking at %s created it", missing)
	}
}
