package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWrite: the broker certificate verifies for 127.0.0.1 and localhost as a server, the
// client certificate as a client, the expired one is refused as expired, every key matches
// its certificate, and keys are readable by their owner only.
func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	if err := write(dir, now); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in ca.pem")
	}
	pair := func(cert, key string) *x509.Certificate {
		t.Helper()
		kp, err := tls.LoadX509KeyPair(filepath.Join(dir, cert), filepath.Join(dir, key))
		if err != nil {
			t.Fatalf("%s/%s: %v", cert, key, err)
		}
		c, err := x509.ParseCertificate(kp.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := pair(BrokerFile, BrokerFile) // key and chain in one file
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := broker.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now}); err != nil {
			t.Errorf("broker certificate for %s: %v", host, err)
		}
	}
	client := pair(ClientCertFile, ClientKeyFile)
	clientUse := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: clientUse, CurrentTime: now}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now}); err == nil {
		t.Error("the client certificate verifies as a server certificate")
	}
	expired := pair(ExpiredCertFile, ExpiredKeyFile)
	_, err = expired.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: clientUse, CurrentTime: now})
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired certificate: Verify says %v, want expired", err)
	}
	// Signed by the same CA: only its dates are wrong.
	if _, err := expired.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: clientUse, CurrentTime: expired.NotAfter.Add(-time.Hour)}); err != nil {
		t.Errorf("expired certificate within its dates: %v", err)
	}
	for _, f := range []string{BrokerFile, ClientKeyFile, ExpiredKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}
