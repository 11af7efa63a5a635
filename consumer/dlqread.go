package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/reversald/reversald/internal/backoff"
)

// DeadLetter is one message of the dead-letter topic with its headers decoded.
type DeadLetter struct {
	// Where it is in the dead-letter topic, and the broker's time of the write.
	Partition int
	Offset    int64
	Time      time.Time

	Key, Value []byte
	// Headers are the original message's own headers: every header but the x-dlq-* ones.
	Headers []kafka.Header

	Reason string // x-dlq-error
	// Origin is where intake read the original (x-dlq-topic, x-dlq-partition, x-dlq-offset).
	Origin Origin
	// At is when it was dead-lettered (x-dlq-at); zero when the header is absent or unreadable.
	At time.Time
	// TruncatedFrom is the original value's size when the value was cut (x-dlq-truncated), 0
	// when the value is whole.
	TruncatedFrom int
	// Problems names the headers that are missing or unreadable; empty for every letter
	// reversald wrote.
	Problems []string
}

// Origin is a position in the input topic.
type Origin struct {
	Topic     string
	Partition int
	Offset    int64
}

// Known reports whether the origin headers were all present and readable.
func (o Origin) Known() bool { return o.Topic != "" && o.Partition >= 0 && o.Offset >= 0 }

// String is "topic/partition/offset", the event_id intake gives a value without one.
func (o Origin) String() string {
	if !o.Known() {
		return ""
	}
	return fmt.Sprintf("%s/%d/%d", o.Topic, o.Partition, o.Offset)
}

// EventID is the event_id a replay of the letter is recorded under: the value's own when it
// has one, else the replay header's (a letter that was itself a replay), else its origin's
// "topic/partition/offset", which is what intake would have recorded the first time. Empty
// when none of them can be read.
func (l DeadLetter) EventID() string {
	if id := valueEventID(l.Value); id != "" {
		return id
	}
	if id, ok := replayOf(l.Headers); ok {
		return id
	}
	return l.Origin.String()
}

// decodeDeadLetter reads the x-dlq-* headers of a dead-letter record.
func decodeDeadLetter(partition int, offset int64, at time.Time, key, value []byte, headers []kafka.Header) DeadLetter {
	l := DeadLetter{Partition: partition, Offset: offset, Time: at, Key: key, Value: value,
		Origin: Origin{Partition: -1, Offset: -1}}
	seen := map[string]bool{}
	for _, h := range headers {
		if !strings.HasPrefix(h.Key, "x-dlq-") {
			l.Headers = append(l.Headers, h)
			continue
		}
		seen[h.Key] = true
		v := string(h.Value)
		switch h.Key {
		case HeaderDLQError:
			l.Reason = v
		case HeaderDLQTopic:
			l.Origin.Topic = v
		case HeaderDLQPartition:
			if p, err := strconv.Atoi(v); err == nil && p >= 0 {
				l.Origin.Partition = p
			} else {
				l.Problems = append(l.Problems, fmt.Sprintf("%s %q is not a partition", h.Key, short(v)))
			}
		case HeaderDLQOffset:
			if o, err := strconv.ParseInt(v, 10, 64); err == nil && o >= 0 {
				l.Origin.Offset = o
			} else {
				l.Problems = append(l.Problems, fmt.Sprintf("%s %q is not an offset", h.Key, short(v)))
			}
		case HeaderDLQAt:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				l.At = t.UTC()
			} else {
				l.Problems = append(l.Problems, fmt.Sprintf("%s %q is not an RFC 3339 time", h.Key, short(v)))
			}
		case HeaderDLQTruncated:
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				l.TruncatedFrom = n
			} else {
				// Present but unreadable: the value was cut all the same.
				l.TruncatedFrom = -1
				l.Problems = append(l.Problems, fmt.Sprintf("%s %q is not a size", h.Key, short(v)))
			}
		default:
			// An x-dlq-* header of a later version: kept with the original's, shown as is.
			l.Headers = append(l.Headers, h)
		}
	}
	for _, k := range []string{HeaderDLQError, HeaderDLQTopic, HeaderDLQPartition, HeaderDLQOffset, HeaderDLQAt} {
		if !seen[k] {
			l.Problems = append(l.Problems, k+" is missing")
		}
	}
	return l
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// DeadLetterReadConfig configures ReadDeadLetters.
type DeadLetterReadConfig struct {
	Brokers  []string
	Topic    string
	Security Security

	// fetchBytes bounds one fetch; 0 means fetchMaxBytes. Tests lower it so that a read takes
	// many fetches.
	fetchBytes int64
}

// Validate lists every problem.
func (c DeadLetterReadConfig) Validate() error {
	errs := validateBrokers(c.Brokers)
	if c.Topic == "" {
		errs = append(errs, errors.New("dead-letter topic is required"))
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// fetchMaxBytes bounds one fetch; a record batch larger than this is still returned whole
// by the broker, so it bounds memory without ever blocking progress.
const fetchMaxBytes = 4 << 20

// ReadDeadLetters reads the dead-letter topic from the first offset each partition still holds
// up to its high watermark as it was when the call started, partition by partition in offset
// order, and calls fn with each letter. Letters written after the start are not read: the read
// always ends. fn returning an error stops the read with that error.
func ReadDeadLetters(ctx context.Context, cfg DeadLetterReadConfig, fn func(DeadLetter) error) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	tr, err := cfg.Security.Transport()
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: 30 * time.Second}
	bounds, err := offsetBounds(ctx, client, cfg.Topic)
	if err != nil {
		return fmt.Errorf("read dead letters of %s: %w", cfg.Topic, err)
	}
	if cfg.fetchBytes == 0 {
		cfg.fetchBytes = fetchMaxBytes
	}
	for _, b := range bounds {
		if err := readPartition(ctx, client, cfg.Topic, cfg.fetchBytes, b, fn); err != nil {
			return err
		}
	}
	return nil
}

// partitionBounds is the range of offsets of one partition that a read covers.
type partitionBounds struct {
	partition   int
	first, last int64 // last is the high watermark: the offset after the last record
}

// offsetBounds lists every partition of topic with its first offset and high watermark, in
// partition order. A topic that does not exist is an error (the metadata request never
// creates one).
func offsetBounds(ctx context.Context, client *kafka.Client, topic string) ([]partitionBounds, error) {
	ids, err := partitionIDs(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range ids {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	byID := map[int]partitionBounds{}
	err = retryTemporary(ctx, func() error {
		resp, err := client.ListOffsets(ctx, req)
		if err != nil {
			return fmt.Errorf("list offsets: %w", err)
		}
		for _, po := range resp.Topics[topic] {
			if po.Error != nil {
				return fmt.Errorf("list offsets of partition %d: %w", po.Partition, po.Error)
			}
			byID[po.Partition] = partitionBounds{partition: po.Partition, first: po.FirstOffset, last: po.LastOffset}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]partitionBounds, 0, len(ids))
	for _, p := range ids {
		b, ok := byID[p]
		if !ok {
			return nil, fmt.Errorf("list offsets: partition %d did not answer", p)
		}
		out = append(out, b)
	}
	return out, nil
}

// partitionIDs returns the partitions of topic, sorted, or an error naming a topic that does
// not exist.
func partitionIDs(ctx context.Context, client *kafka.Client, topic string) ([]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	var ids []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("topic %s does not exist", topic)
			}
			return nil, fmt.Errorf("metadata: %w", t.Error)
		}
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("topic %s does not exist", topic)
	}
	slices.Sort(ids)
	return ids, nil
}

// readTries bounds the tries of one request that Kafka answers with a retriable error (a leader
// moving, a topic just created): with the backoff below, about ten seconds.
const readTries = 8

// retryTemporary runs op until it succeeds, fails with an error that Kafka does not call
// retriable, or has been tried readTries times.
func retryTemporary(ctx context.Context, op func() error) error {
	for n := 1; ; n++ {
		err := op()
		var ke kafka.Error
		if err == nil || n == readTries || !errors.As(err, &ke) || !ke.Temporary() {
			return err
		}
		if !backoff.Sleep(ctx, backoff.Delay(n, 100*time.Millisecond, 2*time.Second)) {
			return err
		}
	}
}

// maxEmptyFetches is how many fetches in a row may return nothing below the high watermark
// before the read gives up on the partition (a gap it cannot get past).
const maxEmptyFetches = 5

// readPartition reads one partition of topic from b.first up to b.last.
func readPartition(ctx context.Context, client *kafka.Client, topic string, maxBytes int64, b partitionBounds, fn func(DeadLetter) error) error {
	offset, empty := b.first, 0
	for offset < b.last {
		var resp *kafka.FetchResponse
		err := retryTemporary(ctx, func() error {
			var err error
			resp, err = client.Fetch(ctx, &kafka.FetchRequest{
				Topic: topic, Partition: b.partition, Offset: offset,
				MinBytes: 1, MaxBytes: maxBytes, MaxWait: 500 * time.Millisecond,
			})
			if err == nil && resp.Error != nil && !errors.Is(resp.Error, kafka.OffsetOutOfRange) {
				err = resp.Error
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("read dead letters of %s/%d at offset %d: %w", topic, b.partition, offset, err)
		}
		if resp.Error != nil {
			// Retention may delete the oldest records during a long read: go on from the
			// first that is left.
			if resp.LogStartOffset > offset {
				offset = resp.LogStartOffset
				continue
			}
			return fmt.Errorf("read dead letters of %s/%d at offset %d: %w", topic, b.partition, offset, resp.Error)
		}
		next, err := readRecords(resp.Records, offset, b, fn)
		if err != nil {
			return err
		}
		if next == offset {
			// Nothing at or after offset in this answer: a transaction marker is skipped by its
			// offset; anything else is tried a few times, then reported.
			next = pastControlRecords(resp.Records, offset)
		}
		if next == offset {
			empty++
			if empty >= maxEmptyFetches {
				return fmt.Errorf("read dead letters of %s/%d: no record between offset %d and the high watermark %d after %d fetches",
					topic, b.partition, offset, b.last, empty)
			}
			continue
		}
		empty = 0
		offset = next
	}
	return nil
}

// readRecords hands fn every record of rr from offset up to (not including) b.last and returns
// the offset after the last one handed.
func readRecords(rr kafka.RecordReader, offset int64, b partitionBounds, fn func(DeadLetter) error) (int64, error) {
	for {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return offset, nil
		}
		if err != nil {
			return offset, fmt.Errorf("read dead letters of partition %d at offset %d: %w", b.partition, offset, err)
		}
		if r.Offset < offset { // a batch starts before the offset asked for
			closeRecord(r)
			continue
		}
		if r.Offset >= b.last {
			closeRecord(r)
			return offset, nil
		}
		key, err := readBytes(r.Key)
		if err != nil {
			return offset, fmt.Errorf("read dead letter %d/%d: key: %w", b.partition, r.Offset, err)
		}
		value, err := readBytes(r.Value)
		if err != nil {
			return offset, fmt.Errorf("read dead letter %d/%d: value: %w", b.partition, r.Offset, err)
		}
		headers := make([]kafka.Header, len(r.Headers))
		for i, h := range r.Headers {
			headers[i] = kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
		}
		l := decodeDeadLetter(b.partition, r.Offset, r.Time.UTC(), key, value, headers)
		offset = r.Offset + 1
		if err := fn(l); err != nil {
			return offset, err
		}
	}
}

// pastControlRecords returns the offset after the transaction markers at or after offset in
// rr, or offset when there are none. kafka-go's record stream skips control batches when it
// reads, so a fetch that holds only markers would otherwise never move on.
func pastControlRecords(rr kafka.RecordReader, offset int64) int64 {
	stream, ok := rr.(*protocol.RecordStream)
	if !ok {
		return offset
	}
	next := offset
	for _, batch := range stream.Records {
		cb, ok := batch.(*protocol.ControlBatch)
		if !ok {
			continue
		}
		for {
			r, err := cb.ReadRecord()
			if err != nil {
				break
			}
			if r.Offset >= next {
				next = r.Offset + 1
			}
			closeRecord(r)
		}
	}
	return next
}

func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	return protocol.ReadAll(b)
}

func closeRecord(r *kafka.Record) {
	if r.Key != nil {
		_ = r.Key.Close()
	}
	if r.Value != nil {
		_ = r.Value.Close()
	}
}
