package tracing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald"
)

// Config is the standard OpenTelemetry settings reversald reads itself (the
// daemon fills it from the OTEL_* variables). The exporters read their other
// settings (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE...), and the SDK its sampler (OTEL_TRACES_SAMPLER) and batch
// settings (OTEL_BSP_*), from the process environment themselves.
type Config struct {
	Disabled       bool   // OTEL_SDK_DISABLED
	Exporters      string // OTEL_TRACES_EXPORTER: otlp, console, none, or a comma-separated list
	Endpoint       string // OTEL_EXPORTER_OTLP_ENDPOINT: base URL; /v1/traces is appended for HTTP
	TracesEndpoint string // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: used as it is
	Protocol       string // OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf (default), http/json or grpc
	TracesProtocol string // OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: overrides Protocol
	ServiceName    string // OTEL_SERVICE_NAME; default reversald

	ServiceVersion, InstanceID string    // resource attributes
	Console                    io.Writer // where the console exporter writes; os.Stdout when nil
}

// exporters returns the exporters c asks for: none when tracing is off. With
// OTEL_TRACES_EXPORTER unset, an OTLP endpoint alone asks for otlp.
func (c Config) exporters() ([]string, error) {
	if c.Disabled {
		return nil, nil
	}
	if strings.TrimSpace(c.Exporters) == "" {
		if c.Endpoint != "" || c.TracesEndpoint != "" {
			return []string{"otlp"}, nil
		}
		return nil, nil
	}
	var out []string
	var errs []error
	for e := range strings.SplitSeq(c.Exporters, ",") {
		switch e = strings.ToLower(strings.TrimSpace(e)); e {
		case "none":
		case "otlp", "console":
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		default:
			errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER: unknown exporter %q (otlp, console or none)", e))
		}
	}
	return out, errors.Join(errs...)
}

// protocol returns the OTLP protocol, checked.
func (c Config) protocol() (string, error) {
	p := strings.ToLower(strings.TrimSpace(c.TracesProtocol))
	name := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if p == "" {
		p, name = strings.ToLower(strings.TrimSpace(c.Protocol)), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch p {
	case "":
		return "http/protobuf", nil
	case "http/protobuf", "http/json", "grpc":
		return p, nil
	}
	return "", fmt.Errorf("%s: unknown protocol %q (http/protobuf, http/json or grpc)", name, p)
}

// endpoint returns the URL the OTLP exporter sends to ("" for the exporter's
// default: localhost:4318 for HTTP, localhost:4317 for gRPC).
func (c Config) endpoint(protocol string) string {
	if c.TracesEndpoint != "" {
		return c.TracesEndpoint
	}
	if c.Endpoint == "" || protocol == "grpc" {
		return c.Endpoint
	}
	return strings.TrimRight(c.Endpoint, "/") + "/v1/traces"
}

// Validate lists every problem of c. Settings of an exporter that is off are
// checked too: a typo should not wait for the day tracing is switched on.
func (c Config) Validate() error {
	_, errs := c.exporters()
	all := []error{errs}
	if _, err := c.protocol(); err != nil {
		all = append(all, err)
	}
	for _, e := range []struct{ name, v string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", c.Endpoint}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c.TracesEndpoint},
	} {
		if e.v == "" {
			continue
		}
		if u, err := url.Parse(e.v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The value is not quoted: an endpoint may carry credentials.
			all = append(all, fmt.Errorf("%s must be an absolute http or https URL", e.name))
		}
	}
	return errors.Join(all...)
}

// Enabled reports whether c configures an exporter: tracing is off otherwise.
func (c Config) Enabled() bool {
	ex, err := c.exporters()
	return err == nil && len(ex) > 0
}

// Describe says where spans go, for the start-up log (no header, no
// credential: the endpoint's user info is dropped).
func (c Config) Describe() string {
	ex, err := c.exporters()
	if err != nil || len(ex) == 0 {
		return "off"
	}
	var parts []string
	for _, e := range ex {
		if e != "otlp" {
			parts = append(parts, e)
			continue
		}
		p, _ := c.protocol()
		ep := c.endpoint(p)
		if u, err := url.Parse(ep); err == nil && ep != "" {
			u.User = nil
			ep = u.String()
		}
		parts = append(parts, fmt.Sprintf("otlp %s %s", p, cmp.Or(ep, "(exporter default)")))
	}
	return strings.Join(parts, ", ")
}

// Provider is tracing switched on: an SDK tracer provider with its
// exporters. A nil *Provider is tracing off.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New builds the provider c configures, or returns nil when c configures no
// exporter and no extra span processor is given. extra processors receive
// every span too (tests record spans in memory with them).
func New(ctx context.Context, c Config, extra ...sdktrace.SpanProcessor) (*Provider, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	exporters, _ := c.exporters()
	if len(exporters) == 0 && len(extra) == 0 {
		return nil, nil
	}
	var opts []sdktrace.TracerProviderOption
	for _, name := range exporters {
		exp, err := c.newExporter(ctx, name)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	for _, sp := range extra {
		opts = append(opts, sdktrace.WithSpanProcessor(sp))
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cmp.Or(c.ServiceName, "reversald"))}
	if c.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", c.ServiceVersion))
	}
	if c.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", c.InstanceID))
	}
	// OTEL_RESOURCE_ATTRIBUTES first, so that ours win.
	res, err := resource.Merge(resource.Environment(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts = append(opts, sdktrace.WithResource(res))
	return &Provider{tp: sdktrace.NewTracerProvider(opts...)}, nil
}

func (c Config) newExporter(ctx context.Context, name string) (sdktrace.SpanExporter, error) {
	if name == "console" {
		w := c.Console
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("console trace exporter: %w", err)
		}
		return exp, nil
	}
	p, _ := c.protocol()
	ep := c.endpoint(p)
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if p == "grpc" {
		var o []otlptracegrpc.Option
		if ep != "" {
			o = append(o, otlptracegrpc.WithEndpointURL(ep))
		}
		exp, err = otlptracegrpc.New(ctx, o...)
	} else {
		var o []otlptracehttp.Option
		if ep != "" {
			o = append(o, otlptracehttp.WithEndpointURL(ep))
		}
		if p == "http/json" {
			o = append(o, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
		}
		exp, err = otlptracehttp.New(ctx, o...)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter (%s): %w", p, err)
	}
	return exp, nil
}

// TracerProvider is what the daemon's parts trace into: nil when tracing is
// off (p is nil).
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return nil
	}
	return p.tp
}

// Shutdown ends the provider: the spans still buffered are exported, within
// ctx. A nil Provider has nothing to do.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// PgxTracer traces PostgreSQL statements into tp (the maintained otelpgx
// instrumentation): a statement gets a span only inside a recorded span (an
// event's intake, an attempt's step), so that polls and scrapes do not each
// start a trace. Pool acquisitions are not traced, parameters never recorded.
func PgxTracer(tp trace.TracerProvider) pgx.QueryTracer {
	return otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelpgx.WithDisableAcquireTracer())
}

// propagator is the W3C trace context: traceparent and tracestate.
var propagator = propagation.TraceContext{}

// Propagator is the one propagator reversald reads and writes message headers
// with.
func Propagator() propagation.TextMapPropagator { return propagator }

// Stored returns the trace context of ctx's span as it is stored (zero when
// ctx has no valid span).
func Stored(ctx context.Context) reversald.TraceContext {
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return reversald.TraceContext{Parent: c["traceparent"], State: c["tracestate"]}
}

// Resume returns ctx with the stored trace context tc as its remote parent
// (ctx itself when tc is empty or not a valid traceparent).
func Resume(ctx context.Context, tc reversald.TraceContext) context.Context {
	if tc.Parent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": tc.Parent, "tracestate": tc.State})
}

// SpanContext returns the span context tc stores (invalid when tc is empty
// or malformed).
func SpanContext(tc reversald.TraceContext) trace.SpanContext {
	return trace.SpanContextFromContext(Resume(context.Background(), tc))
}
