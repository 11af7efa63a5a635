package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/qfpay"
)

// security builds the Kafka TLS and SASL settings. It refuses TLS files given without
// KAFKA_TLS=true (they would be ignored and the client would speak plaintext to a TLS
// listener), a certificate without its key, and a client certificate that is not valid now (a
// broker would refuse it; the dates say why at once).
func (c Config) security() (consumer.Security, error) {
	sec := consumer.Security{SASLMechanism: strings.ToUpper(c.KafkaSASL), Username: c.KafkaSASLUser, Password: c.KafkaSASLPassword}
	var errs []error
	if !c.KafkaTLS {
		for _, f := range []struct{ name, v string }{
			{"KAFKA_TLS_CA_FILE", c.KafkaTLSCAFile}, {"KAFKA_TLS_CERT_FILE", c.KafkaTLSCertFile}, {"KAFKA_TLS_KEY_FILE", c.KafkaTLSKeyFile},
		} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("%s is set but KAFKA_TLS is not true: set KAFKA_TLS=true to use it", f.name))
			}
		}
	} else {
		t, err := c.kafkaTLS(time.Now())
		if err != nil {
			errs = append(errs, err)
		}
		sec.TLS = t
	}
	if err := sec.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kafka security: %w", err))
	}
	return sec, errors.Join(errs...)
}

// kafkaTLS is the TLS config of KAFKA_TLS=true, with the client certificate checked against now.
func (c Config) kafkaTLS(now time.Time) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	var errs []error
	if c.KafkaTLSCAFile != "" {
		pem, err := os.ReadFile(c.KafkaTLSCAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_TLS_CA_FILE: %w", err))
		} else {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				t.RootCAs = pool
			} else {
				errs = append(errs, fmt.Errorf("KAFKA_TLS_CA_FILE %s: no PEM certificate in it", c.KafkaTLSCAFile))
			}
		}
	}
	switch {
	case c.KafkaTLSCertFile == "" && c.KafkaTLSKeyFile == "":
	case c.KafkaTLSCertFile == "" || c.KafkaTLSKeyFile == "":
		errs = append(errs, errors.New("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together: give both for mutual TLS, or neither"))
	default:
		// crypto/tls's errors name what is wrong with the files, never their content.
		cert, err := tls.LoadX509KeyPair(c.KafkaTLSCertFile, c.KafkaTLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE: %w", err))
			break
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_TLS_CERT_FILE %s: %w", c.KafkaTLSCertFile, err))
			break
		}
		if now.After(leaf.NotAfter) {
			errs = append(errs, fmt.Errorf("KAFKA_TLS_CERT_FILE %s: the client certificate %q expired at %s: a broker refuses it; renew it",
				c.KafkaTLSCertFile, leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339)))
		} else if now.Before(leaf.NotBefore) {
			errs = append(errs, fmt.Errorf("KAFKA_TLS_CERT_FILE %s: the client certificate %q is not valid before %s (is this clock right?)",
				c.KafkaTLSCertFile, leaf.Subject.String(), leaf.NotBefore.UTC().Format(time.RFC3339)))
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, errors.Join(errs...)
}

// kafkaAccessHint says which settings to check for a broker's refusal.
func kafkaAccessHint(r consumer.Refusal) string {
	switch r {
	case consumer.UntrustedBroker:
		return "check KAFKA_TLS_CA_FILE: it must hold the CA that signed the broker's certificate"
	case consumer.HandshakeRefused:
		return "check KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE: the listener wants a client certificate of a CA it trusts, valid now"
	case consumer.NotTLS, consumer.SecurityMismatch:
		return "check KAFKA_TLS and KAFKA_SASL_MECHANISM against the security of the listener at KAFKA_BROKERS"
	case consumer.AuthenticationFailed:
		return "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
	case consumer.MechanismRefused:
		return "check KAFKA_SASL_MECHANISM (and KAFKA_TLS): the listener does not enable it"
	}
	return "check the KAFKA_TLS_* and KAFKA_SASL_* settings"
}

func (c Config) qfpayConfig() (qfpay.Config, error) {
	qc := qfpay.Config{
		BaseURL: c.QFPayBaseURL, AppCode: c.QFPayAppCode, ClientKey: qfpay.NewKey(c.QFPayClientKey),
		MchID: c.QFPayMchID, SignType: qfpay.SignType(strings.ToUpper(c.QFPaySignType)),
		Timeout: c.QFPayTimeout, VerifyResponses: c.QFPayVerifySign,
	}
	if c.QFPayRoutes != "" {
		r, err := qfpay.ParseRoutes(c.QFPayRoutes)
		if err != nil {
			return qc, fmt.Errorf("QFPAY_ROUTES: %w", err)
		}
		qc.Routes = r
	}
	return qc, nil
}

// qfpayDirectory is the QFPay credentials (credentials.go): the file's, and
// the QFPAY_* variables as the default. It returns the source and the
// fingerprint of what was read, for reloads. Every client traces its calls
// into tp (nil: tracing off), reloaded ones too.
func (c Config) qfpayDirectory(tp trace.TracerProvider) (*qfpay.Directory, credentialSource, string, error) {
	src, err := c.credentialSource()
	if err != nil {
		return nil, src, "", err
	}
	src.env.TracerProvider = tp
	creds, fp, err := src.load()
	if err != nil {
		return nil, src, "", err
	}
	d, err := qfpay.NewDirectory(creds)
	return d, src, fp, err
}

// validateParts runs the packages' own checks on what the config builds,
// so that start-up lists their problems with the rest.
func (c Config) validateParts() error {
	var errs []error
	if _, err := c.security(); err != nil {
		errs = append(errs, err)
	}
	src, err := c.credentialSource()
	switch {
	case err != nil:
		errs = append(errs, err)
	case c.QFPayCredentialsFile == "" && (c.QFPayBaseURL == "" || c.QFPayAppCode == "" || c.QFPayClientKey == ""):
		// Already reported as missing; qfpay would only say it again.
	case c.QFPayCredentialsFile == "":
		if err := src.env.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("qfpay: %w", err))
		}
	default:
		if _, _, err := src.load(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// databaseURL reads only DATABASE_URL (or DATABASE_URL_FILE), for the
// commands that need nothing else.
func databaseURL(lookup envconfig.Lookuper) (string, error) {
	l, errs := withSecretFiles(lookup, func(name string) bool { return name == "DATABASE_URL" })
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	u, _ := l.Lookup("DATABASE_URL")
	if u == "" {
		return "", errors.New("DATABASE_URL (or DATABASE_URL_FILE) is required")
	}
	return u, nil
}
