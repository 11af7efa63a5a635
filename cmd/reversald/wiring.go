package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sethvargo/go-envconfig"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/qfpay"
)

// security builds the Kafka TLS and SASL settings.
func (c Config) security() (consumer.Security, error) {
	sec := consumer.Security{SASLMechanism: strings.ToUpper(c.KafkaSASL), Username: c.KafkaSASLUser, Password: c.KafkaSASLPassword}
	if c.KafkaTLS {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.KafkaTLSCAFile != "" {
			pem, err := os.ReadFile(c.KafkaTLSCAFile)
			if err != nil {
				return sec, fmt.Errorf("KAFKA_TLS_CA_FILE: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return sec, fmt.Errorf("KAFKA_TLS_CA_FILE %s: no PEM certificate in it", c.KafkaTLSCAFile)
			}
			t.RootCAs = pool
		}
		if c.KafkaTLSCertFile != "" || c.KafkaTLSKeyFile != "" {
			cert, err := tls.LoadX509KeyPair(c.KafkaTLSCertFile, c.KafkaTLSKeyFile)
			if err != nil {
				return sec, fmt.Errorf("KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE: %w", err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		sec.TLS = t
	}
	if err := sec.Validate(); err != nil {
		return sec, fmt.Errorf("kafka security: %w", err)
	}
	return sec, nil
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
	l, errs := withSecretFiles(lookup)
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	u, _ := l.Lookup("DATABASE_URL")
	if u == "" {
		return "", errors.New("DATABASE_URL (or DATABASE_URL_FILE) is required")
	}
	return u, nil
}
