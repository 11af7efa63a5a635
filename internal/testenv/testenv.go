package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Names of the environment variables written by scripts/devstack.sh to .stack/env.
const (
	DatabaseURLVar  = "DATABASE_URL"
	KafkaBrokersVar = "KAFKA_BROKERS"
)

// hint is how to get the variables, appended to every complaint about a missing one.
const hint = "run `make up && . .stack/env`, or run `make test`"

// DatabaseURL returns DATABASE_URL, or fails the test (never skips) when it is not set.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	v := strings.TrimSpace(os.Getenv(DatabaseURLVar))
	if v == "" {
		tb.Fatalf("%s", missing(DatabaseURLVar))
	}
	return v
}

// KafkaBrokers returns the comma-separated KAFKA_BROKERS as a list of host:port, or fails the
// test (never skips) when it is not set or names no broker.
func KafkaBrokers(tb testing.TB) []string {
	tb.Helper()
	brokers := splitBrokers(os.Getenv(KafkaBrokersVar))
	if len(brokers) == 0 {
		tb.Fatalf("%s", missing(KafkaBrokersVar))
	}
	return brokers
}

func missing(name string) string {
	return fmt.Sprintf("%s is not set: %s", name, hint)
}

func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
