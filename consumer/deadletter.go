package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Headers a dead letter carries besides the original message's own headers.
const (
	HeaderDLQError     = "x-dlq-error"     // why the message was refused (InvalidEventError text)
	HeaderDLQTopic     = "x-dlq-topic"     // where it was read
	HeaderDLQPartition = "x-dlq-partition" // decimal
	HeaderDLQOffset    = "x-dlq-offset"    // decimal
	HeaderDLQAt        = "x-dlq-at"        // RFC 3339 (UTC, nanoseconds) when it was dead-lettered
	// HeaderDLQTruncated is present only when the value was cut to fit the broker's message size
	// limit; it holds the original value size in bytes (decimal). The kept value is a prefix of
	// the original.
	HeaderDLQTruncated = "x-dlq-truncated"
)

// DefaultMaxDeadLetterBytes bounds key + value + headers of one dead letter. Kafka's default
// message.max.bytes is 1 MiB; staying well under it means an oversized poison message cannot
// wedge the consumer by being refused by the DLQ too.
const DefaultMaxDeadLetterBytes = 900 << 10

// defaultWriteTimeout bounds one WriteMessages call (all retries included) unless configured.
const defaultWriteTimeout = 30 * time.Second

// DeadLetterConfig configures a DeadLetters writer.
type DeadLetterConfig struct {
	Brokers  []string
	Topic    string
	Security Security
	// MaxBytes bounds one dead letter (key + value + headers); 0 means DefaultMaxDeadLetterBytes.
	MaxBytes int
	// WriteTimeout bounds one Write call including kafka-go's own retries; 0 means 30s.
	WriteTimeout time.Duration
}

// Validate lists every problem of the config as it will run (after defaults).
func (c DeadLetterConfig) Validate() error {
	c = c.withDefaults()
	errs := validateBrokers(c.Brokers)
	if c.Topic == "" {
		errs = append(errs, errors.New("dead-letter topic is required"))
	}
	if c.MaxBytes < 0 || (c.MaxBytes > 0 && c.MaxBytes < 1024) {
		errs = append(errs, fmt.Errorf("dead-letter max bytes must be 0 (default) or at least 1024, got %d", c.MaxBytes))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("dead-letter write timeout must not be negative, got %s", c.WriteTimeout))
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c DeadLetterConfig) withDefaults() DeadLetterConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxDeadLetterBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	return c
}

// Letter is one refused input message and the reason it was refused.
type Letter struct {
	Message kafka.Message // as fetched: topic, partition, offset, key, value, headers
	Reason  string
}

// DeadLetters writes refused input messages to the dead-letter topic, acknowledged by all
// in-sync replicas. It is safe for concurrent use.
type DeadLetters struct {
	cfg DeadLetterConfig
	w   *kafka.Writer
	tr  *kafka.Transport
	now func() time.Time
}

// NewDeadLetters returns a writer for cfg.Topic. Close it when done.
func NewDeadLetters(cfg DeadLetterConfig) (*DeadLetters, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dead-letter config: %w", err)
	}
	cfg = cfg.withDefaults()
	tr, err := cfg.Security.Transport()
	if err != nil {
		return nil, err
	}
	return &DeadLetters{
		cfg: cfg,
		w:   newWriter(cfg.Brokers, cfg.Topic, tr, 100, int64(cfg.MaxBytes)+64<<10),
		tr:  tr,
		now: time.Now,
	}, nil
}

// newWriter returns a synchronous writer that waits for all in-sync replicas.
// Callers hand it a whole batch per WriteMessages, so a tiny BatchTimeout only
// stops kafka-go from lingering 1s (its default) on a partially filled
// per-partition batch. batchSize is the most messages one call sends: kafka-go
// allocates that many slots for every batch of every partition, so it must not
// be larger than needed.
func newWriter(brokers []string, topic string, tr *kafka.Transport, batchSize int, batchBytes int64) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Murmur2Balancer{}, // same partition for a key as Java producers
		RequiredAcks: kafka.RequireAll,
		BatchSize:    batchSize,
		BatchBytes:   batchBytes,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  3,
		Transport:    tr,
	}
}

// Write sends all letters in one WriteMessages call and returns once every one is acknowledged
// by all in-sync replicas, or an error (some letters may then have been written: at-least-once).
func (d *DeadLetters) Write(ctx context.Context, letters ...Letter) error {
	if len(letters) == 0 {
		return nil
	}
	at := d.now().UTC().Format(time.RFC3339Nano)
	msgs := make([]kafka.Message, len(letters))
	for i, l := range letters {
		msgs[i] = d.message(l, at)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.WriteTimeout)
	defer cancel()
	if err := d.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d dead letters to %s: %w", len(msgs), d.cfg.Topic, writeError(err))
	}
	return nil
}

// message builds the dead letter of l: the original key, value and headers plus ours. A value
// that would push the letter over MaxBytes is cut, and HeaderDLQTruncated says from what size.
func (d *DeadLetters) message(l Letter, at string) kafka.Message {
	m := l.Message
	reason := l.Reason
	if len(reason) > 4<<10 { // InvalidEventError stays far below; bound it anyway
		reason = reason[:4<<10]
	}
	headers := make([]kafka.Header, 0, len(m.Headers)+6)
	headers = append(headers, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderDLQError, Value: []byte(reason)},
		kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderDLQAt, Value: []byte(at)},
	)
	value := m.Value
	if letterSize(m.Key, value, headers) > d.cfg.MaxBytes {
		headers = append(headers, kafka.Header{Key: HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(value)))})
		over := letterSize(m.Key, value, headers) - d.cfg.MaxBytes
		value = value[:max(len(value)-over, 0)]
	}
	// Topic, Partition and Offset of the original must not reach the writer: it has its own topic.
	return kafka.Message{Key: m.Key, Value: value, Headers: headers}
}

// letterSize estimates a record's size: payload bytes plus a small per-header overhead. If the
// key and headers alone exceed the bound, the value is dropped entirely and the write is left to
// the broker's real limit.
func letterSize(key, value []byte, headers []kafka.Header) int {
	n := len(key) + len(value) + 64
	for _, h := range headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// Close flushes and closes the writer and its connections.
func (d *DeadLetters) Close() error {
	err := d.w.Close()
	// kafka-go closes only a transport it created itself; ours would leak its pool goroutines.
	d.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close dead-letter writer: %w", err)
	}
	return nil
}

// writeError flattens kafka.WriteErrors (one entry per message, mostly nil) into the first
// distinct errors, so messages stay short and no kafka-go type leaks past this package.
func writeError(err error) error {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	seen := map[string]bool{}
	var errs []error
	for _, e := range we {
		if e == nil || seen[e.Error()] {
			continue
		}
		seen[e.Error()] = true
		errs = append(errs, e)
		if len(errs) == 3 {
			break
		}
	}
	return fmt.Errorf("%d of %d messages failed: %w", we.Count(), len(we), errors.Join(errs...))
}
