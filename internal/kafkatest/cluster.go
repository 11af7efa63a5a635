package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// Cluster is a real Kafka, by its broker list. Its methods take a context and return errors;
// the package functions that take a testing.TB wrap them for tests.
type Cluster struct {
	Brokers []string
}

// requestTimeout bounds each request a Cluster sends, under the caller's context.
const requestTimeout = 10 * time.Second

// RandomName returns prefix, a dash and 12 random hex digits: a topic or group name no other
// test uses.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics rather)
	return prefix + "-" + hex.EncodeToString(b)
}

// client returns a client on a transport of its own and the function that closes that
// transport's connections.
func (c Cluster) client() (*kafka.Client, func()) {
	tr := &kafka.Transport{}
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: requestTimeout}, tr.CloseIdleConnections
}

// CreateTopic creates topic name with the given number of partitions (replication factor 1,
// the dev stack has one broker) and returns once every partition has a leader. A topic that
// already exists is an error: names are random, so it is not the topic the caller meant.
func (c Cluster) CreateTopic(ctx context.Context, name string, partitions int) error {
	client, done := c.client()
	defer done()
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	var last error
	ready := func() bool {
		n, err := c.leaders(ctx, client, name)
		switch {
		case err != nil:
			last = err
		case n != partitions:
			last = fmt.Errorf("%d of %d partitions have a leader", n, partitions)
		default:
			return true
		}
		return false
	}
	if err := Poll(ctx, ready); err != nil {
		if last == nil {
			return fmt.Errorf("topic %s not ready: %w", name, err)
		}
		return fmt.Errorf("topic %s not ready: %w (last: %w)", name, err, last)
	}
	return nil
}

// leaders counts the partitions of topic that have a leader.
func (c Cluster) leaders(ctx context.Context, client *kafka.Client, topic string) (int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 {
		return 0, fmt.Errorf("metadata names %d topics", len(md.Topics))
	}
	if md.Topics[0].Error != nil {
		return 0, md.Topics[0].Error
	}
	n := 0
	for _, p := range md.Topics[0].Partitions {
		if p.Error == nil && p.Leader.Host != "" {
			n++
		}
	}
	return n, nil
}

// DeleteTopic deletes topic name.
func (c Cluster) DeleteTopic(ctx context.Context, name string) error {
	client, done := c.client()
	defer done()
	resp, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	return nil
}

// partitions returns the partition ids of topic, sorted.
func (c Cluster) partitions(ctx context.Context, client *kafka.Client, topic string) ([]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s names %d topics", topic, len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var ids []int
	for _, p := range md.Topics[0].Partitions {
		ids = append(ids, p.ID)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("metadata of %s: no partitions", topic)
	}
	sort.Ints(ids)
	return ids, nil
}

// Write produces msgs to topic in one call, acknowledged by all in-sync replicas, keyed with
// the Murmur2 balancer. While the topic is unknown or without a leader (just created, by this
// process or another), it tries again until ctx ends; that is safe because kafka-go fails
// before sending anything then. Any other error, a partial one included, is returned.
func (c Cluster) Write(ctx context.Context, topic string, msgs ...kafka.Message) error {
	for {
		err := c.write(ctx, topic, msgs)
		if err == nil {
			return nil
		}
		if !errors.Is(err, kafka.UnknownTopicOrPartition) && !errors.Is(err, kafka.LeaderNotAvailable) {
			return fmt.Errorf("produce %d messages to %s: %w", len(msgs), topic, err)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("produce %d messages to %s: %w (last: %w)", len(msgs), topic, ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (c Cluster) write(ctx context.Context, topic string, msgs []kafka.Message) error {
	// A writer and a transport per attempt: a retry must not see metadata cached by the last.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr: kafka.TCP(c.Brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, Transport: tr,
		// kafka-go's default BatchTimeout (1s) would hold every partial batch a second: the
		// producer, not the code under test, would set the pace. A batch holds the whole call
		// (kafka-go allocates BatchSize slots per batch, so not more), and never more bytes
		// than the broker's default message.max.bytes takes.
		BatchTimeout: time.Millisecond, BatchSize: max(1, len(msgs)), BatchBytes: 1 << 20,
	}
	defer w.Close()
	return w.WriteMessages(ctx, msgs...)
}

// HighWatermarks returns the next offset of every partition of topic (0: empty).
func (c Cluster) HighWatermarks(ctx context.Context, topic string) (map[int]int64, error) {
	client, done := c.client()
	defer done()
	ids, err := c.partitions(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range ids {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(ids))
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("list offsets of %s: %d of %d partitions answered", topic, len(out), len(ids))
	}
	return out, nil
}

// CommittedOffsets returns group's committed offset of every partition of topic (-1: none).
func (c Cluster) CommittedOffsets(ctx context.Context, group, topic string) (map[int]int64, error) {
	client, done := c.client()
	defer done()
	ids, err := c.partitions(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s on %s: %w", group, topic, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("committed offsets of %s on %s: %w", group, topic, resp.Error)
	}
	out := make(map[int]int64, len(ids))
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("committed offset of %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// StableMembers returns how many members of group hold a partition of topic when the group is
// stable; 0 while it is rebalancing or empty.
func (c Cluster) StableMembers(ctx context.Context, group, topic string) (int, error) {
	client, done := c.client()
	defer done()
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return 0, fmt.Errorf("describe group %s: %w", group, err)
	}
	if len(resp.Groups) != 1 {
		return 0, fmt.Errorf("describe group %s: %d groups in the answer", group, len(resp.Groups))
	}
	g := resp.Groups[0]
	if g.Error != nil {
		return 0, fmt.Errorf("describe group %s: %w", group, g.Error)
	}
	if g.GroupState != "Stable" {
		return 0, nil
	}
	holding := 0
	for _, m := range g.Members {
		for _, tp := range m.MemberAssignments.Topics {
			if tp.Topic == topic && len(tp.Partitions) > 0 {
				holding++
				break
			}
		}
	}
	return holding, nil
}

// ReadAll returns every message of every partition of topic up to the high watermarks at the
// time of the call, sorted by partition and offset.
func (c Cluster) ReadAll(ctx context.Context, topic string) ([]kafka.Message, error) {
	ends, err := c.HighWatermarks(ctx, topic)
	if err != nil {
		return nil, err
	}
	col, err := c.Collect(ctx, topic)
	if err != nil {
		return nil, err
	}
	defer col.Close()
	err = Poll(ctx, func() bool { return col.reached(ends) })
	if err != nil {
		return nil, fmt.Errorf("read %s to its end: %w", topic, err)
	}
	var all []kafka.Message
	for _, m := range col.Messages() {
		if m.Offset < ends[m.Partition] {
			all = append(all, m)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Partition != all[j].Partition {
			return all[i].Partition < all[j].Partition
		}
		return all[i].Offset < all[j].Offset
	})
	return all, nil
}

// Header returns the value of the first header of m named key.
func Header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Headers returns the headers of m as a map (of a repeated key, the last value).
func Headers(m kafka.Message) map[string]string {
	h := make(map[string]string, len(m.Headers))
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}
