package testenv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/testenv"
)

func TestKafkaBrokersSplitsTheList(t *testing.T) {
	t.Setenv(testenv.KafkaBrokersVar, "127.0.0.1:1, 127.0.0.1:2,")
	got := testenv.KafkaBrokers(t)
	if len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:2" {
		t.Errorf("KafkaBrokers() = %q", got)
	}
}

// fatalTB records the message of Fatalf and stops the caller there, like testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

// TestKafkaSecurityFailsLoudly: a variable that is not set, or a file that is not there, fails
// the test with every problem named and the way to get them; it never skips.
func TestKafkaSecurityFailsLoudly(t *testing.T) {
	t.Setenv("KAFKA_SASL_SSL_BROKERS", "")
	t.Setenv("KAFKA_TEST_CA_FILE", "/nonexistent/ca.pem")
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != f {
				panic(r)
			}
		}()
		testenv.KafkaSecurity(f)
	}()
	for _, want := range []string{"KAFKA_SASL_SSL_BROKERS is not set", "KAFKA_TEST_CA_FILE", "/nonexistent/ca.pem", "make up"} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("KafkaSecurity's failure %q does not say %q", f.msg, want)
		}
	}
}

// TestKafkaSecurityNamesTheStack: the stack's own variables name listeners and files that exist.
func TestKafkaSecurityNamesTheStack(t *testing.T) {
	t.Parallel()
	k := testenv.KafkaSecurity(t)
	if len(k.SASLSSLBrokers) == 0 || len(k.MTLSBrokers) == 0 || k.ScramUsername == "" || k.ScramPassword == "" {
		t.Errorf("KafkaSecurity() = %+v", k)
	}
}

// TestPostgreSQLAnswers proves the stack's PostgreSQL takes connections and queries.
func TestPostgreSQLAnswers(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)

	conn, err := pgx.Connect(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("ping PostgreSQL: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT 40 + 2").Scan(&n); err != nil || n != 42 {
		t.Fatalf("SELECT 40 + 2 = %d, %v", n, err)
	}
}

// TestKafkaRoundTrip proves the stack's broker creates a topic, takes a produce with acks=all
// and serves it back to a consumer group that commits its offset.
func TestKafkaRoundTrip(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	brokers := testenv.KafkaBrokers(t)
	topic := "testenv-" + randomHex(t)

	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	created, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := created.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.WithoutCancel(ctx), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
	}
	t.Cleanup(func() { _ = w.Close() })
	want := kafka.Message{Key: []byte("out-trade-no-1"), Value: []byte(`{"hello":"reversald"}`)}
	// Right after CreateTopics the partition may still be without a leader for a moment.
	for {
		err = w.WriteMessages(ctx, want)
		leaderless := errors.Is(err, kafka.LeaderNotAvailable) || errors.Is(err, kafka.UnknownTopicOrPartition)
		if !leaderless || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     brokers,
		Topic:       topic,
		GroupID:     topic + "-group",
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
	})
	t.Cleanup(func() { _ = r.Close() })
	got, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("consume from %s: %v", topic, err)
	}
	if string(got.Key) != string(want.Key) || string(got.Value) != string(want.Value) {
		t.Fatalf("consumed %q=%q, want %q=%q", got.Key, got.Value, want.Key, want.Value)
	}
	if err := r.CommitMessages(ctx, got); err != nil {
		t.Fatalf("commit offset on %s: %v", topic, err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
