package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// LagReader asks the brokers how far consumer groups are behind, over one
// transport kept for its whole life (a metrics scrape does not dial and
// handshake each time).
type LagReader struct {
	tr     *kafka.Transport
	client *kafka.Client
}

// NewLagReader connects lazily to brokers, secured as sec says.
func NewLagReader(brokers []string, sec Security) (*LagReader, error) {
	tr, err := sec.Transport()
	if err != nil {
		return nil, fmt.Errorf("consumer lag: %w", err)
	}
	return &LagReader{tr: tr, client: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}}, nil
}

// Close releases the reader's connections.
func (l *LagReader) Close() { l.tr.CloseIdleConnections() }

// Lag is how far group is behind on each partition of topic: the
// partition's next offset less the group's committed one (the whole
// partition when the group has committed nothing there).
func (l *LagReader) Lag(ctx context.Context, group, topic string) (map[int]int64, error) {
	client := l.client
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("consumer lag of %s on %s: %w", group, topic, err)
	}
	var ids []int
	for _, t := range meta.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("consumer lag of %s on %s: %w", group, topic, t.Error)
		}
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("consumer lag of %s on %s: the topic has no partitions", group, topic)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range ids {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("consumer lag of %s on %s: list offsets: %w", group, topic, err)
	}
	first, last := map[int]int64{}, map[int]int64{}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("consumer lag of %s on %s/%d: %w", group, topic, po.Partition, po.Error)
		}
		first[po.Partition], last[po.Partition] = po.FirstOffset, po.LastOffset
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, fmt.Errorf("consumer lag of %s on %s: committed offsets: %w", group, topic, err)
	}
	if committed.Error != nil {
		return nil, fmt.Errorf("consumer lag of %s on %s: committed offsets: %w", group, topic, committed.Error)
	}
	lag := make(map[int]int64, len(ids))
	for _, p := range ids {
		lag[p] = last[p] - first[p] // nothing committed: everything still readable is behind
	}
	for _, p := range committed.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("consumer lag of %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			lag[p.Partition] = max(last[p.Partition]-p.CommittedOffset, 0)
		}
	}
	return lag, nil
}
