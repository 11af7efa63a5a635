package consumer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
)

// TestRefusal classifies bare and wrapped errors: what a setting must fix, and what is only a
// broker out of reach.
func TestRefusal(t *testing.T) {
	t.Parallel()
	verify := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	cases := []struct {
		name string
		err  error
		want Refusal // 0: not a refusal
	}{
		{"nil", nil, 0},
		{"unknown authority", verify, UntrustedBroker},
		{"bare unknown authority", x509.UnknownAuthorityError{}, UntrustedBroker},
		{"wrong host", x509.HostnameError{Host: "10.0.0.1"}, UntrustedBroker},
		{"expired broker certificate", x509.CertificateInvalidError{Reason: x509.Expired}, UntrustedBroker},
		{"alert", tls.AlertError(45), HandshakeRefused},
		{"remote alert", &net.OpError{Op: "remote error", Err: tls.AlertError(42)}, HandshakeRefused},
		{"local op error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, 0},
		{"not tls", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, NotTLS},
		{"sasl auth", kafka.SASLAuthenticationFailed, AuthenticationFailed},
		{"sasl mechanism", kafka.UnsupportedSASLMechanism, MechanismRefused},
		{"sasl state", kafka.IllegalSASLState, MechanismRefused},
		{"closed at once", io.EOF, SecurityMismatch},
		{"closed mid-answer", io.ErrUnexpectedEOF, SecurityMismatch},
		{"refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), 0},
		{"deadline", context.DeadlineExceeded, 0},
		{"other kafka error", kafka.LeaderNotAvailable, 0},
	}
	for _, tc := range cases {
		for _, form := range []struct {
			name string
			err  error
		}{{"bare", tc.err}, {"wrapped", wrapTwice(tc.err)}} {
			if tc.err == nil && form.name == "wrapped" {
				continue
			}
			got, ok := refusal(form.err)
			if ok != (tc.want != 0) || got != tc.want {
				t.Errorf("%s (%s): refusal = %v, %v; want %v", tc.name, form.name, got, ok, tc.want)
			}
		}
	}
}

func wrapTwice(err error) error {
	return fmt.Errorf("metadata: %w", fmt.Errorf("failed to dial: %w", err))
}

// TestCheckOnSecureListeners asks the dev stack's SASL_SSL and mTLS listeners for metadata
// with right and wrong settings: the right ones pass, and each wrong one is a refusal that
// names what is wrong, within the dial timeout, and carries no password and no key.
func TestCheckOnSecureListeners(t *testing.T) {
	t.Parallel()
	k := testenv.KafkaSecurity(t)
	plain := testenv.KafkaBrokers(t)
	otherCA := kafkatest.UntrustedCA(t)
	const wrongPassword = "not-the-password-7f3a"
	scram := func(tc *tls.Config, password string) Security {
		return Security{TLS: tc, SASLMechanism: SASLScramSHA512, Username: k.ScramUsername, Password: password}
	}
	cases := []struct {
		name    string
		brokers []string
		sec     Security
		want    Refusal // 0: Check passes
		wantMsg string  // in the error
	}{
		{"sasl_ssl", k.SASLSSLBrokers, scram(tlsFiles(t, k.CAFile, "", ""), k.ScramPassword), 0, ""},
		{"sasl_ssl wrong password", k.SASLSSLBrokers, scram(tlsFiles(t, k.CAFile, "", ""), wrongPassword), AuthenticationFailed, "SASL authentication failed"},
		{"sasl_ssl unknown user", k.SASLSSLBrokers, Security{TLS: tlsFiles(t, k.CAFile, "", ""), SASLMechanism: SASLScramSHA512, Username: "nobody", Password: k.ScramPassword}, AuthenticationFailed, "SASL authentication failed"},
		{"sasl_ssl untrusted CA", k.SASLSSLBrokers, scram(tlsFiles(t, otherCA, "", ""), k.ScramPassword), UntrustedBroker, "certificate signed by unknown authority"},
		{"sasl_ssl system roots", k.SASLSSLBrokers, scram(&tls.Config{MinVersion: tls.VersionTLS12}, k.ScramPassword), UntrustedBroker, "not trusted"},
		{"sasl_ssl other mechanism", k.SASLSSLBrokers, Security{TLS: tlsFiles(t, k.CAFile, "", ""), SASLMechanism: SASLScramSHA256, Username: k.ScramUsername, Password: k.ScramPassword}, MechanismRefused, "SASL mechanism"},
		{"mtls", k.MTLSBrokers, Security{TLS: tlsFiles(t, k.CAFile, k.ClientCert, k.ClientKey)}, 0, ""},
		{"mtls expired client certificate", k.MTLSBrokers, Security{TLS: tlsFiles(t, k.CAFile, k.ExpiredCert, k.ExpiredKey)}, HandshakeRefused, "refused the TLS handshake"},
		{"mtls no client certificate", k.MTLSBrokers, Security{TLS: tlsFiles(t, k.CAFile, "", "")}, HandshakeRefused, "refused the TLS handshake"},
		{"mtls untrusted CA", k.MTLSBrokers, Security{TLS: tlsFiles(t, otherCA, k.ClientCert, k.ClientKey)}, UntrustedBroker, "certificate signed by unknown authority"},
		{"plaintext", plain, Security{}, 0, ""},
		{"tls on the plaintext listener", plain, Security{TLS: tlsFiles(t, k.CAFile, "", "")}, SecurityMismatch, "expects other security"},
		{"plaintext on the sasl_ssl listener", k.SASLSSLBrokers, Security{}, SecurityMismatch, "expects other security"},
		{"tls without sasl on the sasl_ssl listener", k.SASLSSLBrokers, Security{TLS: tlsFiles(t, k.CAFile, "", "")}, SecurityMismatch, "expects other security"},
		{"sasl on the mtls listener", k.MTLSBrokers, Security{TLS: tlsFiles(t, k.CAFile, k.ClientCert, k.ClientKey), SASLMechanism: SASLScramSHA512, Username: k.ScramUsername, Password: k.ScramPassword}, MechanismRefused, "SASL mechanism"},
	}
	keys := kafkatest.KeyMaterial(t, k.ClientKey, k.ExpiredKey)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err := tc.sec.Check(ctx, tc.brokers)
			took := time.Since(start)
			if tc.want == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var ae *AccessError
			if !errors.As(err, &ae) || ae.Reason != tc.want {
				t.Fatalf("Check = %v (after %s); want an AccessError: %v", err, took, tc.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantMsg) || !strings.Contains(msg, tc.brokers[0]) {
				t.Errorf("error %q does not name the broker and %q", msg, tc.wantMsg)
			}
			for _, secret := range append([]string{k.ScramPassword, wrongPassword}, keys...) {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q holds a secret", msg)
				}
			}
			if took > dialTimeout {
				t.Errorf("Check took %s, more than the dial timeout %s", took, dialTimeout)
			}
		})
	}
}

// TestCheckUnreachable: a broker that does not listen is not a refusal, and Check returns
// within ctx.
func TestCheckUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Security{}.Check(ctx, []string{"127.0.0.1:1"})
	var ae *AccessError
	if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Check of a closed port = %v; want a plain connection error naming it", err)
	}
}

// tlsFiles is the TLS config the daemon builds from its CA, certificate and key files.
func tlsFiles(t *testing.T, ca, cert, key string) *tls.Config {
	t.Helper()
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	b, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	c.RootCAs = x509.NewCertPool()
	if !c.RootCAs.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", ca)
	}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c
}
