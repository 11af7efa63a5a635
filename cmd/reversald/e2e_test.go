package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/reversal"
)

// TestDaemonMixedEvents: every outcome kind, duplicates and invalid events in;
// exactly one outcome per valid event with the right status, one dead letter
// per invalid one, and duplicates cost no gateway calls.
func TestDaemonMixedEvents(t *testing.T) {
	t.Parallel()
	s := newStack(t, 4)
	s.seed("R1", sandbox.StateInFlight, "800101")
	s.seed("C1", sandbox.StateInFlight, "800201")
	s.seed("P1", sandbox.StatePaid, "800101")
	s.seed("F1", sandbox.StateRefunded, "800101")
	s.seed("N1", sandbox.StateFailed, "800101")
	s.seed("H1", sandbox.StateInFlight, "801501")
	s.seed("D1", sandbox.StateInFlight, "800101")
	want := map[string]string{
		"e-R1": "reversed", "e-C1": "closed", "e-P1": "paid", "e-F1": "refunded", "e-N1": "not_paid",
		"e-U1": "not_found", "e-H1": "unsupported", "e-D1a": "reversed", "e-D1b": "reversed", "e-X1": "needs_review",
	}
	// Keyed like P1's event so that it is read after it.
	reused := ev{id: "e-P1", otn: "Z9"}.message()
	reused.Key = []byte("P1")
	msgs := []kafka.Message{
		ev{id: "e-R1", otn: "R1"}.message(),
		ev{id: "e-C1", otn: "C1", payType: "800201"}.message(),
		ev{id: "e-P1", otn: "P1"}.message(),
		ev{id: "e-F1", otn: "F1"}.message(),
		ev{id: "e-N1", otn: "N1"}.message(),
		ev{id: "e-U1", otn: "U1"}.message(),
		ev{id: "e-H1", otn: "H1", payType: "801501"}.message(),
		ev{id: "e-D1a", otn: "D1"}.message(),
		ev{id: "e-D1b", otn: "D1"}.message(),           // a second POS event for the same payment
		ev{id: "e-D1a", otn: "D1"}.message(),           // the first one redelivered
		ev{id: "e-X1", otn: "R1", amt: 9900}.message(), // same key, another amount
		reused, // an event_id reused for another payment
	}
	invalid := []kafka.Message{
		{Key: []byte("bad-1"), Value: []byte("not json at all")},
		{Key: []byte("bad-2"), Value: []byte(`{"txamt":2500,"txdtm":"2026-11-22 10:00:00"}`)},
		{Key: []byte("bad-3"), Value: []byte(`{"out_trade_no":"B3","txamt":2500,"txdtm":"22/11/2026"}`), Headers: []kafka.Header{{Key: "trace", Value: []byte("t-3")}}},
	}
	out := s.collect(s.results)
	dlq := s.collect(s.dlq)
	s.runInProcess(nil)
	s.produce(s.in, append(msgs, invalid...)...)

	wantLetters := len(invalid) + 1 // and the reused event_id
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		got, _ := out.outcomes(t)
		return len(got) >= len(want) && len(dlq.Messages()) >= wantLetters
	}, "10 outcomes and 4 dead letters")
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		return s.quiet(out, dlq)
	}, "the pipeline to go quiet")
	got, n := out.outcomes(t)
	if n != len(want) {
		t.Errorf("%d outcome messages, want exactly %d (one per valid event)", n, len(want))
	}
	for id, status := range want {
		o, ok := got[id]
		if !ok {
			t.Errorf("no outcome for %s", id)
			continue
		}
		if string(o.Status) != status {
			t.Errorf("%s: status %s (%s), want %s", id, o.Status, o.Reason, status)
		}
		if o.SchemaVersion != reversald.SchemaVersion || o.Reason == "" || o.DecidedAt.IsZero() {
			t.Errorf("%s: incomplete outcome %+v", id, o)
		}
	}
	if got["e-R1"].CancelSyssn == "" || got["e-R1"].Method != "reversal" || got["e-C1"].Method != "close" {
		t.Errorf("cancel details missing: R1 %+v C1 %+v", got["e-R1"], got["e-C1"])
	}
	// Duplicates: D1 cost what R1 cost, no more.
	if d, r := s.sb.Calls("D1", ""), s.sb.Calls("R1", ""); d != r || d == 0 {
		t.Errorf("D1 (three events) made %d gateway calls, R1 (one) made %d", d, r)
	}
	if s.sb.Calls("H1", "reversal")+s.sb.Calls("H1", "close") != 0 {
		t.Error("an unsupported pay type was cancelled")
	}
	letters := dlq.Messages()
	if len(letters) != wantLetters {
		t.Fatalf("%d dead letters, want %d", len(letters), wantLetters)
	}
	for _, l := range letters {
		h := kafkatest.Headers(l)
		if h["x-dlq-error"] == "" || h["x-dlq-topic"] != s.in || h["x-dlq-partition"] == "" || h["x-dlq-offset"] == "" {
			t.Errorf("dead letter %q lacks its provenance: %v", l.Key, h)
		}
		if strings.Contains(string(l.Value), `"Z9"`) && !strings.Contains(h["x-dlq-error"], "already recorded for another payment") {
			t.Errorf("reused event_id: dead letter reason %q", h["x-dlq-error"])
		}
		if string(l.Key) == "bad-3" && (h["trace"] != "t-3" || !strings.Contains(h["x-dlq-error"], "txdtm")) {
			t.Errorf("bad-3: headers %v; want the original header kept and the txdtm problem named", h)
		}
	}
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

// TestDaemonMalformedValues: a table of malformed values and the decoder's
// fuzz corpus never stop the daemon; every invalid one reaches the DLQ.
func TestDaemonMalformedValues(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	values := [][]byte{
		nil, []byte(""), []byte("null"), []byte("[]"), []byte(`"a string"`), []byte("{"), []byte("\xff\xfe\x00"),
		[]byte(`{"out_trade_no":123,"txamt":2500,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":"abc","txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":-5,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":25.5,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":123456789012,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500,"txdtm":"2026-02-30 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500}`),
		[]byte(`{"out_trade_no":"` + strings.Repeat("x", 200) + `","txamt":2500,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500,"txdtm":"2026-11-22 10:00:00","pay_type":"80010"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500,"txdtm":"2026-11-22 10:00:00","mchid":"` + strings.Repeat("m", 17) + `"}`),
		append([]byte(`{"out_trade_no":"HUGE","txamt":2500,"txdtm":"2026-11-22 10:00:00","pad":"`), append(bytes.Repeat([]byte("p"), 900<<10), []byte(`"}`)...)...),
	}
	corpus, err := filepath.Glob("../../reversal/testdata/fuzz/FuzzDecodeEvent/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range corpus {
		values = append(values, readCorpusValue(t, f))
	}
	var msgs []kafka.Message
	wantDLQ := 0
	for i, v := range values {
		if _, err := reversal.DecodeEvent(v, "t/0/0"); err != nil {
			wantDLQ++
		}
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("m-%d", i)), Value: v})
	}
	if wantDLQ < 17 {
		t.Fatalf("only %d of the table's values are invalid: the table is wrong", wantDLQ)
	}
	dlq := s.collect(s.dlq)
	s.runInProcess(nil)
	s.produce(s.in, msgs...)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return len(dlq.Messages()) >= wantDLQ }, fmt.Sprintf("%d dead letters", wantDLQ))
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		return s.quiet(dlq)
	}, "the pipeline to go quiet")
	if n := len(dlq.Messages()); n != wantDLQ {
		t.Errorf("%d dead letters, want %d", n, wantDLQ)
	}
	// Still alive and consuming: a valid event after all that is recorded.
	s.seed("AFTER", sandbox.StatePaid, "800101")
	out := s.collect(s.results)
	s.produce(s.in, ev{id: "e-AFTER", otn: "AFTER"}.message())
	kafkatest.WaitFor(t, 30*time.Second, func() bool {
		got, _ := out.outcomes(t)
		return got["e-AFTER"].Status == "paid"
	}, "the outcome of a valid event after the malformed ones")
}

// TestDaemonSurvivesStop stops the daemon process in the middle of a run,
// with SIGTERM and, separately, SIGKILL, then starts it again: nothing is
// lost and no out_trade_no is cancelled twice.
func TestDaemonSurvivesStop(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := newStack(t, 4)
			out := s.collect(s.results)
			want := s.loadEvents(400)
			first := s.start(map[string]string{"EXECUTOR_WORKERS": "8"})
			out.waitOutcomes(t, 40, 60*time.Second) // the first outcomes
			first.stop(t, sig)
			got, _ := out.outcomes(t)
			if len(got) >= len(want) {
				t.Fatalf("the run finished before the %v: the test proves nothing", sig)
			}
			t.Logf("stopped with %v after %d of %d outcomes", sig, len(got), len(want))
			second := s.start(map[string]string{"EXECUTOR_WORKERS": "8"})
			s.checkAll(out, want)
			second.stop(t, syscall.SIGTERM)
		})
	}
}

// TestTwoDaemonsShareTheWork runs two processes in one consumer group.
func TestTwoDaemonsShareTheWork(t *testing.T) {
	t.Parallel()
	s := newStack(t, 4)
	out := s.collect(s.results)
	a := s.start(map[string]string{"EXECUTOR_WORKERS": "8", "INSTANCE_ID": "a"})
	b := s.start(map[string]string{"EXECUTOR_WORKERS": "8", "INSTANCE_ID": "b"})
	s.waitGroupShared(2)
	want := s.loadEvents(400)
	s.checkAll(out, want)
	ina, inb := a.metric(t, "reversald_events_in_total"), b.metric(t, "reversald_events_in_total")
	fa, fb := a.metric(t, "reversald_attempts_final_total"), b.metric(t, "reversald_attempts_final_total")
	t.Logf("events in: a %v, b %v; attempts decided: a %v, b %v", ina, inb, fa, fb)
	if ina == 0 || inb == 0 || ina+inb < float64(len(want)) {
		t.Errorf("intake not shared: a %v, b %v of %d", ina, inb, len(want))
	}
	if fa == 0 || fb == 0 {
		t.Errorf("executor work not shared: a %v, b %v", fa, fb)
	}
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
}
