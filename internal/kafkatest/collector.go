package kafkatest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Collector reads every partition of a topic from its first offset, in the background, until
// Close. It keeps every message and when it was read.
type Collector struct {
	topic   string
	brokers []string

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	msgs []kafka.Message
	at   []time.Time   // when each message was read
	next map[int]int64 // per partition, the offset after the last message read
	err  error         // a partition whose readers gave up maxReaderStarts times
}

// maxReaderStarts bounds the readers one partition starts: at a fifth of a
// second apart, about ten minutes of a broker that does not answer.
const maxReaderStarts = 3000

// Collect starts a Collector on topic, which must exist; ctx bounds the start (looking up the
// partitions), not the reading, which goes on until Close.
func (c Cluster) Collect(ctx context.Context, topic string) (*Collector, error) {
	client, done := c.client()
	ids, err := c.partitions(ctx, client, topic)
	done()
	if err != nil {
		return nil, fmt.Errorf("collect %s: %w", topic, err)
	}
	// The reading outlives ctx on purpose: it goes on until Close.
	reading, cancel := context.WithCancel(context.WithoutCancel(ctx))
	col := &Collector{topic: topic, brokers: c.Brokers, cancel: cancel, next: make(map[int]int64, len(ids))}
	for _, p := range ids {
		col.wg.Add(1)
		go func() {
			defer col.wg.Done()
			col.read(reading, p)
		}()
	}
	return col, nil
}

// read reads partition p until ctx ends. A reader gives up after a few failed
// connections (a broker that was killed, say): another one then starts at the
// next offset, a fifth of a second later, until Close, at most
// maxReaderStarts times; then CaughtUp reports the partition lost.
func (col *Collector) read(ctx context.Context, p int) {
	for range maxReaderStarts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: col.brokers, Topic: col.topic, Partition: p, MaxWait: 100 * time.Millisecond, MaxBytes: 8 << 20,
		})
		col.mu.Lock()
		next := col.next[p]
		col.mu.Unlock()
		err := r.SetOffset(next)
		for err == nil {
			var m kafka.Message
			if m, err = r.ReadMessage(ctx); err == nil {
				col.mu.Lock()
				col.msgs = append(col.msgs, m)
				col.at = append(col.at, time.Now())
				col.next[m.Partition] = m.Offset + 1
				col.mu.Unlock()
			}
		}
		_ = r.Close()
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return // Close
		case <-t.C:
		}
	}
	col.mu.Lock()
	col.err = fmt.Errorf("collect %s: partition %d: %d readers gave up", col.topic, p, maxReaderStarts)
	col.mu.Unlock()
}

// Close stops the readers and returns once they have exited; it may be called more than once.
// The messages stay readable.
func (col *Collector) Close() {
	col.cancel()
	col.wg.Wait()
}

// Messages returns a copy of the messages read so far, in the order they were read (by
// partition, that is offset order).
func (col *Collector) Messages() []kafka.Message {
	col.mu.Lock()
	defer col.mu.Unlock()
	return append([]kafka.Message(nil), col.msgs...)
}

// Len is how many messages have been read so far.
func (col *Collector) Len() int {
	col.mu.Lock()
	defer col.mu.Unlock()
	return len(col.msgs)
}

// Arrivals returns when each key was first read.
func (col *Collector) Arrivals() map[string]time.Time {
	col.mu.Lock()
	defer col.mu.Unlock()
	first := make(map[string]time.Time, len(col.msgs))
	for i, m := range col.msgs {
		if _, ok := first[string(m.Key)]; !ok {
			first[string(m.Key)] = col.at[i]
		}
	}
	return first
}

// Wait returns the messages read once there are at least n, or what there is and an error
// when ctx ends first.
func (col *Collector) Wait(ctx context.Context, n int) ([]kafka.Message, error) {
	if err := Poll(ctx, func() bool { return col.Len() >= n }); err != nil {
		msgs := col.Messages()
		return msgs, fmt.Errorf("collect %s: %d of %d messages: %w", col.topic, len(msgs), n, err)
	}
	return col.Messages(), nil
}

// CaughtUp reports whether the Collector has read every partition to its current end (the
// high watermark at the time of the call).
func (col *Collector) CaughtUp(ctx context.Context) (bool, error) {
	col.mu.Lock()
	lost := col.err
	col.mu.Unlock()
	if lost != nil {
		return false, lost
	}
	ends, err := Cluster{Brokers: col.brokers}.HighWatermarks(ctx, col.topic)
	if err != nil {
		return false, err
	}
	return col.reached(ends), nil
}

// reached reports whether every partition has been read up to its offset in ends.
func (col *Collector) reached(ends map[int]int64) bool {
	col.mu.Lock()
	defer col.mu.Unlock()
	for p, end := range ends {
		if end > 0 && col.next[p] < end {
			return false
		}
	}
	return true
}
