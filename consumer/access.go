package consumer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/segmentio/kafka-go"
)

// Refusal is why a broker and this client could not agree on a secure, authenticated
// connection. Each one is a setting to fix: trying again does not help.
type Refusal int

// The refusals Check tells apart.
const (
	// UntrustedBroker: the broker's certificate does not verify against the CA bundle (or the
	// system roots), or not for the address dialled.
	UntrustedBroker Refusal = iota + 1
	// HandshakeRefused: the broker ended the TLS handshake with an alert, most often about the
	// client certificate (none given, expired, or of a CA it does not trust).
	HandshakeRefused
	// NotTLS: the broker answered the TLS handshake with something else than TLS.
	NotTLS
	// AuthenticationFailed: SASL authentication failed (unknown user or wrong password).
	AuthenticationFailed
	// MechanismRefused: the listener does not take SASL, or not this mechanism.
	MechanismRefused
	// SecurityMismatch: the broker took the TCP connection, then closed it at the client's first
	// bytes, which is what a Kafka listener does to a client whose protocol (TLS or not, SASL
	// or not) is not its own. A broker that is only down refuses the connection instead.
	SecurityMismatch
)

func (r Refusal) String() string {
	switch r {
	case UntrustedBroker:
		return "the broker's TLS certificate is not trusted"
	case HandshakeRefused:
		return "the broker refused the TLS handshake"
	case NotTLS:
		return "the broker does not speak TLS on this address"
	case AuthenticationFailed:
		return "SASL authentication failed"
	case MechanismRefused:
		return "the broker does not take this SASL mechanism here"
	case SecurityMismatch:
		return "the broker closed the connection at once: its listener expects other security (TLS or not, SASL or not)"
	}
	return fmt.Sprintf("refusal %d", int(r))
}

// AccessError is a broker that could not be used because of the connection's security
// settings, as opposed to one that could not be reached. Its text never holds a password or
// key material: it holds the broker, the refusal and the TLS or Kafka error.
type AccessError struct {
	Broker string
	Reason Refusal
	Err    error
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("kafka broker %s: %s: %v", e.Broker, e.Reason, e.Err)
}

func (e *AccessError) Unwrap() error { return e.Err }

// refusal classifies an error of a connection attempt (bare or wrapped). ok is false for what
// is not about security: a broker that is down, a network that drops, a timeout.
func refusal(err error) (Refusal, bool) {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		alert     tls.AlertError
		header    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case err == nil:
		return 0, false
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &hostname), errors.As(err, &invalid):
		return UntrustedBroker, true
	case errors.As(err, &alert), errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls reports an alert from the peer as a *net.OpError "remote error" (its
		// alert type is unexported); AlertError is what QUIC and future versions return.
		return HandshakeRefused, true
	case errors.As(err, &header):
		return NotTLS, true
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return AuthenticationFailed, true
	case errors.Is(err, kafka.UnsupportedSASLMechanism), errors.Is(err, kafka.IllegalSASLState):
		return MechanismRefused, true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return SecurityMismatch, true
	}
	return 0, false
}

// Check connects to the brokers the way every connection of the daemon does (TLS and SASL as
// s says) and asks for the cluster's metadata, which a broker answers only to a client it has
// authenticated. It returns nil as soon as one broker answers. It returns an *AccessError as
// soon as one broker refuses the client or the client refuses it: credentials and
// certificates are the same for the whole cluster, so the others would refuse too. Otherwise
// it returns the last connection error (no broker reachable). Each broker gets at most the
// dial timeout; ctx bounds the whole.
func (s Security) Check(ctx context.Context, brokers []string) error {
	if errs := validateBrokers(brokers); len(errs) > 0 {
		return errors.Join(errs...)
	}
	d, err := s.Dialer()
	if err != nil {
		return err
	}
	var last error
	for _, b := range brokers {
		err := checkBroker(ctx, d, b)
		if err == nil {
			return nil
		}
		if r, ok := refusal(err); ok {
			return &AccessError{Broker: b, Reason: r, Err: err}
		}
		last = fmt.Errorf("kafka broker %s: %w", b, err)
		if ctx.Err() != nil {
			break
		}
	}
	return last
}

func checkBroker(ctx context.Context, d *kafka.Dialer, broker string) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return err
		}
	}
	// With TLS 1.3 the client's handshake is over before the broker has checked the client
	// certificate: its verdict arrives with the first answer, so a dial alone proves nothing.
	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(brokers) == 0 {
		return &net.AddrError{Err: "metadata names no broker", Addr: broker}
	}
	return nil
}
