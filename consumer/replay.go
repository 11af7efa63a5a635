package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

// HeaderReplayOf marks a message that `reversald dlq replay` wrote back to the input topic. It
// holds "topic/partition/offset": where intake first read the original. A value without an
// event_id is recorded under it instead of the replay's own position, so replaying the same
// dead letter twice records one event, as replaying one with an event_id does. It is kept
// through later dead-letter rounds: a replay refused again and replayed again keeps the first
// origin.
const HeaderReplayOf = "x-replay-of"

// maxReplayOfBytes bounds the header as the input contract bounds event_id.
const maxReplayOfBytes = 128

// replayOf returns the first HeaderReplayOf of headers if it can serve as an event_id:
// non-empty, at most 128 bytes of UTF-8 without control characters. Anything else is ignored:
// the message is then recorded as any other.
func replayOf(headers []kafka.Header) (string, bool) {
	for _, h := range headers {
		if h.Key != HeaderReplayOf {
			continue
		}
		v := string(h.Value)
		if v == "" || len(v) > maxReplayOfBytes || !utf8.ValidString(v) || strings.IndexFunc(v, isControl) >= 0 {
			return "", false
		}
		return v, true
	}
	return "", false
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// fallbackEventID is the event_id intake gives a value that has none: the replay header's
// when the message replays a dead letter, else where it was read.
func fallbackEventID(m kafka.Message) string {
	if id, ok := replayOf(m.Headers); ok {
		return id
	}
	return fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
}

// valueEventID returns the value's event_id when it is a non-empty JSON string, "" otherwise
// (as intake reads it: absent, null and "" mean none; another type makes the event invalid).
func valueEventID(value []byte) string {
	var v struct {
		EventID json.RawMessage `json:"event_id"`
	}
	if json.Unmarshal(value, &v) != nil || len(v.EventID) == 0 || v.EventID[0] != '"' {
		return ""
	}
	var id string
	if json.Unmarshal(v.EventID, &id) != nil {
		return ""
	}
	return id
}

// ErrNotReplayable is wrapped by Replayable's answer for a letter that cannot be replayed.
var ErrNotReplayable = errors.New("not replayable")

// Replayable says why l cannot be replayed, or nil. A cut value is not the original; a letter
// with no event_id of its own and no readable origin would be recorded under a new id at each
// replay.
func (l DeadLetter) Replayable() error {
	if l.TruncatedFrom != 0 {
		size := "unknown"
		if l.TruncatedFrom > 0 {
			size = fmt.Sprintf("%d bytes", l.TruncatedFrom)
		}
		return fmt.Errorf("%w: the value was truncated (original size %s); the original is not in the dead letter", ErrNotReplayable, size)
	}
	if l.EventID() == "" {
		return fmt.Errorf("%w: the value has no event_id and the origin headers are missing, so a replay could not be recognised as the same event", ErrNotReplayable)
	}
	return nil
}

// ReplayMessage is the message a replay of l writes: the original key, value and headers (every
// x-dlq-* one removed), marked with HeaderReplayOf.
func ReplayMessage(l DeadLetter) (kafka.Message, error) {
	if err := l.Replayable(); err != nil {
		return kafka.Message{}, err
	}
	origin, ok := replayOf(l.Headers)
	if !ok {
		origin = l.Origin.String()
	}
	headers := make([]kafka.Header, 0, len(l.Headers)+1)
	for _, h := range l.Headers {
		// Our own headers never go back to the input: x-replay-of is set once below, and an
		// x-dlq-* header of a later version would be repeated by the next dead-lettering.
		if h.Key != HeaderReplayOf && !strings.HasPrefix(h.Key, "x-dlq-") {
			headers = append(headers, h)
		}
	}
	if origin != "" {
		headers = append(headers, kafka.Header{Key: HeaderReplayOf, Value: []byte(origin)})
	}
	return kafka.Message{Key: l.Key, Value: l.Value, Headers: headers}, nil
}

// HeaderRepublishedAt marks an outcome that `reversald outcomes republish` sent again, from the
// outbox row the publisher sent first: the time of the republish, RFC 3339 in UTC. The value is
// the stored outcome, unchanged.
const HeaderRepublishedAt = "x-republished-at"

// TopicWriterConfig configures a writer of ops commands (replay, republish) to one topic.
type TopicWriterConfig struct {
	Brokers  []string
	Topic    string
	Security Security
	// WriteTimeout bounds one Write call; 0 means 30s.
	WriteTimeout time.Duration
}

// Validate lists every problem.
func (c TopicWriterConfig) Validate() error {
	errs := validateBrokers(c.Brokers)
	if c.Topic == "" {
		errs = append(errs, errors.New("topic is required"))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("write timeout must not be negative, got %s", c.WriteTimeout))
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// TopicWriter writes messages to one existing topic, acknowledged by all in-sync replicas,
// partitioned by key as Java producers do. Close it when done.
type TopicWriter struct {
	cfg TopicWriterConfig
	w   *kafka.Writer
	tr  *kafka.Transport
}

// replayBatchBytes keeps a write within the broker's default message.max.bytes (1 MiB): a dead
// letter is at most DefaultMaxDeadLetterBytes.
const replayBatchBytes = 1 << 20

// NewTopicWriter checks that cfg.Topic exists (a missing topic is an error, never created) and
// returns a writer to it.
func NewTopicWriter(ctx context.Context, cfg TopicWriterConfig) (*TopicWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("topic writer: %w", err)
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	tr, err := cfg.Security.Transport()
	if err != nil {
		return nil, err
	}
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: 30 * time.Second}
	if _, err := partitionIDs(ctx, client, cfg.Topic); err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("write to %s: %w", cfg.Topic, err)
	}
	return &TopicWriter{cfg: cfg, w: newWriter(cfg.Brokers, cfg.Topic, tr, 100, replayBatchBytes), tr: tr}, nil
}

// Topic is the topic w writes to.
func (w *TopicWriter) Topic() string { return w.cfg.Topic }

// Write sends msgs and returns once every one is acknowledged, or an error (some may then
// have been written).
func (w *TopicWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.WriteTimeout)
	defer cancel()
	if err := w.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d messages to %s: %w", len(msgs), w.cfg.Topic, writeError(err))
	}
	return nil
}

// Close flushes and closes the writer and its connections.
func (w *TopicWriter) Close() error {
	err := w.w.Close()
	w.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close writer to %s: %w", w.cfg.Topic, err)
	}
	return nil
}
