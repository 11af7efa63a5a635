package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec is a topic EnsureTopics creates when it is missing.
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
}

// EnsureTopics creates the topics that do not exist yet. A topic that already exists counts as
// success whatever its partition count; EnsureTopics never alters an existing topic.
// Production clusters usually manage topics elsewhere; this is for the dev stack, the demo
// and tests.
func EnsureTopics(ctx context.Context, brokers []string, sec Security, topics []TopicSpec) error {
	errs := validateBrokers(brokers)
	if err := sec.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, t := range topics {
		if t.Name == "" {
			errs = append(errs, errors.New("topic name is required"))
		}
		if t.Partitions < 1 {
			errs = append(errs, fmt.Errorf("topic %s: partitions must be at least 1", t.Name))
		}
		if t.ReplicationFactor < 1 {
			errs = append(errs, fmt.Errorf("topic %s: replication factor must be at least 1", t.Name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ensure topics: %w", errors.Join(errs...))
	}
	if len(topics) == 0 {
		return nil
	}
	tr, err := sec.Transport()
	if err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 30 * time.Second}

	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic:             t.Name,
			NumPartitions:     t.Partitions,
			ReplicationFactor: t.ReplicationFactor,
		})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, t := range topics {
		if err := resp.Errors[t.Name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}
