// Command devcerts writes the throwaway certificates of the local stack's Kafka security
// listeners (scripts/devstack.sh runs it once per stack, into .stack/kafka/tls): a test CA, a
// broker certificate for 127.0.0.1 and localhost, a client certificate for mutual TLS, and a
// client certificate of the same CA that expired yesterday. Every file is PEM; keys are
// unencrypted PKCS#8 (what Kafka's PEM key store reads) and readable by their owner only.
//
// Nothing it writes is ever checked in: the CA's key lives and dies with the stack.
//
//	go run ./internal/devcerts -dir DIR
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir := flag.String("dir", "", "directory to write the PEM files into (created if missing)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "devcerts: -dir is required")
		os.Exit(2)
	}
	if err := write(*dir, time.Now()); err != nil {
		fmt.Fprintf(os.Stderr, "devcerts: %v\n", err)
		os.Exit(1)
	}
}

// Files write creates in its directory.
const (
	CAFile            = "ca.pem"
	BrokerFile        = "broker.pem" // the broker's key and certificate chain in one file (Kafka's PEM key store)
	ClientCertFile    = "client.pem"
	ClientKeyFile     = "client.key"
	ExpiredCertFile   = "client-expired.pem"
	ExpiredKeyFile    = "client-expired.key"
	brokerValidity    = 5 * 365 * 24 * time.Hour
	expiredNotAfterBy = 24 * time.Hour
)

// write makes the CA and every certificate, valid from now (less a minute of clock skew), and
// writes them into dir.
func write(dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, caKey, err := newCA(now)
	if err != nil {
		return err
	}
	broker, brokerKey, err := issue(ca, caKey, leaf{
		cn: "reversald dev broker", notBefore: now.Add(-time.Minute), notAfter: now.Add(brokerValidity),
		usage: x509.ExtKeyUsageServerAuth, ips: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, dns: []string{"localhost"},
	})
	if err != nil {
		return err
	}
	client, clientKey, err := issue(ca, caKey, leaf{
		cn: "reversald", notBefore: now.Add(-time.Minute), notAfter: now.Add(brokerValidity), usage: x509.ExtKeyUsageClientAuth,
	})
	if err != nil {
		return err
	}
	expired, expiredKey, err := issue(ca, caKey, leaf{
		cn: "reversald expired", notBefore: now.Add(-7 * 24 * time.Hour), notAfter: now.Add(-expiredNotAfterBy),
		usage: x509.ExtKeyUsageClientAuth,
	})
	if err != nil {
		return err
	}
	files := []struct {
		name   string
		blocks [][]byte // DER certificates, or a PKCS#8 key first
		key    *ecdsa.PrivateKey
	}{
		{name: CAFile, blocks: [][]byte{ca.Raw}},
		{name: BrokerFile, key: brokerKey, blocks: [][]byte{broker.Raw, ca.Raw}},
		{name: ClientCertFile, blocks: [][]byte{client.Raw}},
		{name: ClientKeyFile, key: clientKey},
		{name: ExpiredCertFile, blocks: [][]byte{expired.Raw}},
		{name: ExpiredKeyFile, key: expiredKey},
	}
	for _, f := range files {
		var out []byte
		if f.key != nil {
			der, err := x509.MarshalPKCS8PrivateKey(f.key)
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			out = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
		for _, b := range f.blocks {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
		}
		if err := writeFile(filepath.Join(dir, f.name), out); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes by renaming a complete file into place, so a reader never sees half of it.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "reversald dev CA", Organization: []string{"reversald devstack"}},
		NotBefore:             now.Add(-8 * 24 * time.Hour), // covers the expired client certificate's life
		NotAfter:              now.Add(brokerValidity + 24*time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

type leaf struct {
	cn                  string
	notBefore, notAfter time.Time
	usage               x509.ExtKeyUsage
	ips                 []net.IP
	dns                 []string
}

func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, l leaf) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if !l.notBefore.Before(l.notAfter) {
		return nil, nil, errors.New("certificate " + l.cn + ": not before is not before not after")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.cn, Organization: []string{"reversald devstack"}},
		NotBefore:    l.notBefore,
		NotAfter:     l.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{l.usage},
		IPAddresses:  l.ips,
		DNSNames:     l.dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", l.cn, err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}
