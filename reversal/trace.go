package reversal

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/tracing"
	"github.com/reversald/reversald/qfpay"
)

// instrumentation is the tracer name of the executor's spans.
const instrumentation = "github.com/reversald/reversald/reversal"

// Traced returns h with Drive and StepStart set to trace the executor into tp:
// a span per claimed attempt's drive, in the trace of the event that created
// the attempt (its stored context, whichever instance took the event in), and
// under it a span per step. The step's gateway calls (the QFPay client's
// transport) and statements (the store's tracer) are children of the step.
// An attempt with no stored context (taken in while tracing was off) starts a
// trace of its own. Each write of a step gets a span ("write step"); the
// writes of several workers share a batch, whose statements are traced
// under the first one's span, and the others link to it.
func (h ExecutorHooks) Traced(tp trace.TracerProvider) ExecutorHooks {
	tracer := tp.Tracer(instrumentation)
	h.Drive = func(ctx context.Context, a reversald.Attempt) (context.Context, func(reversald.Attempt)) {
		ctx, span := tracer.Start(tracing.Resume(ctx, a.Trace), "drive attempt", trace.WithAttributes(
			attribute.Int64("reversald.attempt.id", a.ID),
			attribute.String("reversald.mchid", a.MchID),
			attribute.String("reversald.out_trade_no", a.OutTradeNo),
			attribute.Int64("reversald.token", a.Token),
			attribute.String("reversald.step", string(a.Step)),
		))
		return ctx, func(a reversald.Attempt) {
			span.SetAttributes(
				attribute.String("reversald.status", string(a.Status)),
				attribute.String("reversald.next_step", string(a.Step)),
				attribute.Int("reversald.gateway_calls", a.GatewayCalls),
			)
			span.End()
		}
	}
	h.StepStart = func(ctx context.Context, a reversald.Attempt) (context.Context, func(reversald.Attempt, error)) {
		ctx, span := tracer.Start(ctx, "step "+string(a.Step), trace.WithAttributes(
			attribute.Int64("reversald.attempt.id", a.ID),
			attribute.String("reversald.step", string(a.Step)),
		))
		return ctx, func(a reversald.Attempt, err error) {
			span.SetAttributes(
				attribute.String("reversald.status", string(a.Status)),
				attribute.String("reversald.next_step", string(a.Step)),
			)
			if err != nil {
				// Errors never carry the key or a signature (qfpay's rule).
				span.SetAttributes(attribute.String("reversald.gateway.class", qfpay.Classify(err).String()))
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
	}
	h.StepWrite = func(ctx context.Context, a reversald.Attempt) (context.Context, func(context.Context, int, error)) {
		ctx, span := tracer.Start(ctx, "write step", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.Int64("reversald.attempt.id", a.ID),
			attribute.Int64("reversald.token", a.Token),
		))
		own := span.SpanContext()
		return ctx, func(leader context.Context, batch int, err error) {
			span.SetAttributes(attribute.Int("db.operation.batch.size", batch))
			// The batch's statements are traced under its first waiter's
			// write: the others link to it.
			if sc := trace.SpanContextFromContext(leader); sc.IsValid() && sc.SpanID() != own.SpanID() {
				span.AddLink(trace.Link{SpanContext: sc})
			}
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
	}
	return h
}
