package consumer

import (
	"context"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald/internal/tracing"
	"github.com/reversald/reversald/store"
)

// Tracing of the Kafka side (see internal/tracing). Every function here is
// called only when the part has a tracer: with tracing off nothing is read
// from or written to headers and no span is started.

// instrumentation is the tracer name of this package's spans.
const instrumentation = "github.com/reversald/reversald/consumer"

// headerCarrier reads and writes the trace context in Kafka headers (a
// propagation.TextMapCarrier). Header names are matched case-insensitively,
// as W3C asks of HTTP; a header the propagator sets replaces any of that name.
type headerCarrier struct{ h *[]kafka.Header }

func (c headerCarrier) Get(key string) string {
	for _, h := range *c.h {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	for i, h := range *c.h {
		if strings.EqualFold(h.Key, key) {
			(*c.h)[i].Value = []byte(value)
			return
		}
	}
	*c.h = append(*c.h, kafka.Header{Key: key, Value: []byte(value)})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.h))
	for i, h := range *c.h {
		keys[i] = h.Key
	}
	return keys
}

// intakeSpans are the spans of one intake batch: one per message, a child of
// the trace context in its headers (or the root of a new trace), and the
// batch's own span, linked to each, under which the batch's statements run.
type intakeSpans struct {
	batch    trace.Span
	messages []trace.Span
}

// startIntakeSpans starts a span per message of the batch and stores each
// valid event's context in it (w.events[i].Trace), then the batch span.
func (in *Intake) startIntakeSpans(ctx context.Context, w *batchWork) (context.Context, *intakeSpans) {
	s := &intakeSpans{messages: make([]trace.Span, len(w.messages))}
	links := make([]trace.Link, len(w.messages))
	ev := 0
	for i := range w.messages {
		m := &w.messages[i]
		parent := tracing.Propagator().Extract(context.WithoutCancel(ctx), headerCarrier{&m.Headers})
		mctx, span := in.tracer.Start(parent, "process "+m.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("messaging.consumer.group.name", in.cfg.GroupID),
				attribute.Int("messaging.destination.partition.id", m.Partition),
				attribute.Int64("messaging.kafka.offset", m.Offset),
			))
		s.messages[i] = span
		links[i] = trace.Link{SpanContext: span.SpanContext()}
		// w.events are the valid messages in batch order: match by source.
		if ev < len(w.events) && w.sources[ev].Partition == m.Partition && w.sources[ev].Offset == m.Offset {
			w.events[ev].Trace = tracing.Stored(mctx)
			span.SetAttributes(attribute.String("reversald.event_id", w.events[ev].EventID),
				attribute.String("reversald.out_trade_no", w.events[ev].OutTradeNo))
			ev++
		}
	}
	for _, l := range w.letters {
		if i := indexOf(w.messages, l.Message); i >= 0 {
			s.messages[i].SetStatus(codes.Error, "invalid event, dead-lettered: "+l.Reason)
		}
	}
	bctx, batch := in.tracer.Start(ctx, "intake batch "+in.cfg.Topic, trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(w.messages))))
	s.batch = batch
	return bctx, s
}

// recorded notes what the store did with each valid event.
func (s *intakeSpans) recorded(w *batchWork, res store.IntakeResult) {
	ev := 0
	for i, m := range w.messages {
		if ev >= len(w.sources) || len(res.Statuses) <= ev {
			break
		}
		if w.sources[ev].Partition != m.Partition || w.sources[ev].Offset != m.Offset {
			continue
		}
		s.messages[i].SetAttributes(attribute.String("reversald.intake.result", res.Statuses[ev].String()))
		if res.Statuses[ev] == store.EventRejected {
			s.messages[i].SetStatus(codes.Error, "rejected, dead-lettered: "+res.Reasons[ev])
		}
		ev++
	}
}

// end ends every span: done says whether the batch became durable and its
// offsets committed (or durable and left for redelivery).
func (s *intakeSpans) end(durable bool) {
	if !durable {
		s.batch.SetStatus(codes.Error, "stopped before the batch was durable: it will be redelivered")
	}
	s.batch.End()
	for _, sp := range s.messages {
		sp.End()
	}
}

func indexOf(msgs []kafka.Message, m kafka.Message) int {
	for i := range msgs {
		if msgs[i].Partition == m.Partition && msgs[i].Offset == m.Offset {
			return i
		}
	}
	return -1
}

// publishSpans starts a span per outcome, a child of its event's stored
// context (the outcome joins the event's trace), linked to the attempt's trace
// when that is another one (an event that joined an attempt a first event
// created), and writes the span's context into the message's headers.
func (p *Publisher) publishSpans(ctx context.Context, recs []store.OutboxRecord, msgs []kafka.Message) []trace.Span {
	spans := make([]trace.Span, len(recs))
	for i, r := range recs {
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", p.cfg.Topic),
			attribute.String("reversald.event_id", r.EventID),
			attribute.String("reversald.out_trade_no", r.OutTradeNo),
			attribute.String("reversald.status", string(r.Status)),
		)}
		parent := tracing.Resume(ctx, r.Trace)
		own := trace.SpanContextFromContext(parent)
		if at := trace.SpanContextFromContext(tracing.Resume(ctx, r.AttemptTrace)); at.IsValid() && at.TraceID() != own.TraceID() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: at,
				Attributes: []attribute.KeyValue{attribute.String("reversald.link", "attempt")}}))
		}
		sctx, span := p.tracer.Start(parent, "send "+p.cfg.Topic, opts...)
		tracing.Propagator().Inject(sctx, headerCarrier{&msgs[i].Headers})
		spans[i] = span
	}
	return spans
}

// endSpans ends the publish spans with the write's result.
func endSpans(spans []trace.Span, err error) {
	for _, s := range spans {
		if err != nil {
			s.SetStatus(codes.Error, fmt.Sprintf("not acknowledged; the outcome stays in the outbox: %v", err))
		}
		s.End()
	}
}
