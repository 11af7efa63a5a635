package consumer

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("Validate accepted an invalid config")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %q", err, w)
			}
		}
	}
	t.Run("intake", func(t *testing.T) {
		t.Parallel()
		check(t, IntakeConfig{
			Brokers: []string{"nohost"}, BatchSize: -1, BatchLinger: -time.Second,
			RetryMin: 2 * time.Second, RetryMax: time.Second,
			Security: Security{SASLMechanism: "X"},
		}.Validate(),
			`broker "nohost" is not host:port`, "input topic is required", "group id is required",
			"dead-letter topic is required", "batch size", "batch linger must not be negative",
			"retry min 2s is above retry max 1s", `mechanism "X"`)
		check(t, IntakeConfig{Brokers: []string{"k:9092"}, Topic: "a", GroupID: "g", DLQTopic: "a"}.Validate(),
			"dead-letter topic must differ")
		check(t, IntakeConfig{Brokers: []string{"k:9092"}, Topic: "a", GroupID: "g", DLQTopic: "a.dlq", RetryMin: 20 * time.Second}.Validate(),
			"retry min 20s is above retry max 10s")
		if err := (IntakeConfig{Brokers: []string{"k:9092"}, Topic: "a", GroupID: "g", DLQTopic: "a.dlq"}).Validate(); err != nil {
			t.Fatalf("minimal config: %v", err)
		}
	})
	t.Run("publisher", func(t *testing.T) {
		t.Parallel()
		check(t, PublisherConfig{BatchSize: -1, PollInterval: -1}.Validate(),
			"kafka brokers are required", "results topic is required", "batch size", "poll interval")
		check(t, PublisherConfig{Brokers: []string{"k:9092"}, Topic: "r", RetryMin: 20 * time.Second}.Validate(),
			"retry min 20s is above retry max 5s")
		if err := (PublisherConfig{Brokers: []string{"[::1]:9092"}, Topic: "r"}).Validate(); err != nil {
			t.Fatalf("minimal config: %v", err)
		}
	})
	t.Run("dead letters", func(t *testing.T) {
		t.Parallel()
		check(t, DeadLetterConfig{MaxBytes: 10}.Validate(),
			"kafka brokers are required", "dead-letter topic is required", "at least 1024")
	})
}
