package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
