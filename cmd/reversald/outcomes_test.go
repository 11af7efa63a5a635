package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestOutcomesRepublish: outcomes the real daemon published are sent again
// from the outbox, unchanged but for a header, to another topic or the
// results topic, picked by filters; --dry-run writes nothing; filters that
// match nothing write nothing and succeed.
func TestOutcomesRepublish(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	env := s.env(nil)
	out := s.collect(s.results)
	s.runInProcess(nil)
	s.seed("RP-R1", sandbox.StateInFlight, "800101")
	s.seed("RP-R2", sandbox.StateInFlight, "800101")
	s.seed("RP-P1", sandbox.StatePaid, "800101")
	s.produce(s.in, ev{id: "e-RP-R1", otn: "RP-R1"}.message(), ev{id: "e-RP-R2", otn: "RP-R2"}.message(), ev{id: "e-RP-P1", otn: "RP-P1"}.message())
	out.waitOutcomes(t, 3, 60*time.Second)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return s.quiet(out) }, "the pipeline to go quiet")
	original := map[string]kafka.Message{}
	for _, m := range out.Messages() {
		id, _ := kafkatest.Header(m, consumer.HeaderEventID)
		original[id] = m
	}

	other := kafkatest.NewTopic(t, s.brokers, "recon", 1)
	copyCol := kafkatest.Collect(t, s.brokers, other)

	// Dry run: the matching outcomes are listed, nothing is written.
	dry := mustCLI(t, env, "outcomes", "republish", "-status", "paid", "-topic", other, "-dry-run")
	if !strings.Contains(dry, "e-RP-P1") || strings.Contains(dry, "e-RP-R1") || !strings.Contains(dry, "dry run: 1 published outcomes match") {
		t.Errorf("dry run:\n%s", dry)
	}
	if hw := kafkatest.HighWatermarks(t, s.brokers, other); hw[0] != 0 {
		t.Errorf("the dry run wrote %d messages", hw[0])
	}
	// A dry run needs only the database.
	if got := mustCLI(t, map[string]string{"DATABASE_URL": s.dbURL}, "outcomes", "republish", "-decided-from", "1h", "-dry-run"); !strings.Contains(got, "dry run: 3 published outcomes match") {
		t.Errorf("dry run with DATABASE_URL only:\n%s", got)
	}

	// To another topic: the same key and value, the event_id header, and the
	// republish marked.
	if got := mustCLI(t, env, "outcomes", "republish", "-status", "paid,reversed", "-out-trade-no", "RP-R2", "-topic", other); !strings.Contains(got, "republished 1 outcomes to "+other) {
		t.Errorf("republish RP-R2:\n%s", got)
	}
	if got := mustCLI(t, env, "outcomes", "republish", "-event-id", "e-RP-P1", "-topic", other); !strings.Contains(got, "republished 1 outcomes to "+other) {
		t.Errorf("republish e-RP-P1:\n%s", got)
	}
	copies, err := copyCol.Wait(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, copies)
	for _, m := range copies {
		id, _ := kafkatest.Header(m, consumer.HeaderEventID)
		orig, ok := original[id]
		if !ok || !bytes.Equal(m.Key, orig.Key) || !bytes.Equal(m.Value, orig.Value) {
			t.Errorf("republished %s: key %q value %s; first published key %q value %s", id, m.Key, m.Value, orig.Key, orig.Value)
		}
		at, ok := kafkatest.Header(m, consumer.HeaderRepublishedAt)
		if when, err := time.Parse(time.RFC3339Nano, at); !ok || err != nil || time.Since(when) > 5*time.Minute {
			t.Errorf("republished %s: %s = %q", id, consumer.HeaderRepublishedAt, at)
		}
	}
	if ids := []string{headerOf(copies[0]), headerOf(copies[1])}; ids[0] != "e-RP-R2" || ids[1] != "e-RP-P1" {
		t.Errorf("republished in the order asked: %v", ids)
	}

	// To the results topic (the default): a duplicate a reader drops by
	// event_id and decided_at.
	before := out.Len()
	if got := mustCLI(t, env, "outcomes", "republish", "-mchid", e2eMchID, "-status", "reversed"); !strings.Contains(got, "republished 2 outcomes to "+s.results) {
		t.Errorf("republish to the results topic:\n%s", got)
	}
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return out.Len() == before+2 }, "2 republished outcomes on the results topic")
	latest := map[string]string{}
	for _, m := range out.Messages() {
		var o struct {
			EventID   string `json:"event_id"`
			DecidedAt string `json:"decided_at"`
			Status    string `json:"status"`
		}
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatal(err)
		}
		if prev, ok := latest[o.EventID]; ok && prev != o.DecidedAt+o.Status {
			t.Errorf("%s: a republished outcome differs from the first: %s vs %s", o.EventID, prev, o.DecidedAt+o.Status)
		}
		latest[o.EventID] = o.DecidedAt + o.Status
	}
	if len(latest) != 3 {
		t.Errorf("%d distinct event_ids on the results topic, want 3", len(latest))
	}

	// Filters that match nothing: success, nothing written.
	hw := kafkatest.HighWatermarks(t, s.brokers, s.results)
	for _, args := range [][]string{
		{"-mchid", "NOSUCHMERCHANT"},
		{"-status", "needs_review"},
		{"-decided-from", "2020-01-01", "-decided-to", "2020-01-02"},
		{"-published-from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
	} {
		got, err := cli(t, env, append([]string{"outcomes", "republish"}, args...)...)
		if err != nil || !strings.Contains(got, "no published outcome matches") {
			t.Errorf("%v: %q, %v", args, got, err)
		}
	}
	if after := kafkatest.HighWatermarks(t, s.brokers, s.results); !maps.Equal(hw, after) {
		t.Errorf("filters matching nothing wrote to %s: %v -> %v", s.results, hw, after)
	}
	// A topic that does not exist is an error, and is not created.
	if _, err := cli(t, env, "outcomes", "republish", "-all", "-topic", kafkatest.RandomName("nosuch")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("republish to a missing topic: %v", err)
	}
}

func headerOf(m kafka.Message) string {
	id, _ := kafkatest.Header(m, consumer.HeaderEventID)
	return id
}
