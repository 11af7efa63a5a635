package consumer

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms Security accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// dialTimeout bounds a TCP connect plus TLS and SASL handshakes.
const dialTimeout = 10 * time.Second

// Security is how every Kafka connection of the daemon is secured: the intake reader's Dialer
// and the writers' Transport are built from the same value, so they cannot disagree.
// The zero value is plaintext without authentication (the dev stack).
type Security struct {
	TLS           *tls.Config // nil: plaintext
	SASLMechanism string      // "" (none), SASLPlain, SASLScramSHA256 or SASLScramSHA512
	Username      string
	Password      string // never logged: see LogValue
}

// Validate lists every problem.
func (s Security) Validate() error {
	var errs []error
	switch s.SASLMechanism {
	case "":
		if s.Username != "" || s.Password != "" {
			errs = append(errs, errors.New("kafka SASL username or password set without a SASL mechanism"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			errs = append(errs, fmt.Errorf("kafka SASL %s needs a username", s.SASLMechanism))
		}
		if s.Password == "" {
			errs = append(errs, fmt.Errorf("kafka SASL %s needs a password", s.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka SASL mechanism %q is not one of %s, %s, %s",
			s.SASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512))
	}
	return errors.Join(errs...)
}

// LogValue keeps the password out of logs.
func (s Security) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("tls", s.TLS != nil),
		slog.String("sasl_mechanism", s.SASLMechanism),
		slog.String("username", s.Username),
	)
}

// String keeps the password out of %v.
func (s Security) String() string {
	return fmt.Sprintf("{TLS:%t SASLMechanism:%q Username:%q Password:[redacted]}", s.TLS != nil, s.SASLMechanism, s.Username)
}

// GoString keeps the password out of %#v.
func (s Security) GoString() string { return "consumer.Security" + s.String() }

func (s Security) mechanism() (sasl.Mechanism, error) {
	switch s.SASLMechanism {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if s.SASLMechanism == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// The error comes from SASLprep of the credentials; it does not contain them.
			return nil, fmt.Errorf("kafka SASL %s: %w", s.SASLMechanism, err)
		}
		return m, nil
	}
	return nil, s.Validate()
}

// Dialer builds the dialer of a consumer-group Reader.
func (s Security) Dialer() (*kafka.Dialer, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	m, err := s.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		Timeout:       dialTimeout,
		DualStack:     true,
		TLS:           cloneTLS(s.TLS),
		SASLMechanism: m,
	}, nil
}

// Transport builds the transport of a Writer or Client. The caller must call
// CloseIdleConnections when done: Writer.Close does not do it for a transport it was given,
// and the transport's connection pools keep goroutines alive until then.
func (s Security) Transport() (*kafka.Transport, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	m, err := s.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: dialTimeout}).DialContext,
		DialTimeout: dialTimeout,
		TLS:         cloneTLS(s.TLS),
		SASL:        m,
	}, nil
}

func cloneTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	return c.Clone()
}

// validateBrokers checks a broker list of host:port addresses.
func validateBrokers(brokers []string) []error {
	if len(brokers) == 0 {
		return []error{errors.New("kafka brokers are required")}
	}
	var errs []error
	for _, b := range brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("kafka broker %q is not host:port", b))
		}
	}
	return errs
}

type namedDuration struct {
	name string
	v    time.Duration
}

// validateDurations reports negative durations (0 always means "the
// default") and a retry backoff whose minimum is above its maximum.
func validateDurations(what string, retryMin, retryMax time.Duration, ds []namedDuration) []error {
	var errs []error
	for _, d := range append(ds, namedDuration{"retry min", retryMin}, namedDuration{"retry max", retryMax}) {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s must not be negative, got %s", what, d.name, d.v))
		}
	}
	if retryMin > 0 && retryMax > 0 && retryMin > retryMax {
		errs = append(errs, fmt.Errorf("%s retry min %s is above retry max %s", what, retryMin, retryMax))
	}
	return errs
}
