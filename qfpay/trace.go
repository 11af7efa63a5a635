package qfpay

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traced returns a copy of hc whose transport traces each request into tp
// with otelhttp: a client span per call, named after the endpoint, with the
// method, URL (QFPay's fields travel in the body, not the URL), status code
// and any transport error. otelhttp records no request header, so X-QF-SIGN
// stays out of spans; it is given no propagator, so no traceparent goes to
// QFPay (another company's gateway has no use for our trace ids).
func traced(hc *http.Client, tp trace.TracerProvider) *http.Client {
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out := *hc
	out.Transport = otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "qfpay " + r.URL.Path }),
	)
	return &out
}
