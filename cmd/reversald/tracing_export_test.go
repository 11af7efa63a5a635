package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// otlpReceiver is an OTLP/HTTP trace receiver (protobuf) on loopback: what
// a collector would get from the daemon's exporter.
type otlpReceiver struct {
	url string

	mu       sync.Mutex
	requests int
	spans    map[string][]string // trace id (hex) → span names
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{spans: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var msg coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &msg)
		}
		if req.URL.Path != "/v1/traces" || err != nil {
			t.Errorf("OTLP receiver: %s %s: %v", req.Method, req.URL.Path, err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.requests++
		for _, rs := range msg.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					id := hex.EncodeToString(sp.GetTraceId())
					r.spans[id] = append(r.spans[id], sp.GetName())
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *otlpReceiver) got() (requests int, spans map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spans = make(map[string][]string, len(r.spans))
	for k, v := range r.spans {
		spans[k] = append([]string(nil), v...)
	}
	return r.requests, spans
}

// TestTracingExport: the OTEL_* variables decide. An OTLP endpoint alone
// switches tracing on: the event's trace reaches the collector over OTLP/HTTP
// (input traceparent to outcome headers). Off (OTEL_TRACES_EXPORTER=none,
// OTEL_SDK_DISABLED=true, or nothing set) nothing is exported even to a
// configured endpoint, no trace header is added to the outcome, and no trace
// context is stored.
func TestTracingExport(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  func(endpoint string) map[string]string
		on   bool
	}{
		{"endpoint", func(ep string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep} }, true},
		{"exporter-none", func(ep string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "none"}
		}, false},
		{"sdk-disabled", func(ep string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ep + "/v1/traces", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
		}, false},
		{"unset", func(string) map[string]string { return nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recv := newOTLPReceiver(t)
			s := newStack(t, 1)
			s.seed("X1", sandbox.StateInFlight, "800101")
			tp, parent := newTraceparent(t)
			m := ev{id: "x-1", otn: "X1"}.message()
			m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: []byte(tp)})

			out := s.collect(s.results)
			stop := s.runTraced(tc.env(recv.url), nil)
			s.produce(s.in, m)
			out.waitOutcomes(t, 1, 60*time.Second)
			kafkatest.WaitFor(t, 60*time.Second, func() bool { return s.quiet(out) }, "the pipeline to go quiet")
			stop() // shuts the provider down: what was buffered is exported now

			requests, spans := recv.got()
			header, hasHeader := kafkatest.Header(out.Messages()[0], "traceparent")
			stored := storedTraceContexts(t, s.dbURL)
			if !tc.on {
				if requests != 0 || len(spans) != 0 {
					t.Errorf("tracing off: the receiver got %d requests with spans %v, want none", requests, spans)
				}
				if hasHeader {
					t.Errorf("tracing off: the outcome carries traceparent %q, want no trace header", header)
				}
				if stored != "" {
					t.Errorf("tracing off: trace context stored: %q", stored)
				}
				return
			}
			names := spans[parent.TraceID().String()]
			if len(names) == 0 {
				t.Fatalf("the receiver got %d requests but no span of the input's trace %s: %v", requests, parent.TraceID(), spans)
			}
			for _, want := range []string{"process " + s.in, "drive attempt", "step cancel", "qfpay /trade/v1/reversal", "send " + s.results} {
				if !contains(names, want) {
					t.Errorf("exported trace has no %q span: %v", want, names)
				}
			}
			if !hasHeader || parseTraceparent(t, header).TraceID() != parent.TraceID() {
				t.Errorf("outcome traceparent %q, want the input's trace %s", header, parent.TraceID())
			}
			if stored == "" {
				t.Errorf("tracing on: no trace context stored with the event, attempt and outbox row")
			}
		})
	}
}

// storedTraceContexts returns every trace context the database holds, joined
// ("" when none).
func storedTraceContexts(t *testing.T, dbURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var all string
	err = conn.QueryRow(ctx, `
		SELECT (SELECT string_agg(traceparent || tracestate, '') FROM events) ||
		       (SELECT string_agg(traceparent || tracestate, '') FROM attempts) ||
		       (SELECT string_agg(traceparent || tracestate || attempt_traceparent, '') FROM outbox)`).Scan(&all)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
