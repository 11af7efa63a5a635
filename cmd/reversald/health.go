package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/reversald/reversald/internal/backoff"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/store"
)

// handleHealth serves /healthz (the process answers) and /readyz (PostgreSQL
// and a Kafka broker answer) on mux.
func handleHealth(mux *http.ServeMux, st *store.Store, brokers []string, sec consumer.Security) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks := map[string]string{"postgres": "ok", "kafka": "ok"}
		code := http.StatusOK
		if err := st.Ping(ctx); err != nil {
			checks["postgres"], code = err.Error(), http.StatusServiceUnavailable
		}
		if err := kafkaReachable(ctx, brokers, sec); err != nil {
			checks["kafka"], code = err.Error(), http.StatusServiceUnavailable
		}
		writeJSON(w, code, checks)
	})
}

// kafkaReachable succeeds when a broker answers a metadata request over a
// connection secured as configured (consumer.Security.Check): a dial alone
// would pass a broker that then refuses the client certificate or the password.
func kafkaReachable(ctx context.Context, brokers []string, sec consumer.Security) error {
	return sec.Check(ctx, brokers)
}

// waitForBrokers returns once a broker of brokers accepts a TCP connection,
// trying every address each second for up to wait. Past that it fails naming
// every address with its last error, so that a wrong KAFKA_BROKERS stops the
// start-up instead of retrying unseen. Whether a broker accepts the client's
// TLS and SASL is checkKafka's question, asked next.
func waitForBrokers(ctx context.Context, brokers []string, wait time.Duration) error {
	var d net.Dialer
	deadline := time.Now().Add(wait)
	last := make([]string, len(brokers))
	for {
		for i, b := range brokers {
			dctx, cancel := context.WithDeadline(ctx, deadline)
			conn, err := d.DialContext(dctx, "tcp", b)
			cancel()
			if err == nil {
				_ = conn.Close() // a probe: only the dial mattered
				return nil
			}
			last[i] = b + " (" + err.Error() + ")"
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !time.Now().Before(deadline) || !backoff.Sleep(ctx, min(time.Second, time.Until(deadline))) {
			break
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("no broker of KAFKA_BROKERS accepted a connection within %s (KAFKA_STARTUP_WAIT): %s", wait, strings.Join(last, "; "))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// handlePprof mounts Go's profiles under /debug/pprof/ on the health port. It
// is opt-in (PPROF=true), for an operator who asked for them: a profile shows
// the code's shape and costs CPU while it runs, never a secret (the process's
// command line holds none; the key comes from the environment or a file).
func handlePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
