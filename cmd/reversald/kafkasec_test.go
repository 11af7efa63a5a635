package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

// The daemon against the dev stack's secured listeners: SASL_SSL with SCRAM-SHA-512, and
// mutual TLS. The test's topics are made and read over the PLAINTEXT listener of the same
// broker; only the daemon speaks TLS and SASL.

// secureEnv is the daemon's Kafka settings for one of the dev stack's secured listeners.
func secureEnv(t *testing.T, listener string) map[string]string {
	t.Helper()
	k := testenv.KafkaSecurity(t)
	switch listener {
	case "sasl_ssl":
		// The password from a file, as a Docker or Kubernetes secret gives it.
		pw := filepath.Join(t.TempDir(), "kafka-password")
		if err := os.WriteFile(pw, []byte(k.ScramPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return map[string]string{
			"KAFKA_BROKERS": strings.Join(k.SASLSSLBrokers, ","), "KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": k.CAFile,
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": k.ScramUsername, "KAFKA_SASL_PASSWORD_FILE": pw,
		}
	case "mtls":
		return map[string]string{
			"KAFKA_BROKERS": strings.Join(k.MTLSBrokers, ","), "KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": k.CAFile,
			"KAFKA_TLS_CERT_FILE": k.ClientCert, "KAFKA_TLS_KEY_FILE": k.ClientKey,
		}
	}
	t.Fatalf("no listener %q", listener)
	return nil
}

// secrets is what must never appear in the daemon's errors or logs: the SCRAM password and
// the lines of every client key.
func secrets(t *testing.T) []string {
	t.Helper()
	k := testenv.KafkaSecurity(t)
	return append([]string{k.ScramPassword, secretKey}, kafkatest.KeyMaterial(t, k.ClientKey, k.ExpiredKey)...)
}

// TestDaemonOverSecuredKafka runs the daemon as a process over each secured listener: it
// becomes ready (a metadata round trip over TLS and SASL), creates its topics if missing,
// reads events, writes dead letters and outcomes, reports consumer lag, and stops on SIGTERM,
// and its logs hold no password and no key.
func TestDaemonOverSecuredKafka(t *testing.T) {
	t.Parallel()
	for _, listener := range []string{"sasl_ssl", "mtls"} {
		t.Run(listener, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, 2)
			env := secureEnv(t, listener)
			env["KAFKA_CREATE_TOPICS"], env["KAFKA_TOPIC_REPLICATION"] = "true", "1" // exist already: a no-op over TLS
			env["EXECUTOR_WORKERS"] = "8"
			out := s.collect(s.results)
			dlq := s.collect(s.dlq)
			want := s.loadEvents(40)
			s.produce(s.in, kafka.Message{Key: []byte("bad-1"), Value: []byte("not json")})
			p := s.start(env)
			s.checkAll(out, want)
			kafkatest.WaitFor(t, 30*time.Second, func() bool { return len(dlq.Messages()) == 1 }, "the dead letter")
			kafkatest.WaitFor(t, 30*time.Second, func() bool { return kafkaCollectorUp(t, p.addr) }, `reversald_collector_up{collector="kafka"} 1`)
			p.stop(t, syscall.SIGTERM)
			logs := p.logs.String()
			if !strings.Contains(logs, "kafka brokers answer") {
				t.Errorf("no start-up check of the brokers in the logs:\n%s", tail(logs, 20))
			}
			for _, secret := range secrets(t) {
				if strings.Contains(logs, secret) {
					t.Fatalf("a password or key line is in the daemon's logs")
				}
			}
		})
	}
}

// kafkaCollectorUp reports whether /metrics says the brokers answered the lag scrape.
func kafkaCollectorUp(t *testing.T, addr string) bool {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return err == nil && strings.Contains(string(b), `reversald_collector_up{collector="kafka"} 1`)
}

// TestDaemonRefusesBadKafkaSecurity: a wrong password, a CA that did not sign the broker's
// certificate, an expired client certificate, and a few other mistakes each stop the start-up
// with an error that says what to check, in bounded time (no retry loop), and neither the
// error nor the logs hold a password or key material.
func TestDaemonRefusesBadKafkaSecurity(t *testing.T) {
	t.Parallel()
	k := testenv.KafkaSecurity(t)
	const wrongPassword = "wrong-password-5d1c"
	untrusted := kafkatest.UntrustedCA(t)
	cases := []struct {
		name   string
		listen string
		change map[string]string
		want   []string // in the error
	}{
		{"wrong password", "sasl_ssl", map[string]string{"KAFKA_SASL_PASSWORD_FILE": "", "KAFKA_SASL_PASSWORD": wrongPassword},
			[]string{"SASL authentication failed", "KAFKA_SASL_PASSWORD", k.SASLSSLBrokers[0]}},
		{"unknown user", "sasl_ssl", map[string]string{"KAFKA_SASL_USERNAME": "nobody"},
			[]string{"SASL authentication failed", "KAFKA_SASL_USERNAME"}},
		{"untrusted CA over sasl_ssl", "sasl_ssl", map[string]string{"KAFKA_TLS_CA_FILE": untrusted},
			[]string{"not trusted", "certificate signed by unknown authority", "KAFKA_TLS_CA_FILE"}},
		{"untrusted CA over mtls", "mtls", map[string]string{"KAFKA_TLS_CA_FILE": untrusted},
			[]string{"not trusted", "KAFKA_TLS_CA_FILE"}},
		{"expired client certificate", "mtls", map[string]string{"KAFKA_TLS_CERT_FILE": k.ExpiredCert, "KAFKA_TLS_KEY_FILE": k.ExpiredKey},
			[]string{"KAFKA_TLS_CERT_FILE", "expired at", "renew it"}},
		{"no client certificate", "mtls", map[string]string{"KAFKA_TLS_CERT_FILE": "", "KAFKA_TLS_KEY_FILE": ""},
			[]string{"refused the TLS handshake", "KAFKA_TLS_CERT_FILE"}},
		{"certificate without its key", "mtls", map[string]string{"KAFKA_TLS_KEY_FILE": ""},
			[]string{"KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together"}},
		{"TLS files without KAFKA_TLS", "mtls", map[string]string{"KAFKA_TLS": ""},
			[]string{"KAFKA_TLS_CA_FILE is set but KAFKA_TLS is not true", "KAFKA_TLS_KEY_FILE is set but"}},
		{"plaintext client on the sasl_ssl listener", "sasl_ssl", map[string]string{"KAFKA_TLS": "", "KAFKA_TLS_CA_FILE": "",
			"KAFKA_SASL_MECHANISM": "", "KAFKA_SASL_USERNAME": "", "KAFKA_SASL_PASSWORD_FILE": ""},
			[]string{"expects other security", "KAFKA_TLS and KAFKA_SASL_MECHANISM"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv() // its database does not exist: the broker check comes first
			env["HTTP_ADDR"] = "127.0.0.1:0"
			for k, v := range secureEnv(t, tc.listen) {
				env[k] = v
			}
			for k, v := range tc.change {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			logs := &syncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- run(ctx, []string{"run"}, envconfig.MapLookuper(env), io.Discard, logs) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(2 * kafkaStartCheck):
				cancel()
				<-done //nolint:errcheck // stopped by the test: what it returns says nothing
				t.Fatalf("the daemon did not give up within %s; logs:\n%s", 2*kafkaStartCheck, tail(logs.String(), 20))
			}
			if err == nil {
				t.Fatal("the daemon started with bad Kafka security")
			}
			msg := err.Error()
			t.Logf("after %s: %s", time.Since(start).Round(time.Millisecond), msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the error does not say %q", w)
				}
			}
			for _, secret := range append(secrets(t), wrongPassword) {
				if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
					t.Fatalf("a password or key line is in the error or the logs")
				}
			}
		})
	}
}

// TestKafkaTLSClientCertificateDates: the client certificate is refused at start-up outside its
// dates, with the date and without key material.
func TestKafkaTLSClientCertificateDates(t *testing.T) {
	t.Parallel()
	k := testenv.KafkaSecurity(t)
	c := Config{KafkaTLS: true, KafkaTLSCAFile: k.CAFile, KafkaTLSCertFile: k.ClientCert, KafkaTLSKeyFile: k.ClientKey}
	tc, err := c.kafkaTLS(time.Now())
	if err != nil || len(tc.Certificates) != 1 || tc.RootCAs == nil {
		t.Fatalf("kafkaTLS now: %v", err)
	}
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []struct {
		now  time.Time
		want string
	}{
		{leaf.NotBefore.Add(-time.Hour), "is not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339)},
		{leaf.NotAfter.Add(time.Second), "expired at " + leaf.NotAfter.UTC().Format(time.RFC3339)},
	} {
		_, err := c.kafkaTLS(at.now)
		if err == nil || !strings.Contains(err.Error(), at.want) || !strings.Contains(err.Error(), "KAFKA_TLS_CERT_FILE") {
			t.Errorf("at %s: %v; want %q", at.now, err, at.want)
			continue
		}
		for _, line := range kafkatest.KeyMaterial(t, k.ClientKey) {
			if strings.Contains(err.Error(), line) {
				t.Fatal("the error holds key material")
			}
		}
	}
}

// TestReadinessOverMutualTLS: the readiness check (kafkaReachable, behind /readyz) asks the
// mTLS listener for metadata, so a client certificate the broker refuses (expired here;
// start-up refuses it before, this is a clock that moved on) fails it, where a dial alone
// passed: under TLS 1.3 the client's handshake ends before the broker has checked the
// certificate.
func TestReadinessOverMutualTLS(t *testing.T) {
	t.Parallel()
	k := testenv.KafkaSecurity(t)
	reachable := func(cert, key string, at time.Time) error {
		t.Helper()
		c := Config{KafkaTLS: true, KafkaTLSCAFile: k.CAFile, KafkaTLSCertFile: cert, KafkaTLSKeyFile: key}
		tc, err := c.kafkaTLS(at)
		if err != nil {
			t.Fatal(err)
		}
		// Not /readyz's own 2s: the race detector on a loaded machine may need more.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return kafkaReachable(ctx, k.MTLSBrokers, consumer.Security{TLS: tc})
	}
	if err := reachable(k.ClientCert, k.ClientKey, time.Now()); err != nil {
		t.Errorf("with a good client certificate: %v", err)
	}
	// The expired certificate as the daemon saw it an hour before it expired.
	kp, err := tls.LoadX509KeyPair(k.ExpiredCert, k.ExpiredKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	err = reachable(k.ExpiredCert, k.ExpiredKey, leaf.NotAfter.Add(-time.Hour))
	if err == nil || !strings.Contains(err.Error(), "refused the TLS handshake") {
		t.Errorf("with an expired client certificate: %v; want the refusal", err)
	}
}
