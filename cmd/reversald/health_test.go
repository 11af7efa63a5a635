package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestPprofIsOptIn: the health mux has no profiles unless PPROF mounts them;
// once mounted, the index, a named profile and a short CPU profile answer.
func TestPprofIsOptIn(t *testing.T) {
	t.Parallel()
	get := func(mux *http.ServeMux, path string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	off := http.NewServeMux()
	handleHealth(off, nil, nil, consumer.Security{})
	if code, _ := get(off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("without PPROF: /debug/pprof/ = %d, want 404", code)
	}
	on := http.NewServeMux()
	handleHealth(on, nil, nil, consumer.Security{})
	handlePprof(on)
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/profile?seconds=1": "", // a binary protobuf: non-empty is enough
		"/debug/pprof/cmdline":           "",
	} {
		code, body := get(on, path)
		if code != http.StatusOK || len(body) == 0 || !strings.Contains(body, want) {
			t.Errorf("with PPROF: %s = %d, %d bytes; want 200 containing %q", path, code, len(body), want)
		}
	}
	if code, _ := get(on, "/healthz"); code != http.StatusOK {
		t.Errorf("with PPROF: /healthz = %d, want 200", code)
	}
}
