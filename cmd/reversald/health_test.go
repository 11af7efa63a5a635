package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// TestHealthAndReadiness: /healthz answers 200 while the process lives;
// /readyz answers 200 when PostgreSQL and a broker answer, and 503 naming
// the failing check otherwise.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	url := storetest.URL(t)
	get := func(st *store.Store, brokers []string, path string) (int, map[string]string) {
		t.Helper()
		mux := http.NewServeMux()
		handleHealth(mux, st, brokers, consumer.Security{})
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
		return rec.Code, body
	}
	st, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(st, brokers, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get(st, brokers, "/readyz"); code != http.StatusOK || body["postgres"] != "ok" || body["kafka"] != "ok" {
		t.Errorf("/readyz with both up = %d %v", code, body)
	}
	if code, body := get(st, []string{"127.0.0.1:1"}, "/readyz"); code != http.StatusServiceUnavailable || body["kafka"] == "ok" || body["postgres"] != "ok" {
		t.Errorf("/readyz with no broker = %d %v; want 503 naming kafka", code, body)
	}
	st.Close()
	if code, body := get(st, brokers, "/readyz"); code != http.StatusServiceUnavailable || body["postgres"] == "ok" {
		t.Errorf("/readyz with the database gone = %d %v; want 503 naming postgres", code, body)
	}
	if code, _ := get(st, brokers, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the database gone = %d, want 200 (the process lives)", code)
	}
}

// TestTxZoneParam: txzone is sent only when it is not QFPay's default.
func TestTxZoneParam(t *testing.T) {
	t.Parallel()
	for zone, want := range map[string]string{"+0800": "", "-0500": "-0500", "+0000": "+0000"} {
		if got := txZoneParam(zone); got != want {
			t.Errorf("txZoneParam(%q) = %q, want %q", zone, got, want)
		}
	}
}
