package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/internal/console"
	"github.com/reversald/reversald/store"
)

// consoleConfig is what `reversald console` reads: the database and the
// CONSOLE_* settings, nothing of the daemon's, so a daemon setting cannot
// stop it.
type consoleConfig struct {
	DatabaseURL    string        `env:"DATABASE_URL"`
	Addr           string        `env:"CONSOLE_ADDR, default=127.0.0.1:9095"`
	AdminTokenFile string        `env:"CONSOLE_ADMIN_TOKEN_FILE"`
	ViewTokenFile  string        `env:"CONSOLE_READONLY_TOKEN_FILE"`
	TLSCertFile    string        `env:"CONSOLE_TLS_CERT_FILE"`
	TLSKeyFile     string        `env:"CONSOLE_TLS_KEY_FILE"`
	AllowPlainHTTP bool          `env:"CONSOLE_ALLOW_PLAIN_HTTP, default=false"`
	SessionTTL     time.Duration `env:"CONSOLE_SESSION_TTL, default=8h"`
}

// consoleSettings is the checked configuration, ready to serve.
type consoleSettings struct {
	dbURL string
	addr  string
	tls   *tls.Config // nil: plain HTTP
	cfg   console.Config
}

// loadConsoleConfig reads and checks the console's settings, every problem
// at once. It refuses to serve plain HTTP on an address other than loopback
// unless CONSOLE_ALLOW_PLAIN_HTTP=true: the console's tokens and session
// cookie would cross the network in clear.
func loadConsoleConfig(ctx context.Context, lookup envconfig.Lookuper) (consoleSettings, error) {
	want := func(name string) bool { return name == "DATABASE_URL" || strings.HasPrefix(name, "CONSOLE_") }
	c, unparsed, errs := parseEnv[consoleConfig](ctx, lookup, want)
	var out consoleSettings
	if c.DatabaseURL == "" && !unparsed["DATABASE_URL"] {
		errs = append(errs, errors.New("DATABASE_URL (or DATABASE_URL_FILE) is required"))
	}
	out.dbURL = c.DatabaseURL
	token := func(name, path string) string {
		if path == "" {
			errs = append(errs, fmt.Errorf("%s is required: the path of a file holding the token (at least %d characters; openssl rand -base64 24)", name, console.MinTokenLen))
			return ""
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	}
	out.cfg = console.Config{
		AdminToken: token("CONSOLE_ADMIN_TOKEN_FILE", c.AdminTokenFile), ViewerToken: token("CONSOLE_READONLY_TOKEN_FILE", c.ViewTokenFile),
		SessionTTL: c.SessionTTL,
	}
	if out.cfg.AdminToken != "" && out.cfg.ViewerToken != "" {
		if err := out.cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("CONSOLE_ADMIN_TOKEN_FILE/CONSOLE_READONLY_TOKEN_FILE: %w", err))
		}
	}
	if c.SessionTTL <= 0 && !unparsed["CONSOLE_SESSION_TTL"] {
		errs = append(errs, fmt.Errorf("CONSOLE_SESSION_TTL must be positive, got %s", c.SessionTTL))
	}
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "":
	case c.TLSCertFile == "" || c.TLSKeyFile == "":
		errs = append(errs, errors.New("CONSOLE_TLS_CERT_FILE and CONSOLE_TLS_KEY_FILE go together: give both to serve HTTPS, or neither"))
	default:
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("CONSOLE_TLS_CERT_FILE/CONSOLE_TLS_KEY_FILE: %w", err))
			break
		}
		out.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		out.cfg.TLS = true
	}
	out.addr = c.Addr
	host, _, err := net.SplitHostPort(c.Addr)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("CONSOLE_ADDR %q: %w (give host:port, e.g. 127.0.0.1:9095)", c.Addr, err))
	case out.tls == nil && !c.AllowPlainHTTP && !loopback(host):
		errs = append(errs, fmt.Errorf("CONSOLE_ADDR %q is not a loopback address and the console has no TLS: its tokens and session "+
			"cookie would cross the network in clear. Set CONSOLE_TLS_CERT_FILE and CONSOLE_TLS_KEY_FILE, or "+
			"CONSOLE_ALLOW_PLAIN_HTTP=true behind a proxy that terminates TLS", c.Addr))
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return out, nil
}

// loopback reports whether host names only this machine: localhost or a
// loopback IP. An empty host is every interface.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// consoleCmd serves the operator console until ctx ends.
func consoleCmd(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprintln(stdout, "usage: reversald console\n\nServes the operator console; configured by DATABASE_URL and the CONSOLE_* variables (README.md, \"The operator console\").")
			return nil
		}
		return usageError{fmt.Sprintf("console: unexpected argument %q (it takes none; configure it with CONSOLE_* variables)", args[0])}
	}
	cs, err := loadConsoleConfig(ctx, lookup)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cs.cfg.Log = log
	st, err := store.Open(ctx, cs.dbURL, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	h, err := console.New(st, cs.cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cs.addr)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", cs.addr, err)
	}
	scheme := "http"
	if cs.tls != nil {
		ln = tls.NewListener(ln, cs.tls)
		scheme = "https"
	}
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "reversald console: serving on %s://%s\n", scheme, ln.Addr())
	log.Info("console: serving", "addr", ln.Addr().String(), "tls", cs.tls != nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return fmt.Errorf("console: shut down: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}
