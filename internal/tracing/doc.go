// Package tracing is reversald's OpenTelemetry tracing: the provider built
// from the standard OTEL_* settings, and the W3C trace context as it crosses
// Kafka headers and PostgreSQL rows.
//
// Tracing is off unless the settings configure an exporter (Config.Enabled).
// Off, New returns a nil *Provider, whose TracerProvider is nil: every part
// of the daemon then skips tracing entirely (no span, no header read or
// written, no context stored), so it costs nothing.
//
// The trace of one input event: the input message's traceparent header (or a
// new trace) → the intake span of that message → the attempt's executor
// spans (each claim, each step, each QFPay call, each statement) → the
// publish span of the event's outcome, whose context the outcome message
// carries in its headers. Between intake, executor and publisher the context
// is stored with the event, the attempt and the outbox row
// (reversald.TraceContext).
//
// Only the trace context propagator is used (traceparent, tracestate), and
// never towards QFPay: the gateway is another company's.
package tracing
