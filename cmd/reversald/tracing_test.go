package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// runTraced starts the daemon's real wiring (daemon, as run calls it after
// loadConfig) with sp, unless nil, receiving every span, and returns a stop that cancels it (SIGTERM) and
// waits until it returned: every span has ended and been handed to sp then.
func (s *stack) runTraced(extra map[string]string, sp sdktrace.SpanProcessor) (stop func()) {
	s.t.Helper()
	cfg, err := loadConfig(context.Background(), envconfig.MapLookuper(s.env(extra)))
	if err != nil {
		s.t.Fatal(err)
	}
	var sps []sdktrace.SpanProcessor
	if sp != nil {
		sps = append(sps, sp)
	}
	return s.inProcess(func(ctx context.Context, logs io.Writer) error { return daemon(ctx, cfg, logs, sps...) })
}

// newTraceparent returns a sampled W3C traceparent with random ids, as a
// producer upstream would send it, and its span context.
func newTraceparent(t *testing.T) (string, trace.SpanContext) {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	tp := fmt.Sprintf("00-%s-%s-01", hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:]))
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], b[:16])
	copy(sid[:], b[16:])
	return tp, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

// parseTraceparent reads a traceparent header value.
func parseTraceparent(t *testing.T, v string) trace.SpanContext {
	t.Helper()
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q is not W3C version 00", v)
	}
	tid, err1 := trace.TraceIDFromHex(parts[1])
	sid, err2 := trace.SpanIDFromHex(parts[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("traceparent %q: %v %v", v, err1, err2)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
}

// TestTracingOneTracePerEvent: with a span recorder on the daemon's real
// wiring, against the real PostgreSQL, Kafka and the sandbox, each event is
// one trace from the traceparent in its input headers to the traceparent in
// its outcome's headers: the intake span is a child of the input's span, the
// attempt's steps and one client span per QFPay call (as many as the
// sandbox's ledger shows) are in it, and the publish span is the one the
// outcome names. An event with no traceparent starts a trace of its own. A
// second event for the same payment keeps its own trace (intake and
// publish), linked to the first event's trace, where the gateway calls are.
// Neither the client key nor any request's signature is in any span.
func TestTracingOneTracePerEvent(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	s.seed("TR1", sandbox.StateInFlight, "800101") // query, reversal, confirming query
	s.seed("TP1", sandbox.StatePaid, "800101")     // one query
	s.seed("TD1", sandbox.StateInFlight, "800101") // two events, one attempt
	s.seed("TN1", sandbox.StatePaid, "800101")     // no traceparent in

	type input struct {
		id, otn string
		parent  trace.SpanContext // invalid: no traceparent header
	}
	var inputs []input
	var msgs []kafka.Message
	for _, e := range []struct {
		id, otn string
		traced  bool
	}{{"t-R1", "TR1", true}, {"t-P1", "TP1", true}, {"t-D1a", "TD1", true}, {"t-D1b", "TD1", true}, {"t-N1", "TN1", false}} {
		m := ev{id: e.id, otn: e.otn}.message()
		in := input{id: e.id, otn: e.otn}
		if e.traced {
			var tp string
			tp, in.parent = newTraceparent(t)
			m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: []byte(tp)},
				kafka.Header{Key: "tracestate", Value: []byte("pos=7")})
		}
		inputs = append(inputs, in)
		msgs = append(msgs, m)
	}

	rec := tracetest.NewSpanRecorder()
	out := s.collect(s.results)
	stop := s.runTraced(nil, rec)
	s.produce(s.in, msgs...)
	out.waitOutcomes(t, len(inputs), 60*time.Second)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return s.quiet(out) }, "the pipeline to go quiet")
	stop()

	// The outcome's trace context, by event_id.
	outTP := map[string]trace.SpanContext{}
	for _, m := range out.Messages() {
		var o reversald.Outcome
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatal(err)
		}
		v, ok := kafkatest.Header(m, "traceparent")
		if !ok {
			t.Fatalf("outcome of %s has no traceparent header: %v", o.EventID, kafkatest.Headers(m))
		}
		outTP[o.EventID] = parseTraceparent(t, v)
	}

	spans := rec.Ended()
	byTrace := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		byTrace[sp.SpanContext().TraceID()] = append(byTrace[sp.SpanContext().TraceID()], sp)
	}
	named := func(tr []sdktrace.ReadOnlySpan, match func(string) bool) []sdktrace.ReadOnlySpan {
		var got []sdktrace.ReadOnlySpan
		for _, sp := range tr {
			if match(sp.Name()) {
				got = append(got, sp)
			}
		}
		return got
	}
	is := func(name string) func(string) bool { return func(n string) bool { return n == name } }
	prefix := func(p string) func(string) bool { return func(n string) bool { return strings.HasPrefix(n, p) } }

	t.Logf("%d spans in %d traces", len(spans), len(byTrace))
	for _, in := range inputs {
		var names []string
		for _, sp := range byTrace[outTP[in.id].TraceID()] {
			names = append(names, sp.Name())
		}
		t.Logf("%s: %v", in.id, names)
	}
	seenTraces := map[trace.TraceID]string{}
	var firstD1 trace.TraceID
	for _, in := range inputs {
		o, ok := outTP[in.id]
		if !ok {
			t.Errorf("%s: no outcome", in.id)
			continue
		}
		tid := o.TraceID()
		if other, dup := seenTraces[tid]; dup {
			t.Errorf("%s and %s share trace %s: want one trace per event", in.id, other, tid)
		}
		seenTraces[tid] = in.id
		if in.parent.IsValid() && tid != in.parent.TraceID() {
			t.Errorf("%s: outcome in trace %s, want the input's %s", in.id, tid, in.parent.TraceID())
		}
		tr := byTrace[tid]
		ids := map[trace.SpanID]bool{}
		for _, sp := range tr {
			ids[sp.SpanContext().SpanID()] = true
		}
		// One connected trace: every span's parent is in it, or is the
		// input's span (the producer's, remote), or it is the new root.
		for _, sp := range tr {
			p := sp.Parent()
			switch {
			case ids[p.SpanID()]:
			case in.parent.IsValid() && p.SpanID() == in.parent.SpanID():
			case !in.parent.IsValid() && !p.IsValid() && sp.Name() == "process "+s.in:
			default:
				t.Errorf("%s: span %q has parent %s, outside the event's trace", in.id, sp.Name(), p.SpanID())
			}
		}
		process := named(tr, is("process "+s.in))
		if len(process) != 1 {
			t.Errorf("%s: %d intake spans, want 1", in.id, len(process))
		} else {
			if in.parent.IsValid() && (process[0].Parent().SpanID() != in.parent.SpanID() || !process[0].Parent().IsRemote()) {
				t.Errorf("%s: intake span's parent %v, want the input's span %s", in.id, process[0].Parent(), in.parent.SpanID())
			}
			if process[0].SpanKind() != trace.SpanKindConsumer {
				t.Errorf("%s: intake span kind %v", in.id, process[0].SpanKind())
			}
		}
		send := named(tr, is("send "+s.results))
		switch {
		case len(send) != 1:
			t.Errorf("%s: %d publish spans, want 1", in.id, len(send))
		case send[0].SpanContext().SpanID() != o.SpanID():
			t.Errorf("%s: the outcome's traceparent names span %s, want the publish span %s", in.id, o.SpanID(), send[0].SpanContext().SpanID())
		case send[0].SpanKind() != trace.SpanKindProducer:
			t.Errorf("%s: publish span kind %v", in.id, send[0].SpanKind())
		}
		calls := named(tr, prefix("qfpay "))
		if in.id == "t-D1b" {
			// Joined the attempt t-D1a created: no gateway call of its own,
			// and its publish span links to t-D1a's trace.
			if len(calls) != 0 || len(named(tr, prefix("step "))) != 0 {
				t.Errorf("t-D1b: %d QFPay spans and steps in its own trace, want none (they are t-D1a's)", len(calls))
			}
			if len(send) == 1 {
				links := send[0].Links()
				if len(links) != 1 || links[0].SpanContext.TraceID() != firstD1 {
					t.Errorf("t-D1b: publish span links %v, want one link to t-D1a's trace %s", links, firstD1)
				}
			}
			continue
		}
		if in.id == "t-D1a" {
			firstD1 = tid
		}
		ledger := s.sb.Ledger(in.otn)
		if len(ledger) == 0 || len(calls) != len(ledger) {
			t.Errorf("%s: %d QFPay client spans, the sandbox's ledger has %d calls: want one span per call", in.id, len(calls), len(ledger))
		}
		for i, c := range calls {
			if c.SpanKind() != trace.SpanKindClient {
				t.Errorf("%s: QFPay span %d kind %v", in.id, i, c.SpanKind())
			}
			if p := c.Parent().SpanID(); !slices.ContainsFunc(named(tr, prefix("step ")), func(st sdktrace.ReadOnlySpan) bool { return st.SpanContext().SpanID() == p }) {
				t.Errorf("%s: QFPay span %q is not a child of a step span", in.id, c.Name())
			}
		}
		if len(named(tr, is("drive attempt"))) == 0 || len(named(tr, is("step query"))) == 0 {
			t.Errorf("%s: no drive or query step span in the event's trace", in.id)
		}
		if in.otn == "TR1" && len(named(tr, is("step cancel"))) != 1 {
			t.Errorf("%s: want one cancel step span", in.id)
		}
		// Statements are traced (otelpgx) inside the event's trace.
		if !slices.ContainsFunc(tr, func(sp sdktrace.ReadOnlySpan) bool { return hasAttr(sp, "db.system.name", "postgresql") }) {
			t.Errorf("%s: no PostgreSQL statement span in the event's trace", in.id)
		}
	}

	// The key and every signature QFPay received stay out of every span.
	var secrets []string
	secrets = append(secrets, secretKey)
	for _, e := range s.sb.Entries() {
		sig, err := qfpay.Sign(e.Fields, qfpay.NewKey(secretKey), qfpay.SignMD5)
		if err != nil || len(sig) != 32 {
			t.Fatalf("signature of a ledger call: %q %v", sig, err)
		}
		secrets = append(secrets, sig)
	}
	if len(secrets) < 8 {
		t.Fatalf("only %d ledger calls: the test would prove little", len(secrets)-1)
	}
	for _, sp := range spans {
		text := spanText(sp)
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Errorf("span %q holds a secret (the key or a request signature): %s", sp.Name(), text)
			}
		}
	}
}

// hasAttr reports whether sp has attribute key with value v.
func hasAttr(sp sdktrace.ReadOnlySpan, key, v string) bool {
	return slices.ContainsFunc(sp.Attributes(), func(kv attribute.KeyValue) bool {
		return string(kv.Key) == key && kv.Value.String() == v
	})
}

// spanText is everything a span carries as text: name, status, attributes,
// events, links and resource.
func spanText(sp sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	kvs := func(attrs []attribute.KeyValue) {
		for _, kv := range attrs {
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
		}
	}
	fmt.Fprintf(&b, "%s status=%s", sp.Name(), sp.Status().Description)
	kvs(sp.Attributes())
	for _, e := range sp.Events() {
		b.WriteString(" event:" + e.Name)
		kvs(e.Attributes)
	}
	for _, l := range sp.Links() {
		kvs(l.Attributes)
	}
	kvs(sp.Resource().Attributes())
	return b.String()
}
