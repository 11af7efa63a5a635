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

// KafkaSecure is the dev stack's Kafka security listeners and the test material to reach them,
// from the KAFKA_SASL_SSL_BROKERS, KAFKA_MTLS_BROKERS and KAFKA_TEST_* variables that
// scripts/devstack.sh writes to .stack/env.
type KafkaSecure struct {
	SASLSSLBrokers []string // SASL_SSL, SCRAM-SHA-512; TLS without a client certificate
	MTLSBrokers    []string // TLS with a client certificate required
	CAFile         string   // the test CA: signs the broker's and the clients' certificates
	ClientCert     string   // a client certificate (PEM) the mTLS listener accepts
	ClientKey      string
	ExpiredCert    string // a client certificate of the same CA, expired
	ExpiredKey     string
	ScramUsername  string // a SCRAM-SHA-512 user of the SASL_SSL listener
	ScramPassword  string
}

// KafkaSecurity returns the security listeners of the dev stack, or fails the test (never
// skips) naming every variable that is not set and every file that is missing.
func KafkaSecurity(tb testing.TB) KafkaSecure {
	tb.Helper()
	var problems []string
	get := func(name string) string {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			problems = append(problems, name+" is not set")
		}
		return v
	}
	file := func(name string) string {
		v := get(name)
		if v != "" {
			if _, err := os.Stat(v); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			}
		}
		return v
	}
	k := KafkaSecure{
		SASLSSLBrokers: splitBrokers(get("KAFKA_SASL_SSL_BROKERS")),
		MTLSBrokers:    splitBrokers(get("KAFKA_MTLS_BROKERS")),
		CAFile:         file("KAFKA_TEST_CA_FILE"),
		ClientCert:     file("KAFKA_TEST_CLIENT_CERT_FILE"),
		ClientKey:      file("KAFKA_TEST_CLIENT_KEY_FILE"),
		ExpiredCert:    file("KAFKA_TEST_EXPIRED_CERT_FILE"),
		ExpiredKey:     file("KAFKA_TEST_EXPIRED_KEY_FILE"),
		ScramUsername:  get("KAFKA_TEST_SCRAM_USERNAME"),
		ScramPassword:  get("KAFKA_TEST_SCRAM_PASSWORD"),
	}
	if len(problems) > 0 {
		tb.Fatalf("the dev stack's Kafka security listeners are not known (%s): %s; a broker started by an older "+
			"scripts/devstack.sh has none, and `make up` restarts it with them (with KAFKA_BROKERS naming another "+
			"broker, `make up` starts none: set these variables for that broker's secured listeners too)",
			strings.Join(problems, "; "), hint)
	}
	return k
}
