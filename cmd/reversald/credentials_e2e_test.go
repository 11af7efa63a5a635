package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

const (
	e2eKeyA1 = "e2e-key-a-first-never-logged"
	e2eKeyA2 = "e2e-key-a-rotated-never-logged"
	e2eKeyB  = "e2e-key-b-never-logged"
)

// credentialsFile is the test's file: a lists its merchants, b matches
// them by pattern; no default.
func credentialsFile(keyA string) string {
	return `credentials:
  - name: a
    app_code: APPA
    client_key: "` + keyA + `"
    mchids: ["MA1", "MA2"]
  - name: b
    app_code: APPB
    client_key_file: b.key
    sign_type: SHA256
    patterns: ["MB*"]
`
}

// message is an input event for mchid.
func message(mchid, otn string) kafka.Message {
	return ev{id: "e-" + otn, otn: otn, mchid: mchid}.message()
}

// TestDaemonSignsWithEachMerchantsCredential runs the daemon as a process
// with a credentials file of two credentials, two merchants each, against a
// sandbox that accepts both. Each merchant's calls are signed with its own
// app code (sandbox ledger and audit rows); an event for a merchant with no
// credential ends needs_review with no call; a bad file sent with SIGHUP is
// refused and the set in use keeps working; a key rotated by rewriting the
// file and SIGHUP mid-run is used from then on, by the attempt under way
// (its first call signed with the old key, the later ones with the new) and
// by every later one, once the sandbox accepts only the new key.
func TestDaemonSignsWithEachMerchantsCredential(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	if err := s.sb.SetCredentials([]sandbox.Credential{
		{AppCode: "APPA", Key: e2eKeyA1, Label: "a1"},
		{AppCode: "APPB", Key: e2eKeyB, Label: "b"},
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials.yaml")
	writeFile(t, filepath.Join(dir, "b.key"), e2eKeyB+"\n")
	writeFile(t, path, credentialsFile(e2eKeyA1))

	appCode := map[string]string{"MA1": "APPA", "MA2": "APPA", "MB1": "APPB", "MB22": "APPB"}
	want := map[string]string{} // event id -> status
	var msgs []kafka.Message
	for _, mchid := range []string{"MA1", "MA2", "MB1", "MB22"} {
		for i, st := range []sandbox.State{sandbox.StateInFlight, sandbox.StatePaid} {
			otn := fmt.Sprintf("%s-P%d", mchid, i)
			if err := s.sb.Put(sandbox.Txn{MchID: mchid, OutTradeNo: otn, State: st, PayType: "800101", TxAmt: 2500}); err != nil {
				t.Fatal(err)
			}
			want["e-"+otn] = map[sandbox.State]string{sandbox.StateInFlight: "reversed", sandbox.StatePaid: "paid"}[st]
			msgs = append(msgs, message(mchid, otn))
		}
	}
	msgs = append(msgs, message("MX1", "MX1-P0")) // no credential covers MX1
	want["e-MX1-P0"] = "needs_review"

	out := s.collect(s.results)
	p := s.start(map[string]string{
		"QFPAY_CREDENTIALS_FILE": path, "QFPAY_APP_CODE": "", "QFPAY_CLIENT_KEY": "",
		"QFPAY_CREDENTIALS_POLL": "1h", // reloads in this test come from SIGHUP
	})
	s.produce(s.in, msgs...)
	waitOutcomes := func(n int) map[string]string {
		t.Helper()
		got := out.waitOutcomes(t, n, 60*time.Second)
		statuses := map[string]string{}
		for id, o := range got {
			statuses[id] = string(o.Status)
			if id == "e-MX1-P0" && !strings.Contains(o.Reason, "no QFPay credential for merchant MX1") {
				t.Errorf("unknown merchant's reason: %q", o.Reason)
			}
		}
		return statuses
	}
	got := waitOutcomes(len(want))
	for id, st := range want {
		if got[id] != st {
			t.Errorf("%s: %s, want %s", id, got[id], st)
		}
	}
	if n := s.sb.Calls("MX1-P0", ""); n != 0 {
		t.Errorf("unknown merchant: %d gateway calls, want none", n)
	}

	// A bad file: refused, and the set in use keeps signing.
	writeFile(t, path, credentialsFile(e2eKeyA1)+"  - {name: c, app_code: APPC, mchids: [MA1]}\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return p.metric(t, "reversald_credentials_reload_errors_total") == 1 }, "the refused reload")

	// Rotation, mid-run: an attempt whose calls each take 1.5s is under
	// way (its first query sent with the old key, not answered yet) when the file
	// with a's new key is written and SIGHUP sent. While the switch is on,
	// the sandbox accepts both keys and the ledger says which verified.
	if err := s.sb.SetCredentials([]sandbox.Credential{
		{AppCode: "APPA", Key: e2eKeyA1, Label: "a1"}, {AppCode: "APPA", Key: e2eKeyA2, Label: "a2"},
		{AppCode: "APPB", Key: e2eKeyB, Label: "b"},
	}); err != nil {
		t.Fatal(err)
	}
	const slow = "MA1-SLOW"
	if err := s.sb.Put(sandbox.Txn{MchID: "MA1", OutTradeNo: slow, State: sandbox.StateInFlight, PayType: "800101", TxAmt: 2500}); err != nil {
		t.Fatal(err)
	}
	if err := s.sb.Script(slow, sandbox.Behavior{Latency: sandbox.Latency{Fixed: sandbox.Duration(1500 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	s.produce(s.in, message("MA1", slow))
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return s.sb.InFlight(slow) == 1 }, "the slow attempt's first query at the sandbox")
	writeFile(t, path, credentialsFile(e2eKeyA2))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return p.metric(t, "reversald_credentials_reloads_total") == 1 }, "the rotation's reload")
	got = waitOutcomes(len(want) + 1)
	if got["e-"+slow] != "reversed" {
		t.Errorf("the attempt under way during the rotation: %s, want reversed", got["e-"+slow])
	}
	var labels []string
	for _, e := range s.sb.Ledger(slow) {
		labels = append(labels, e.KeyLabel)
	}
	if j := strings.Join(labels, " "); !strings.HasPrefix(j, "a1") || !strings.HasSuffix(j, "a2") || strings.Contains(j, "a2 a1") || strings.Contains(j, "a1 a1") {
		t.Errorf("the slow attempt's calls were verified by %q; want its first query with the old key, every later call with the new", j)
	}

	// From now on QFPay knows the new key only: later attempts of a's
	// merchants go through with it, b's are unchanged.
	if err := s.sb.SetCredentials([]sandbox.Credential{{AppCode: "APPA", Key: e2eKeyA2, Label: "a2"}, {AppCode: "APPB", Key: e2eKeyB, Label: "b"}}); err != nil {
		t.Fatal(err)
	}
	var later []kafka.Message
	for _, mchid := range []string{"MA1", "MA2", "MB1"} {
		otn := mchid + "-LATER"
		if err := s.sb.Put(sandbox.Txn{MchID: mchid, OutTradeNo: otn, State: sandbox.StateInFlight, PayType: "800101", TxAmt: 2500}); err != nil {
			t.Fatal(err)
		}
		want["e-"+otn] = "reversed"
		later = append(later, message(mchid, otn))
	}
	want["e-"+slow] = "reversed"
	s.produce(s.in, later...)
	got = waitOutcomes(len(want))
	for id, st := range want {
		if got[id] != st {
			t.Errorf("%s: %s, want %s", id, got[id], st)
		}
	}
	for _, mchid := range []string{"MA1", "MA2"} {
		for _, e := range s.sb.Ledger(mchid + "-LATER") {
			if e.AppCode != "APPA" || e.KeyLabel != "a2" {
				t.Errorf("%s-LATER: call %d signed %s with key %q, want APPA with a2", mchid, e.Seq, e.AppCode, e.KeyLabel)
			}
		}
	}

	// Every call of every merchant was signed by its own credential, in the
	// sandbox's ledger and in the audit rows.
	calls := 0
	for _, e := range s.sb.Entries() {
		if e.Fault != "" {
			t.Errorf("call %d (%s %s): fault %s", e.Seq, e.MchID, e.OutTradeNo, e.Fault)
		}
		if appCode[e.MchID] != e.AppCode {
			t.Errorf("call %d for %s signed by %s, want %s", e.Seq, e.MchID, e.AppCode, appCode[e.MchID])
		}
		calls++
	}
	audit := auditAppCodes(t, s.dbURL)
	if len(audit) != calls {
		t.Errorf("%d audit rows for %d calls in the ledger", len(audit), calls)
	}
	for _, r := range audit {
		if appCode[r.mchid] != r.appCode {
			t.Errorf("audit row for %s names app code %q, want %s", r.mchid, r.appCode, appCode[r.mchid])
		}
	}
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
	p.stop(t, syscall.SIGTERM)
	for _, k := range []string{e2eKeyA1, e2eKeyA2, e2eKeyB} {
		if strings.Contains(p.logs.String(), k) {
			t.Errorf("a client key is in the daemon's logs")
		}
	}
	if logs := p.logs.String(); !strings.Contains(logs, "credentials reload refused") || !strings.Contains(logs, "credential c: client_key or client_key_file is required") {
		t.Errorf("the refused reload is not logged with its problems:\n%s", tail(logs, 20))
	}
}

type auditRow struct{ mchid, appCode string }

func auditAppCodes(t *testing.T, dbURL string) []auditRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT a.mchid, c.app_code FROM gateway_calls c JOIN attempts a ON a.id = c.attempt_id ORDER BY c.id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auditRow, error) {
		var r auditRow
		err := row.Scan(&r.mchid, &r.appCode)
		return r, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
