package kafkatest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// The wrappers below fail the test (Fatal, so call them from the test's goroutine) where the
// Cluster methods return an error, with a generous timeout of their own.

// NewTopic creates a topic named prefix plus a random suffix, with the given partitions, ready
// to write to, and deletes it when the test ends.
func NewTopic(tb testing.TB, brokers []string, prefix string, partitions int) string {
	tb.Helper()
	name := RandomName(prefix)
	c := Cluster{Brokers: brokers}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, name, partitions); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.DeleteTopic(ctx, name); err != nil {
			tb.Logf("%v", err)
		}
	})
	return name
}

// Produce writes msgs to topic (Cluster.Write) within 30s.
func Produce(tb testing.TB, brokers []string, topic string, msgs ...kafka.Message) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := (Cluster{Brokers: brokers}).Write(ctx, topic, msgs...); err != nil {
		tb.Fatal(err)
	}
}

// ReadAll returns every message of topic up to its current end (Cluster.ReadAll), read
// within 60s.
func ReadAll(tb testing.TB, brokers []string, topic string) []kafka.Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := Cluster{Brokers: brokers}.ReadAll(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	return msgs
}

// HighWatermarks returns the next offset of every partition of topic.
func HighWatermarks(tb testing.TB, brokers []string, topic string) map[int]int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := Cluster{Brokers: brokers}.HighWatermarks(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	return ends
}

// Collect starts a Collector on topic, closed when the test ends.
func Collect(tb testing.TB, brokers []string, topic string) *Collector {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	col, err := Cluster{Brokers: brokers}.Collect(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(col.Close)
	return col
}

// WaitMembers waits up to 60s until group is stable with n members that each hold a partition
// of topic.
func WaitMembers(tb testing.TB, brokers []string, group, topic string, n int) {
	tb.Helper()
	c := Cluster{Brokers: brokers}
	WaitFor(tb, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		holding, err := c.StableMembers(ctx, group, topic)
		return err == nil && holding == n
	}, fmt.Sprintf("%d members of %s with partitions of %s", n, group, topic))
}

// WaitFor polls cond (Poll) until it holds, and fails the test if it does not within timeout.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() bool, what string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := Poll(ctx, cond); err != nil {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
