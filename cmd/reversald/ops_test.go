package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// opsDB is a migrated database populated with attempts in several states,
// and a way to run reversald's commands on it as an operator would.
type opsDB struct {
	t   *testing.T
	url string
	st  *store.Store
	ids map[string]int64 // by out_trade_no
}

func newOpsDB(t *testing.T) *opsDB {
	t.Helper()
	ctx := context.Background()
	url := storetest.URL(t)
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	db := &opsDB{t: t, url: url, st: st, ids: map[string]int64{}}
	// M1: 3 needs_review (NR-1..3), 2 reversed; M2: 2 paid, 1 pending, and a
	// needs_review whose reason differs.
	type spec struct {
		mchid, otn string
		status     reversald.Status
		method     reversald.Method
		reason     string
	}
	specs := []spec{
		{"M1", "NR-1", reversald.StatusNeedsReview, reversald.MethodNone, "query refused: respcd 1108 (signature)"},
		{"M1", "NR-2", reversald.StatusNeedsReview, reversald.MethodNone, "query refused: respcd 1108 (signature)"},
		{"M1", "NR-3", reversald.StatusNeedsReview, reversald.MethodReversal, "the cancel bound (2) is reached"},
		{"M1", "RV-1", reversald.StatusReversed, reversald.MethodReversal, "QFPay confirms the reversal"},
		{"M1", "RV-2", reversald.StatusReversed, reversald.MethodReversal, "QFPay confirms the reversal"},
		{"M2", "PD-1", reversald.StatusPaid, reversald.MethodNone, "the payment completed: refund it"},
		{"M2", "PD-2", reversald.StatusPaid, reversald.MethodNone, "the payment completed: refund it"},
		{"M2", "PN-1", reversald.StatusPending, "", ""},
		{"M2", "NR-4", reversald.StatusNeedsReview, reversald.MethodNone, "amount mismatch: QFPay says 2600"},
	}
	for i, s := range specs {
		res, err := st.Intake(ctx, []reversald.Event{{EventID: "ev-" + s.otn, MchID: s.mchid, OutTradeNo: s.otn, TxAmt: int64(100 + i),
			TxCurrCd: "HKD", TxDtm: "2026-11-22 10:00:00", Source: reversald.Source{Topic: "in", Offset: int64(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		id := res.NewAttempts[0]
		db.ids[s.otn] = id
		if s.status == reversald.StatusPending {
			continue
		}
		got, err := st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1, IDs: []int64{id}})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %v %v", got, err)
		}
		a := got[0]
		a.Status, a.Step, a.Method, a.Reason, a.Respcd, a.GatewayCalls = s.status, reversald.StepDone, s.method, s.reason, "1108", 1
		call := reversald.Call{Step: reversald.StepQuery, Endpoint: "query", AppCode: "APPOPS", Request: map[string]string{"out_trade_no": s.otn, "mchid": s.mchid},
			HTTPStatus: 200, Respcd: "1108", Response: []byte(`{"respcd":"1108"}`), Latency: 1500 * time.Microsecond, At: time.Now()}
		if err := st.WriteStep(ctx, store.Step{Attempt: a, Calls: []reversald.Call{call}}); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// run runs reversald with args and returns its stdout, stderr and error.
func (db *opsDB) run(args ...string) (string, string, error) {
	var out, errw strings.Builder
	err := run(context.Background(), args, envconfig.MapLookuper(map[string]string{"DATABASE_URL": db.url}), &out, &errw)
	return out.String(), errw.String(), err
}

// ok runs args and fails the test on an error.
func (db *opsDB) ok(args ...string) string {
	db.t.Helper()
	out, _, err := db.run(args...)
	if err != nil {
		db.t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return out
}

// usage runs args and wants a usage error (exit 2) saying want.
func (db *opsDB) usage(want string, args ...string) {
	db.t.Helper()
	_, _, err := db.run(args...)
	var u usageError
	if !errors.As(err, &u) {
		db.t.Errorf("%v: %v, want a usage error (exit 2)", args, err)
		return
	}
	if !strings.Contains(err.Error(), want) {
		db.t.Errorf("%v: %q, want it to say %q", args, err, want)
	}
}

// snapshot is everything an operator command could change.
func (db *opsDB) snapshot() string {
	db.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.url)
	if err != nil {
		db.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	err = conn.QueryRow(ctx, `SELECT concat_ws('|',
		(SELECT string_agg(concat_ws(',', id, status, step, reason, token, lease_owner, decided_at, updated_at), ';' ORDER BY id) FROM attempts),
		(SELECT count(*) FROM events), (SELECT count(*) FROM outbox), (SELECT count(*) FROM gateway_calls),
		(SELECT count(*) FROM operator_actions))`).Scan(&s)
	if err != nil {
		db.t.Fatal(err)
	}
	return s
}

func (db *opsDB) id(otn string) string { return fmt.Sprint(db.ids[otn]) }

// TestAttemptsListEndToEnd: list's filters, sort, paging and formats on a
// populated database; a filter that matches nothing is an empty result
// (exit 0); a malformed one is a usage error (exit 2) saying what is wrong.
func TestAttemptsListEndToEnd(t *testing.T) {
	t.Parallel()
	db := newOpsDB(t)

	out := db.ok("attempts", "list", "-status", "needs_review", "-mchid", "M1")
	for _, otn := range []string{"NR-1", "NR-2", "NR-3"} {
		if !strings.Contains(out, otn) {
			t.Errorf("list -status needs_review -mchid M1 lacks %s:\n%s", otn, out)
		}
	}
	if strings.Contains(out, "NR-4") || strings.Contains(out, "RV-1") {
		t.Errorf("list -status needs_review -mchid M1 shows another merchant's or status's attempt:\n%s", out)
	}

	// json: one object per line, snake_case.
	out = db.ok("attempts", "list", "-status", "paid,reversed", "-format", "json", "-sort", "id", "-order", "asc")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got []string
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		for _, k := range []string{"id", "out_trade_no", "mchid", "status", "method", "first_seen_at", "decided_at", "gateway_calls", "qfpay_txamt"} {
			if _, ok := v[k]; !ok {
				t.Errorf("json line lacks %q: %s", k, l)
			}
		}
		got = append(got, v["out_trade_no"].(string))
	}
	if strings.Join(got, ",") != "RV-1,RV-2,PD-1,PD-2" {
		t.Errorf("list -status paid,reversed -sort id -order asc = %v", got)
	}

	// csv, reason filter (case-insensitive), method filter.
	out = db.ok("attempts", "list", "-reason", "SIGNATURE", "-method", "none", "-format", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v\n%s", err, out)
	}
	if len(recs) != 3 || recs[0][0] != "id" || recs[0][2] != "out_trade_no" {
		t.Fatalf("csv: %v, want a header and NR-1, NR-2", recs)
	}

	// Time ranges: everything was first seen within the last hour, nothing
	// was decided before 2000.
	now := time.Now().UTC()
	out = db.ok("attempts", "list", "-first-seen-from", now.Add(-time.Hour).Format(time.RFC3339), "-first-seen-to", now.Add(time.Hour).Format(time.RFC3339), "-format", "csv", "-limit", "100")
	if n := strings.Count(out, "\n"); n != 10 {
		t.Errorf("first-seen range: %d csv lines, want header + 9", n)
	}
	// A duration back from now, as the dlq and outcomes commands take it.
	out = db.ok("attempts", "list", "-first-seen-from", "1h", "-format", "csv", "-limit", "100")
	if n := strings.Count(out, "\n"); n != 10 {
		t.Errorf("first seen in the last hour (-first-seen-from 1h): %d csv lines, want header + 9", n)
	}
	out = db.ok("attempts", "list", "-decided-to", "2000-01-01", "-format", "csv")
	if strings.TrimSpace(out) != strings.Join(csvColumns, ",") {
		t.Errorf("nothing decided before 2000: csv %q, want the header alone", out)
	}

	// Nothing matches: exit 0, an empty result in every format.
	if out := db.ok("attempts", "list", "-mchid", "NOBODY"); !strings.Contains(out, "no attempts match") {
		t.Errorf("table of nothing: %q", out)
	}
	if out := db.ok("attempts", "list", "-mchid", "NOBODY", "-format", "json"); out != "" {
		t.Errorf("json of nothing: %q, want no line", out)
	}

	// Keyset paging: -limit 4 prints the cursor on stderr; following it
	// visits every attempt once.
	seen := map[string]int{}
	args := []string{"attempts", "list", "-limit", "4", "-format", "json", "-sort", "first_seen_at"}
	for pages := 0; ; pages++ {
		out, errOut, err := db.run(args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var v struct {
				OutTradeNo string `json:"out_trade_no"`
			}
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatal(err)
			}
			seen[v.OutTradeNo]++
		}
		if errOut == "" {
			break
		}
		_, cursor, ok := strings.Cut(strings.TrimSpace(errOut), "-after ")
		cursor, _, _ = strings.Cut(cursor, " ")
		if !ok || pages > 5 {
			t.Fatalf("stderr %q has no cursor", errOut)
		}
		args = []string{"attempts", "list", "-limit", "4", "-format", "json", "-sort", "first_seen_at", "-after", cursor}
	}
	if len(seen) != 9 {
		t.Errorf("paging saw %d attempts, want 9: %v", len(seen), seen)
	}
	for otn, n := range seen {
		if n != 1 {
			t.Errorf("paging showed %s %d times", otn, n)
		}
	}
	// -all: every page at once.
	if out := db.ok("attempts", "list", "-limit", "2", "-all", "-format", "csv"); strings.Count(out, "\n") != 10 {
		t.Errorf("-all: %q", out)
	}

	// Malformed: exit 2, saying what is wrong, before any database.
	db.usage(`unknown status "lost"`, "attempts", "list", "-status", "lost")
	db.usage(`unknown method "refund"`, "attempts", "list", "-method", "refund")
	db.usage(`"yesterday" is not a time`, "attempts", "list", "-decided-from", "yesterday")
	db.usage("first-seen range is empty", "attempts", "list", "-first-seen-from", "2026-11-22", "-first-seen-to", "2026-11-21")
	db.usage("-format must be table, json or csv", "attempts", "list", "-format", "xml")
	db.usage("limit must be 1 to 10000", "attempts", "list", "-limit", "0")
	db.usage(`unknown sort key "amount"`, "attempts", "list", "-sort", "amount")
	db.usage("-order must be asc or desc", "attempts", "list", "-order", "up")
	db.usage("takes a cursor TIME,ID", "attempts", "list", "-after", "12")
	db.usage("flag provided but not defined", "attempts", "list", "-colour")
	db.usage(`unexpected argument "x"`, "attempts", "list", "x")
}

// TestAttemptsShowRetryResolveEndToEnd: show by id and by key with every
// event, call, outcome and the audit trail in snake_case; retry and resolve
// with their dry runs (which change nothing), their refusals, and the audit
// trail show prints.
func TestAttemptsShowRetryResolveEndToEnd(t *testing.T) {
	t.Parallel()
	db := newOpsDB(t)

	var byID, byKey historyView
	if err := json.Unmarshal([]byte(db.ok("attempts", "show", db.id("NR-1"))), &byID); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(db.ok("attempts", "show", "M1/NR-1")), &byKey); err != nil {
		t.Fatal(err)
	}
	if byID.Attempt.ID != db.ids["NR-1"] || byKey.Attempt.ID != byID.Attempt.ID || len(byID.Events) != 1 || len(byID.GatewayCalls) != 1 ||
		len(byID.Outcomes) != 1 || byID.GatewayCalls[0].Request["out_trade_no"] != "NR-1" || byID.GatewayCalls[0].AppCode != "APPOPS" ||
		byID.GatewayCalls[0].LatencyMS != 1.5 || byID.Outcomes[0].Status != reversald.StatusNeedsReview || byID.Outcomes[0].PublishedAt != nil {
		t.Errorf("show NR-1: %+v", byID)
	}
	raw := db.ok("attempts", "show", db.id("NR-1"))
	for _, k := range []string{`"attempt"`, `"out_trade_no"`, `"events"`, `"event_id"`, `"gateway_calls"`, `"http_status"`, `"outcomes"`, `"outbox_id"`, `"schema_version"`, `"audit"`} {
		if !strings.Contains(raw, k) {
			t.Errorf("show lacks %s:\n%s", k, raw)
		}
	}
	if _, _, err := db.run("attempts", "show", "M1/NOPE"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("show of an unknown key: %v", err)
	}
	db.usage("not an attempt ID or MCHID/OUT_TRADE_NO", "attempts", "show", "x")
	db.usage("names no out_trade_no", "attempts", "show", "M1/")
	db.usage("takes one attempt", "attempts", "show", "1", "2")

	// retry: usage errors first.
	db.usage("-note is required", "attempts", "retry", db.id("NR-1"))
	db.usage("give attempt IDs or at least one filter", "attempts", "retry", "-note", "x")
	db.usage("give attempt IDs or filters, not both", "attempts", "retry", "-note", "x", "-mchid", "M1", db.id("NR-1"))
	db.usage("only needs_review attempts can be retried", "attempts", "retry", "-note", "x", "-status", "paid")
	db.usage(`unknown status "lost"`, "attempts", "retry", "-note", "x", "-status", "lost")

	// A dry run by filter changes nothing and says what it would do.
	before := db.snapshot()
	out := db.ok("attempts", "retry", "-dry-run", "-note", "signature fixed", "-by", "alice", "-mchid", "M1", "-reason", "1108")
	if !strings.Contains(out, "would retry attempt "+db.id("NR-1")) || !strings.Contains(out, "would retry attempt "+db.id("NR-2")) ||
		strings.Contains(out, "NR-3") || !strings.Contains(out, "would retry 2 of 2; nothing changed") {
		t.Errorf("retry dry run:\n%s", out)
	}
	if out := db.ok("attempts", "retry", "-dry-run", "-note", "x", db.id("RV-1")); !strings.Contains(out, "would not retry") || !strings.Contains(out, "not in needs_review") {
		t.Errorf("retry dry run of a reversed attempt:\n%s", out)
	}
	if after := db.snapshot(); after != before {
		t.Fatalf("a dry run changed the database:\n%s\n%s", before, after)
	}
	if out := db.ok("attempts", "retry", "-note", "x", "-mchid", "NOBODY"); !strings.Contains(out, "no attempts match") {
		t.Errorf("retry of nothing: %q", out)
	}
	if after := db.snapshot(); after != before {
		t.Fatal("a retry that matched nothing changed the database")
	}

	// By filter: NR-1 and NR-2.
	out = db.ok("attempts", "retry", "-note", "signature fixed", "-by", "alice", "-mchid", "M1", "-reason", "1108")
	if !strings.Contains(out, "retried 2 of 2") {
		t.Errorf("retry by filter:\n%s", out)
	}
	// By ids: NR-3 is retried, RV-1 is refused (exit 1), NR-1 now pending too.
	out, _, err := db.run("attempts", "retry", "-note", "cancel bound raised", "-by", "bob", db.id("NR-3"), db.id("RV-1"), "M2/NOPE")
	if err == nil || !strings.Contains(err.Error(), "2 of 3 not retried") {
		t.Errorf("retry of ids with refusals: %v", err)
	}
	var u usageError
	if errors.As(err, &u) {
		t.Errorf("a refused retry is not a usage error: %v", err)
	}
	if !strings.Contains(out, "retried attempt "+db.id("NR-3")) || !strings.Contains(out, "not retried "+db.id("RV-1")) || !strings.Contains(out, "not retried M2/NOPE") {
		t.Errorf("retry of ids:\n%s", out)
	}
	for otn, want := range map[string]reversald.Status{"NR-1": reversald.StatusPending, "NR-2": reversald.StatusPending, "NR-3": reversald.StatusPending, "RV-1": reversald.StatusReversed, "NR-4": reversald.StatusNeedsReview} {
		if a, _ := db.st.Get(context.Background(), db.ids[otn]); a.Status != want {
			t.Errorf("%s after the retries: %s, want %s", otn, a.Status, want)
		}
	}
	var h historyView
	if err := json.Unmarshal([]byte(db.ok("attempts", "show", "M1/NR-1")), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Audit) != 1 || h.Audit[0].Action != "retry" || h.Audit[0].Operator != "alice" || h.Audit[0].Note != "signature fixed" ||
		h.Audit[0].PreviousReason != "query refused: respcd 1108 (signature)" || h.Attempt.Reason != "" || h.Attempt.Status != reversald.StatusPending {
		t.Errorf("show after retry: audit %+v, attempt %s %q", h.Audit, h.Attempt.Status, h.Attempt.Reason)
	}
	if !strings.Contains(db.ok("attempts", "show", "M1/NR-1"), `"previous_reason": "query refused: respcd 1108 (signature)"`) {
		t.Error("show does not print the audit trail's previous reason")
	}

	// resolve: usage errors, a dry run, the refusal of a non-needs_review
	// attempt, then NR-4 to paid.
	db.usage("-status is required", "attempts", "resolve", db.id("NR-4"), "-note", "x")
	db.usage(`-status "not_found": an operator resolves to one of reversed, closed, paid, refunded, partially_refunded, not_paid`,
		"attempts", "resolve", "-status", "not_found", "-note", "x", db.id("NR-4"))
	db.usage(`-status "unsupported"`, "attempts", "resolve", "-status", "unsupported", "-note", "x", db.id("NR-4"))
	db.usage("-note is required", "attempts", "resolve", "-status", "paid", db.id("NR-4"))
	db.usage("takes one attempt", "attempts", "resolve", "-status", "paid", "-note", "x")
	before = db.snapshot()
	out = db.ok("attempts", "resolve", "-dry-run", "-status", "paid", "-note", "QFPay shows it paid", "-by", "carol", "M2/NR-4")
	if !strings.Contains(out, "would resolve attempt "+db.id("NR-4")) || !strings.Contains(out, `resolved_by "carol"`) {
		t.Errorf("resolve dry run:\n%s", out)
	}
	if after := db.snapshot(); after != before {
		t.Fatal("a resolve dry run changed the database")
	}
	if _, _, err := db.run("attempts", "resolve", "-status", "paid", "-note", "x", db.id("PD-1")); !errors.Is(err, store.ErrNotRetryable) {
		t.Errorf("resolve of a paid attempt: %v", err)
	}
	out = db.ok("attempts", "resolve", "-status", "paid", "-note", "QFPay shows it paid", "-by", "carol", "M2/NR-4")
	if !strings.Contains(out, "resolved attempt "+db.id("NR-4")+" to paid by carol; 1 outcome(s) queued") {
		t.Errorf("resolve:\n%s", out)
	}
	if err := json.Unmarshal([]byte(db.ok("attempts", "show", db.id("NR-4"))), &h); err != nil {
		t.Fatal(err)
	}
	if h.Attempt.Status != reversald.StatusPaid || len(h.Audit) != 1 || h.Audit[0].Action != "resolve" || h.Audit[0].Operator != "carol" ||
		h.Audit[0].ToStatus != reversald.StatusPaid || h.Audit[0].PreviousReason != "amount mismatch: QFPay says 2600" ||
		len(h.Outcomes) != 2 || h.Outcomes[1].ResolvedBy != "carol" || h.Outcomes[1].Status != reversald.StatusPaid || h.Outcomes[0].ResolvedBy != "" {
		t.Errorf("show after resolve: %+v", h)
	}
	if !strings.Contains(db.ok("attempts", "show", db.id("NR-4")), `"resolved_by": "carol"`) {
		t.Error("show does not print resolved_by")
	}
}

// TestPurgeCommandEndToEnd: purge's usage errors, a dry run that deletes
// nothing, and a purge that takes final published attempts and leaves the
// pending and the unpublished ones.
func TestPurgeCommandEndToEnd(t *testing.T) {
	t.Parallel()
	db := newOpsDB(t)
	ctx := context.Background()
	db.usage("-older-than is required", "purge")
	db.usage(`"5x" is not an age`, "purge", "-older-than", "5x")
	db.usage("the age must be positive", "purge", "-older-than", "-3h")
	db.usage("days must be 1 to 36500", "purge", "-older-than", "0d")
	db.usage("-batch must be 1 to 100000", "purge", "-older-than", "90d", "-batch", "0")

	// Publish everything but PD-2's outcome.
	n, err := db.st.PublishOutbox(ctx, 100, func(_ context.Context, recs []store.OutboxRecord) error { return nil })
	if err != nil || n != 8 {
		t.Fatalf("publish: %d %v", n, err)
	}
	conn, err := pgx.Connect(ctx, db.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, `UPDATE outbox SET published_at = NULL WHERE attempt_id = $1`, db.ids["PD-2"]); err != nil {
		t.Fatal(err)
	}
	before := db.snapshot()
	if out := db.ok("purge", "-older-than", "90d", "-dry-run"); !strings.Contains(out, "would purge 0 final attempt(s)") {
		t.Errorf("dry run at 90 days: %q", out)
	}
	if out := db.ok("purge", "-older-than", "1ns", "-dry-run"); !strings.Contains(out, "would purge 7 final attempt(s)") {
		t.Errorf("dry run at 1ns: %q", out)
	}
	if out := db.ok("purge", "-older-than", "90d"); !strings.Contains(out, "purged 0 attempt(s)") {
		t.Errorf("purge at 90 days: %q", out)
	}
	if after := db.snapshot(); after != before {
		t.Fatal("a dry run or an empty purge changed the database")
	}
	out := db.ok("purge", "-older-than", "1ns", "-batch", "3")
	if !strings.Contains(out, "purged 7 attempt(s)") || !strings.Contains(out, "in 3 batch(es)") {
		t.Errorf("purge: %q", out)
	}
	var left []string
	rows, _ := conn.Query(ctx, `SELECT out_trade_no FROM attempts ORDER BY out_trade_no`)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(left, ",") != "PD-2,PN-1" {
		t.Errorf("left after purge: %v %v; want the unpublished PD-2 and the pending PN-1", left, err)
	}
}

// TestOpsExitCodes: through the binary, a malformed filter exits 2 and an
// empty result exits 0.
func TestOpsExitCodes(t *testing.T) {
	t.Parallel()
	db := newOpsDB(t)
	bin := daemonBinary(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"attempts", "list", "-status", "lost"}, 2},
		{[]string{"attempts", "list", "-mchid", "NOBODY"}, 0},
		{[]string{"attempts", "retry", "-note", "x", db.id("RV-1")}, 1},
		{[]string{"purge", "-older-than", "soon"}, 2},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = []string{"DATABASE_URL=" + db.url}
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, tc.code, out)
		}
	}
}
