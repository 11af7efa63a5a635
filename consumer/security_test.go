package consumer

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecurityValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		sec  Security
		want []string // substrings of the error; empty: valid
	}{
		{name: "plaintext", sec: Security{}},
		{name: "tls only", sec: Security{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}},
		{name: "plain", sec: Security{SASLMechanism: SASLPlain, Username: "u", Password: "p"}},
		{name: "scram 256", sec: Security{SASLMechanism: SASLScramSHA256, Username: "u", Password: "p"}},
		{name: "scram 512 tls", sec: Security{TLS: &tls.Config{}, SASLMechanism: SASLScramSHA512, Username: "u", Password: "p"}},
		{name: "unknown mechanism", sec: Security{SASLMechanism: "GSSAPI", Username: "u", Password: "p"}, want: []string{`mechanism "GSSAPI" is not one of`}},
		{name: "lower-case mechanism", sec: Security{SASLMechanism: "plain", Username: "u", Password: "p"}, want: []string{`mechanism "plain"`}},
		{name: "missing both", sec: Security{SASLMechanism: SASLScramSHA512}, want: []string{"needs a username", "needs a password"}},
		{name: "credentials without mechanism", sec: Security{Username: "u", Password: "p"}, want: []string{"without a SASL mechanism"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.sec.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				d, err := tc.sec.Dialer()
				if err != nil {
					t.Fatalf("Dialer: %v", err)
				}
				tr, err := tc.sec.Transport()
				if err != nil {
					t.Fatalf("Transport: %v", err)
				}
				if (d.TLS != nil) != (tc.sec.TLS != nil) || (tr.TLS != nil) != (tc.sec.TLS != nil) {
					t.Fatalf("TLS not carried: dialer %v transport %v", d.TLS != nil, tr.TLS != nil)
				}
				if tc.sec.SASLMechanism != "" {
					if d.SASLMechanism == nil || d.SASLMechanism.Name() != tc.sec.SASLMechanism ||
						tr.SASL == nil || tr.SASL.Name() != tc.sec.SASLMechanism {
						t.Fatalf("SASL mechanism not carried for %s", tc.sec.SASLMechanism)
					}
				} else if d.SASLMechanism != nil || tr.SASL != nil {
					t.Fatal("SASL mechanism set without one configured")
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid security config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not contain %q", err, w)
				}
			}
			if _, err := tc.sec.Dialer(); err == nil {
				t.Error("Dialer accepted an invalid security config")
			}
			if _, err := tc.sec.Transport(); err == nil {
				t.Error("Transport accepted an invalid security config")
			}
		})
	}
}

func TestSecurityNeverPrintsPassword(t *testing.T) {
	t.Parallel()
	sec := Security{SASLMechanism: SASLScramSHA256, Username: "svc", Password: "hunter2-secret"}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "kafka", sec)
	for _, s := range []string{fmt.Sprint(sec), fmt.Sprintf("%v %+v %#v %s", sec, sec, sec, sec), logs.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("password printed: %s", s)
		}
		if !strings.Contains(s, "svc") {
			t.Fatalf("username missing (formatting not exercised?): %s", s)
		}
	}
}
