package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// cli runs one reversald command as an operator would, with env.
func cli(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(context.Background(), args, envconfig.MapLookuper(env), &out, io.Discard)
	return out.String(), err
}

// mustCLI runs a command that must succeed.
func mustCLI(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	out, err := cli(t, env, args...)
	if err != nil {
		t.Fatalf("reversald %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestDLQListAndReplay: dead letters listed with their headers decoded and
// filtered; a replay writes the original back and the real daemon answers it
// with one outcome, however often it is replayed (with an event_id or
// without); --dry-run writes nothing; a letter refused again goes back to the
// dead-letter topic keeping its first origin; mistakes are usage errors.
func TestDLQListAndReplay(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	env := s.env(nil)
	out := s.collect(s.results)
	dlq := s.collect(s.dlq)
	s.runInProcess(nil)
	s.seed("FIX1", sandbox.StateInFlight, "800101")
	s.seed("FIX2", sandbox.StatePaid, "800101")

	// Two values the daemon refuses today.
	s.produce(s.in,
		kafka.Message{Key: []byte("BAD1"), Value: []byte(`{"out_trade_no":"BAD1","txamt":"abc","txdtm":"2026-11-22 10:00:00"}`),
			Headers: []kafka.Header{{Key: "source", Value: []byte("pos-9")}}},
		kafka.Message{Key: []byte("BAD2"), Value: []byte("not json")},
	)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return dlq.Len() >= 2 }, "2 dead letters from the daemon")

	// Two letters whose values are valid under today's rules: an earlier
	// version refused them (the rule was since relaxed). They are written by
	// the daemon's own dead-letter writer, with the origin they would have had;
	// FIX2 has no event_id, so its event_id is its origin.
	fixed1 := ev{id: "e-fix-1", otn: "FIX1"}.message()
	fixed2 := ev{otn: "FIX2"}.message()
	var v map[string]any
	_ = json.Unmarshal(fixed2.Value, &v)
	delete(v, "event_id")
	fixed2.Value, _ = json.Marshal(v)
	fixed1.Topic, fixed1.Partition, fixed1.Offset = s.in, 0, 500
	fixed2.Topic, fixed2.Partition, fixed2.Offset = s.in, 1, 77
	dw, err := consumer.NewDeadLetters(consumer.DeadLetterConfig{Brokers: s.brokers, Topic: s.dlq})
	if err != nil {
		t.Fatal(err)
	}
	if err := dw.Write(context.Background(),
		consumer.Letter{Message: fixed1, Reason: "invalid event: refused by a rule since relaxed"},
		consumer.Letter{Message: fixed2, Reason: "invalid event: refused by a rule since relaxed"}); err != nil {
		t.Fatal(err)
	}
	_ = dw.Close()
	fix2ID := s.in + "/1/77"

	// list, as a table and as JSON lines.
	table := mustCLI(t, env, "dlq", "list")
	for _, want := range []string{"BAD1", "BAD2", "FIX1", "FIX2", "e-fix-1", fix2ID, "txamt must be a positive integer", "value must be a JSON object", "REPLAYABLE"} {
		if !strings.Contains(table, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, table)
		}
	}
	letters := dlqJSON(t, mustCLI(t, env, "dlq", "list", "-output", "json"))
	if len(letters) != 4 {
		t.Fatalf("dlq list -output json: %d letters, want 4", len(letters))
	}
	byKey := map[string]deadLetterJSON{}
	for _, l := range letters {
		byKey[l.Key] = l
	}
	bad1, f2 := byKey["BAD1"], byKey["FIX2"]
	if bad1.Origin == nil || bad1.Origin.Topic != s.in || bad1.DeadLetteredAt == nil || time.Since(*bad1.DeadLetteredAt) > 5*time.Minute ||
		!strings.Contains(bad1.Reason, "txamt") || bad1.Headers["source"] != "pos-9" || len(bad1.Headers) != 1 || !bad1.Replayable ||
		bad1.Value == nil || !strings.Contains(*bad1.Value, `"txamt":"abc"`) || len(bad1.Problems) != 0 {
		t.Errorf("BAD1 decoded as %+v", bad1)
	}
	if f2.EventID != fix2ID || f2.Origin == nil || f2.Origin.Partition != 1 || f2.Origin.Offset != 77 {
		t.Errorf("FIX2 decoded as %+v", f2)
	}

	// Filters.
	if got := dlqJSON(t, mustCLI(t, env, "dlq", "list", "-output", "json", "-reason", "SINCE RELAXED")); len(got) != 2 {
		t.Errorf("-reason: %d letters, want 2", len(got))
	}
	if got := dlqJSON(t, mustCLI(t, env, "dlq", "list", "-output", "json", "-event-id", "e-fix-1,"+fix2ID)); len(got) != 2 {
		t.Errorf("-event-id: %d letters, want 2", len(got))
	}
	if got := dlqJSON(t, mustCLI(t, env, "dlq", "list", "-output", "json", "-key", "BAD2", "-since", "1h")); len(got) != 1 || got[0].Key != "BAD2" {
		t.Errorf("-key -since: %+v", got)
	}
	if got := mustCLI(t, env, "dlq", "list", "-limit", "1"); !strings.Contains(got, "more letters match") || strings.Count(got, "\n") != 3 {
		t.Errorf("-limit 1:\n%s", got)
	}
	if got := mustCLI(t, env, "dlq", "list", "-until", "2020-01-01"); !strings.Contains(got, "no dead letter in "+s.dlq+" matches") {
		t.Errorf("a filter that matches nothing:\n%s", got)
	}
	if got := mustCLI(t, env, "dlq", "replay", "-reason", "no such reason"); !strings.Contains(got, "no dead letter") {
		t.Errorf("replay matching nothing:\n%s", got)
	}

	// --dry-run writes nothing.
	before := kafkatest.HighWatermarks(t, s.brokers, s.in)
	dry := mustCLI(t, env, "dlq", "replay", "-reason", "since relaxed", "-dry-run")
	if !strings.Contains(dry, "would replay") || !strings.Contains(dry, "dry run: 2 of 2") {
		t.Errorf("dry run:\n%s", dry)
	}
	if after := kafkatest.HighWatermarks(t, s.brokers, s.in); !maps.Equal(before, after) {
		t.Errorf("the dry run wrote to %s: %v -> %v", s.in, before, after)
	}

	// Replay twice: one outcome per event.
	for i := range 2 {
		got := mustCLI(t, env, "dlq", "replay", "-reason", "since relaxed")
		if !strings.Contains(got, "2 of 2 matching letters replayed to "+s.in) {
			t.Fatalf("replay %d:\n%s", i+1, got)
		}
		out.waitOutcomes(t, 2, 60*time.Second)
	}
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return s.quiet(out, dlq) }, "the pipeline to go quiet")
	counts := map[string]int{}
	for _, m := range out.Messages() {
		var o struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(m.Value, &o)
		counts[o.EventID]++
	}
	if counts["e-fix-1"] != 1 || counts[fix2ID] != 1 || len(counts) != 2 {
		t.Errorf("outcomes per event_id after two replays: %v, want e-fix-1 and %s once each", counts, fix2ID)
	}
	got, _ := out.outcomes(t)
	if got["e-fix-1"].Status != "reversed" || got[fix2ID].Status != "paid" {
		t.Errorf("outcomes: %+v", got)
	}
	if n := countEvents(t, s.dbURL); n != 2 {
		t.Errorf("%d events recorded, want 2", n)
	}

	// A letter still invalid is refused again: back in the dead-letter topic,
	// keeping its first origin, nothing lost.
	if got := mustCLI(t, env, "dlq", "replay", "-key", "BAD1"); !strings.Contains(got, "1 of 1 matching letters replayed") {
		t.Fatalf("replay BAD1:\n%s", got)
	}
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return dlq.Len() >= 5 }, "BAD1 refused again")
	again := dlqJSON(t, mustCLI(t, env, "dlq", "list", "-output", "json", "-key", "BAD1"))
	if len(again) != 2 || again[1].Headers[consumer.HeaderReplayOf] != bad1.Origin.Topic+fmt.Sprintf("/%d/%d", bad1.Origin.Partition, bad1.Origin.Offset) ||
		again[1].EventID != again[0].EventID || again[1].Headers["source"] != "pos-9" {
		t.Errorf("BAD1 after a replay: %+v", again)
	}
}

func dlqJSON(t *testing.T, out string) []deadLetterJSON {
	t.Helper()
	var ls []deadLetterJSON
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var l deadLetterJSON
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("not a JSON line: %v: %q", err, line)
		}
		ls = append(ls, l)
	}
	return ls
}

func countEvents(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOpsUsageErrors: malformed filters and flags of dlq and outcomes are
// usage errors (exit 2) that say what is wrong, before any configuration,
// database or broker is needed; -h lists the flags.
func TestOpsUsageErrors(t *testing.T) {
	t.Parallel()
	none := map[string]string{}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "list or replay"},
		{[]string{"dlq", "purge"}, "unknown command"},
		{[]string{"dlq", "list", "-since", "last tuesday"}, "is not a time"},
		{[]string{"dlq", "list", "-output", "xml"}, "table or json"},
		{[]string{"dlq", "list", "-limit", "-1"}, "-limit"},
		{[]string{"dlq", "list", "extra"}, "unexpected argument"},
		{[]string{"dlq", "list", "-nope"}, "flag provided but not defined"},
		{[]string{"dlq", "replay"}, "or -all"},
		{[]string{"dlq", "replay", "-since", "2026-01-02", "-until", "2026-01-01"}, "not before"},
		{[]string{"outcomes"}, "republish"},
		{[]string{"outcomes", "resend"}, "unknown command"},
		{[]string{"outcomes", "republish"}, "or -all"},
		{[]string{"outcomes", "republish", "-status", "pending"}, `no outcome has status "pending"`},
		{[]string{"outcomes", "republish", "-status", "paid,bogus"}, `"bogus"`},
		{[]string{"outcomes", "republish", "-decided-from", "soon"}, "is not a time"},
		{[]string{"outcomes", "republish", "-decided-from", "2d", "-decided-to", "3d"}, "not before"},
		{[]string{"outcomes", "republish", "-all", "-batch", "0"}, "-batch"},
	} {
		out, err := cli(t, none, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (output %q), want a usage error saying %q", tc.args, err, out, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"dlq", "list", "-h"}, []string{"-reason", "-key", "-event-id", "-since", "-until", "-topic", "-limit", "-output"}},
		{[]string{"dlq", "replay", "-h"}, []string{"-reason", "-all", "-to", "-dry-run"}},
		{[]string{"outcomes", "republish", "-h"}, []string{"-status", "-mchid", "-out-trade-no", "-event-id", "-decided-from", "-decided-to", "-published-from", "-published-to", "-all", "-topic", "-dry-run"}},
	} {
		out, err := cli(t, none, tc.args...)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %s:\n%s", tc.args, w, out)
			}
		}
	}
	// Valid flags, no configuration: the error names what is missing (not a
	// usage error: exit 1).
	for _, args := range [][]string{{"dlq", "list"}, {"outcomes", "republish", "-all"}, {"outcomes", "republish", "-all", "-dry-run"}} {
		_, err := cli(t, none, args...)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			t.Errorf("%v without configuration: %v", args, err)
		}
	}
	if _, err := cli(t, none, "dlq", "list"); err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS is required") {
		t.Errorf("dlq list without KAFKA_BROKERS: %v", err)
	}
	if _, err := cli(t, map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "dlq", "list"); err == nil || !strings.Contains(err.Error(), "in clear") {
		t.Errorf("dlq list with SASL in clear: %v, want the daemon's refusal", err)
	}
	if _, err := cli(t, none, "outcomes", "republish", "-all", "-dry-run"); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("republish -dry-run without DATABASE_URL: %v", err)
	}
}
