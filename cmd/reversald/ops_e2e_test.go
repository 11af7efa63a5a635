package main

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestOperatorActionsAgainstRunningDaemon: with the daemon running, an
// operator resolves one needs_review case (a new outcome marked resolved_by
// reaches the results topic) and retries another after QFPay's record was
// corrected (the daemon re-drives it to its true status, once); show prints
// the audit trail and every gateway call, never the client key.
func TestOperatorActionsAgainstRunningDaemon(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	put := func(otn string, recordAmt int64) {
		t.Helper()
		if err := s.sb.Put(sandbox.Txn{MchID: e2eMchID, OutTradeNo: otn, State: sandbox.StatePaid, PayType: "800101", TxAmt: 2500, RecordTxAmt: recordAmt}); err != nil {
			t.Fatal(err)
		}
	}
	// QFPay's record disagrees with the events' amount: needs_review.
	put("AMT1", 999)
	put("AMT2", 999)
	s.seed("R1", sandbox.StateInFlight, "800101")
	out := s.collect(s.results)
	s.runInProcess(nil)
	s.produce(s.in, ev{id: "e-AMT1", otn: "AMT1", amt: 2500}.message(), ev{id: "e-AMT2", otn: "AMT2", amt: 2500}.message(),
		ev{id: "e-R1", otn: "R1"}.message())
	got := out.waitOutcomes(t, 3, 90*time.Second)
	for id, want := range map[string]string{"e-AMT1": "needs_review", "e-AMT2": "needs_review", "e-R1": "reversed"} {
		if string(got[id].Status) != want || got[id].ResolvedBy != "" {
			t.Fatalf("%s: %s (resolved_by %q), want %s from the daemon", id, got[id].Status, got[id].ResolvedBy, want)
		}
	}

	env := envconfig.MapLookuper(map[string]string{"DATABASE_URL": s.dbURL})
	cli := func(args ...string) string {
		t.Helper()
		var o, e strings.Builder
		if err := run(context.Background(), args, env, &o, &e); err != nil {
			t.Fatalf("%v: %v\n%s%s", args, err, o.String(), e.String())
		}
		return o.String()
	}
	cli("attempts", "resolve", e2eMchID+"/AMT1", "-status", "paid", "-by", "carol", "-note", "QFPay support: the record's amount is a display error")
	// QFPay corrects AMT2's record; the operator retries it.
	put("AMT2", 0)
	cli("attempts", "retry", "-status", "needs_review", "-out-trade-no", "AMT2", "-by", "dave", "-note", "QFPay corrected the record")

	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		got, _ := out.outcomes(t)
		return got["e-AMT1"].ResolvedBy == "carol" && got["e-AMT2"].Status == "paid"
	}, "the resolved outcome of AMT1 and the re-driven outcome of AMT2")
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return s.quiet(out) }, "the pipeline to go quiet")
	got, n := out.outcomes(t)
	if n != 5 {
		t.Errorf("%d outcome messages, want 5 (3, the resolved one and the re-driven one)", n)
	}
	if o := got["e-AMT1"]; o.Status != "paid" || o.SchemaVersion != 2 || !strings.Contains(o.Reason, "resolved by carol") {
		t.Errorf("resolved outcome: %+v", o)
	}
	if o := got["e-AMT2"]; o.ResolvedBy != "" || o.Method != "none" {
		t.Errorf("re-driven outcome: %+v", o)
	}
	// The raw message carries resolved_by under that exact name.
	for _, m := range out.Messages() {
		var raw map[string]any
		if err := json.Unmarshal(m.Value, &raw); err != nil {
			t.Fatal(err)
		}
		_, has := raw["resolved_by"]
		if want := raw["event_id"] == "e-AMT1" && raw["status"] == "paid"; has != want {
			t.Errorf("resolved_by present=%v in %s", has, m.Value)
		}
	}

	var h historyView
	shown := cli("attempts", "show", e2eMchID+"/AMT2")
	if strings.Contains(shown, secretKey) {
		t.Fatal("attempts show prints the client key")
	}
	if err := json.Unmarshal([]byte(shown), &h); err != nil {
		t.Fatal(err)
	}
	if h.Attempt.Status != "paid" || len(h.Audit) != 1 || h.Audit[0].Operator != "dave" || !strings.Contains(h.Audit[0].PreviousReason, "999") ||
		len(h.Outcomes) != 2 || len(h.GatewayCalls) < 2 {
		t.Errorf("show AMT2: attempt %s, audit %+v, %d outcomes, %d calls", h.Attempt.Status, h.Audit, len(h.Outcomes), len(h.GatewayCalls))
	}
	for _, c := range h.GatewayCalls {
		if c.FencedOut || c.AppCode != e2eAppCode {
			t.Errorf("gateway call %+v: fenced out or another app code (two drivers?)", c)
		}
		for k := range c.Request {
			if strings.Contains(strings.ToLower(k), "key") || strings.Contains(strings.ToLower(k), "sign") {
				t.Errorf("audited request field %q", k)
			}
		}
	}
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

// TestDaemonPeriodicPurge: with PURGE_OLDER_THAN set, the daemon (as a
// process) deletes final attempts once their outcomes are published and they
// are old enough, and counts them.
func TestDaemonPeriodicPurge(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	s.seed("R1", sandbox.StateInFlight, "800101")
	s.seed("P1", sandbox.StatePaid, "800101")
	out := s.collect(s.results)
	p := s.start(map[string]string{"PURGE_OLDER_THAN": "1s", "PURGE_INTERVAL": "200ms", "PURGE_BATCH_SIZE": "1", "PURGE_PAUSE": "10ms"})
	t.Cleanup(func() { p.stop(t, syscall.SIGTERM) })
	s.produce(s.in, []kafka.Message{ev{id: "e-R1", otn: "R1"}.message(), ev{id: "e-P1", otn: "P1"}.message()}...)
	out.waitOutcomes(t, 2, 90*time.Second)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	kafkatest.WaitFor(t, 30*time.Second, func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM attempts) + (SELECT count(*) FROM events) + (SELECT count(*) FROM outbox) + (SELECT count(*) FROM gateway_calls)`).Scan(&n)
		return err == nil && n == 0
	}, "the daemon's purge to delete the decided attempts and their rows")
	// The count follows the purge's last (empty) batch.
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return p.metric(t, "reversald_purged_attempts_total") == 2 },
		"reversald_purged_attempts_total to reach 2")
	if n := p.metric(t, "reversald_purge_errors_total"); n != 0 {
		t.Errorf("reversald_purge_errors_total = %v, want 0", n)
	}
}
