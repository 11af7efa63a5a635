package qfpay

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestClientTracing: with a TracerProvider every call is one client span, a
// child of the caller's span, named after the endpoint; no trace header goes
// to QFPay; and neither the key nor the X-QF-SIGN the gateway received is in
// any span.
func TestClientTracing(t *testing.T) { //nolint:paralleltest // sets the process-wide propagator
	sb, sbURL := startSandbox(t, nil)
	put(t, sb, seedOTN, sandbox.StateInFlight)
	target, err := url.Parse(sbURL)
	if err != nil {
		t.Fatal(err)
	}
	// A proxy in front of the sandbox keeps the headers each call arrived with.
	var (
		mu      sync.Mutex
		headers []http.Header
	)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	// A process-wide propagator, as a program that installs one would have:
	// the client must still send no trace header to QFPay.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c := testClient(t, front.URL, func(cfg *Config) { cfg.TracerProvider = tp })

	ctx, parent := tp.Tracer("test").Start(context.Background(), "step")
	if _, err := c.Query(ctx, QueryRequest{OutTradeNo: seedOTN}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reverse(ctx, CancelRequest{OutTradeNo: seedOTN, TxAmt: 2500, TxDtm: seedTxDtm}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var calls []sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.SpanKind() == trace.SpanKindClient {
			calls = append(calls, sp)
		}
	}
	if len(calls) != 2 || calls[0].Name() != "qfpay /trade/v1/query" || calls[1].Name() != "qfpay /trade/v1/reversal" {
		names := []string{}
		for _, sp := range calls {
			names = append(names, sp.Name())
		}
		t.Fatalf("client spans %v, want one per call: qfpay /trade/v1/query, qfpay /trade/v1/reversal", names)
	}
	for _, sp := range calls {
		if sp.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want the caller's span", sp.Name(), sp.Parent().SpanID())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(headers) != 2 {
		t.Fatalf("the gateway got %d calls, want 2", len(headers))
	}
	secrets := []string{testKey}
	for _, h := range headers {
		for _, name := range []string{"Traceparent", "Tracestate", "Baggage"} {
			if v := h.Get(name); v != "" {
				t.Errorf("QFPay got a %s header %q: no trace context goes to the gateway", name, v)
			}
		}
		sig := h.Get("X-QF-SIGN")
		if len(sig) != 32 {
			t.Fatalf("X-QF-SIGN %q: not an MD5 signature", sig)
		}
		secrets = append(secrets, sig)
	}
	for _, sp := range rec.Ended() {
		text := sp.Name() + " " + sp.Status().Description
		for _, kv := range sp.Attributes() {
			text += fmt.Sprintf(" %s=%s", kv.Key, kv.Value.String())
		}
		for _, e := range sp.Events() {
			text += " " + e.Name + attrText(e.Attributes)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("span %q holds the key or a signature: %s", sp.Name(), text)
			}
		}
	}
}

func attrText(kvs []attribute.KeyValue) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
	}
	return b.String()
}
