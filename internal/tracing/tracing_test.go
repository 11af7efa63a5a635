package tracing

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		c        Config
		enabled  bool
		endpoint string // what the OTLP exporter is given ("" for its default)
		describe string
		err      string // a substring of the error; "" for none
	}{
		{name: "nothing set: off", c: Config{}, describe: "off"},
		{name: "endpoint alone: otlp over HTTP", c: Config{Endpoint: "http://collector:4318"}, enabled: true,
			endpoint: "http://collector:4318/v1/traces", describe: "otlp http/protobuf http://collector:4318/v1/traces"},
		{name: "traces endpoint as given", c: Config{Endpoint: "http://a:4318", TracesEndpoint: "https://b/custom"}, enabled: true,
			endpoint: "https://b/custom"},
		{name: "grpc takes the endpoint as given", c: Config{Endpoint: "http://collector:4317", Protocol: "grpc"}, enabled: true,
			endpoint: "http://collector:4317", describe: "otlp grpc http://collector:4317"},
		{name: "traces protocol wins", c: Config{Endpoint: "http://c:4317", Protocol: "http/protobuf", TracesProtocol: "GRPC"}, enabled: true,
			endpoint: "http://c:4317"},
		{name: "exporter otlp with the default endpoint", c: Config{Exporters: "otlp"}, enabled: true, describe: "otlp http/protobuf (exporter default)"},
		{name: "console", c: Config{Exporters: " Console "}, enabled: true, describe: "console"},
		{name: "none wins over an endpoint", c: Config{Exporters: "none", Endpoint: "http://c:4318"}, describe: "off"},
		{name: "sdk disabled", c: Config{Disabled: true, Exporters: "otlp", Endpoint: "http://c:4318"}, describe: "off"},
		{name: "user info is not described", c: Config{Endpoint: "https://user:pw@c:4318"}, enabled: true,
			endpoint: "https://user:pw@c:4318/v1/traces", describe: "otlp http/protobuf https://c:4318/v1/traces"},
		{name: "unknown exporter", c: Config{Exporters: "otlp,zipkin"}, err: `OTEL_TRACES_EXPORTER: unknown exporter "zipkin"`},
		{name: "unknown protocol", c: Config{Endpoint: "http://c", Protocol: "thrift"}, err: `OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol "thrift"`},
		{name: "bad endpoint, not quoted", c: Config{Endpoint: "collector:4318"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT must be an absolute http or https URL"},
		{name: "bad endpoint while off is still reported", c: Config{Exporters: "none", TracesEndpoint: "ftp://x"}, describe: "off",
			err: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.c.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Validate: %v, want %q", err, tc.err)
			case err != nil && strings.Contains(err.Error(), "collector:4318"):
				t.Errorf("the error quotes the endpoint: %v", err)
			}
			if tc.err != "" {
				return
			}
			if got := tc.c.Enabled(); got != tc.enabled {
				t.Errorf("Enabled = %v, want %v", got, tc.enabled)
			}
			p, _ := tc.c.protocol()
			if tc.enabled && tc.endpoint != "" {
				if got := tc.c.endpoint(p); got != tc.endpoint {
					t.Errorf("endpoint = %q, want %q", got, tc.endpoint)
				}
			}
			if tc.describe != "" && tc.c.Describe() != tc.describe {
				t.Errorf("Describe = %q, want %q", tc.c.Describe(), tc.describe)
			}
		})
	}
}

// TestNewOff: no exporter configured, no provider: nil, and a nil Provider
// is safe to use.
func TestNewOff(t *testing.T) {
	t.Parallel()
	p, err := New(context.Background(), Config{Exporters: "none", Endpoint: "http://127.0.0.1:1"})
	if err != nil || p != nil {
		t.Fatalf("New = %v, %v; want nil, nil", p, err)
	}
	if p.TracerProvider() != nil {
		t.Error("a nil Provider's TracerProvider must be a nil interface (parts test it against nil)")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestNewConsole: the console exporter writes the spans, with the resource
// naming the service, at shutdown at the latest.
func TestNewConsole(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p, err := New(context.Background(), Config{Exporters: "console", ServiceVersion: "v9", InstanceID: "i-1", Console: &out})
	if err != nil || p == nil {
		t.Fatalf("New = %v, %v", p, err)
	}
	_, sp := p.TracerProvider().Tracer("test").Start(context.Background(), "a span")
	sp.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Name":"a span"`, `"Value":"reversald"`, `"Value":"v9"`, `"Value":"i-1"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console output lacks %s:\n%s", want, out.String())
		}
	}
}

// TestStoredResume: a span's context survives the trip through its stored
// form, tracestate included; an empty or malformed one resumes nothing.
func TestStoredResume(t *testing.T) {
	t.Parallel()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("pos=7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts})
	tc := Stored(trace.ContextWithSpanContext(context.Background(), sc))
	want := reversald.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "pos=7"}
	if tc != want {
		t.Fatalf("Stored = %+v, want %+v", tc, want)
	}
	back := SpanContext(tc)
	if back.TraceID() != tid || back.SpanID() != sid || !back.IsSampled() || !back.IsRemote() || back.TraceState().String() != "pos=7" {
		t.Errorf("SpanContext(Stored) = %+v", back)
	}
	if Stored(context.Background()) != (reversald.TraceContext{}) {
		t.Error("no span: want an empty stored context")
	}
	for _, bad := range []reversald.TraceContext{{}, {Parent: "not a traceparent"}, {Parent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}} {
		if SpanContext(bad).IsValid() {
			t.Errorf("SpanContext(%+v) is valid", bad)
		}
	}
}
