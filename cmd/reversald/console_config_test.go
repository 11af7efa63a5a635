package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/store/storetest"
)

func consoleEnv(tk consoleTokens, extra map[string]string) envconfig.Lookuper {
	env := map[string]string{
		"DATABASE_URL":             "postgres://u:p@127.0.0.1:5432/db",
		"CONSOLE_ADMIN_TOKEN_FILE": tk.adminFile, "CONSOLE_READONLY_TOKEN_FILE": tk.viewerFile,
	}
	for k, v := range extra {
		env[k] = v
	}
	return envconfig.MapLookuper(env)
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "console test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestConsoleConfig: the console refuses plain HTTP on an address other
// than loopback unless CONSOLE_ALLOW_PLAIN_HTTP=true or TLS is set; it
// needs both token files, long and different; and it lists every problem
// at once, quoting no token.
func TestConsoleConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tk := newConsoleTokens(t)
	cert, key, _ := selfSigned(t)
	for _, c := range []struct {
		name  string
		extra map[string]string
		want  string // "" accepted
	}{
		{"default loopback", nil, ""},
		{"localhost", map[string]string{"CONSOLE_ADDR": "localhost:9095"}, ""},
		{"ipv6 loopback", map[string]string{"CONSOLE_ADDR": "[::1]:9095"}, ""},
		{"every interface, plain", map[string]string{"CONSOLE_ADDR": ":9095"}, "CONSOLE_ADDR \":9095\" is not a loopback address and the console has no TLS"},
		{"an interface, plain", map[string]string{"CONSOLE_ADDR": "10.1.2.3:9095"}, "CONSOLE_ALLOW_PLAIN_HTTP=true"},
		{"a host name, plain", map[string]string{"CONSOLE_ADDR": "console.internal:9095"}, "is not a loopback address"},
		{"plain allowed", map[string]string{"CONSOLE_ADDR": "0.0.0.0:9095", "CONSOLE_ALLOW_PLAIN_HTTP": "true"}, ""},
		{"TLS", map[string]string{"CONSOLE_ADDR": "0.0.0.0:9095", "CONSOLE_TLS_CERT_FILE": cert, "CONSOLE_TLS_KEY_FILE": key}, ""},
		{"half TLS", map[string]string{"CONSOLE_ADDR": "0.0.0.0:9095", "CONSOLE_TLS_CERT_FILE": cert}, "CONSOLE_TLS_CERT_FILE and CONSOLE_TLS_KEY_FILE go together"},
		{"TLS key is not one", map[string]string{"CONSOLE_TLS_CERT_FILE": cert, "CONSOLE_TLS_KEY_FILE": cert}, "CONSOLE_TLS_CERT_FILE/CONSOLE_TLS_KEY_FILE"},
		{"no port", map[string]string{"CONSOLE_ADDR": "127.0.0.1"}, "give host:port"},
		{"bad ttl", map[string]string{"CONSOLE_SESSION_TTL": "-1h"}, "CONSOLE_SESSION_TTL must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConsoleConfig(ctx, consoleEnv(tk, c.extra))
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %v, want an error saying %q", err, c.want)
			}
		})
	}

	// Start-up itself refuses, before opening the database.
	err := run(ctx, []string{"console"}, consoleEnv(tk, map[string]string{"CONSOLE_ADDR": "0.0.0.0:0"}), &strings.Builder{}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "CONSOLE_ALLOW_PLAIN_HTTP") {
		t.Errorf("reversald console on 0.0.0.0 without TLS: %v, want a refusal", err)
	}

	// Every problem at once, and no token in any of them.
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"console"}, envconfig.MapLookuper(map[string]string{
		"CONSOLE_ADDR": "0.0.0.0:9095", "CONSOLE_READONLY_TOKEN_FILE": short, "CONSOLE_SESSION_TTL": "forever",
	}), &strings.Builder{}, &strings.Builder{})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"DATABASE_URL", "CONSOLE_ADMIN_TOKEN_FILE is required", "CONSOLE_SESSION_TTL", "not a loopback address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the problems do not mention %q:\n%v", want, err)
		}
	}
	err = run(ctx, []string{"console"}, consoleEnv(consoleTokens{adminFile: short, viewerFile: short}, nil), &strings.Builder{}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "at least 24 are required") || !strings.Contains(err.Error(), "are the same") ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("short, equal tokens: %v", err)
	}
}

// TestConsoleOverTLS: with CONSOLE_TLS_* the console serves HTTPS only; its
// session cookie is Secure with the __Host- prefix, and HSTS is sent.
func TestConsoleOverTLS(t *testing.T) {
	t.Parallel()
	tk := newConsoleTokens(t)
	cert, key, pool := selfSigned(t)
	dbURL := storetest.URL(t)
	base := startConsole(t, dbURL, tk, map[string]string{"CONSOLE_TLS_CERT_FILE": cert, "CONSOLE_TLS_KEY_FILE": key})
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("the console serves on %q, want https://127.0.0.1:PORT", base)
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	form := url.Values{"name": {"alice"}, "token": {tk.admin}}
	resp, err := client.PostForm(base+"/signin", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"__Host-reversald_console=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") {
		t.Errorf("Strict-Transport-Security %q", h)
	}
	// Plain HTTP on the same port gets no page.
	plain, err := http.Get(strings.Replace(base, "https://", "http://", 1) + "/signin")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Error("the TLS console answered plain HTTP with a page")
		}
	}
}
