package sandbox

// Tests of what makes the sandbox a strict QFPay for end-to-end tests: record
// overrides, every record code, hidden records after a cancel, answers given
// after the effect, the query range rule, and the ledger checks.

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// query asks for one out_trade_no of mchid and returns the answer.
func query(t *testing.T, base, otn string, extra map[string]string) answer {
	t.Helper()
	f := map[string]string{"mchid": mchid, "out_trade_no": otn}
	for k, v := range extra {
		f[k] = v
	}
	return post(t, base, "query", f, nil)
}

// only returns the single record of a, failing the test if there is not
// exactly one.
func only(t *testing.T, what string, a answer) map[string]any {
	t.Helper()
	d := a.data()
	if a.str("respcd") != "0000" || len(d) != 1 {
		t.Fatalf("%s: %v, want respcd 0000 and one record", what, a.body)
	}
	return d[0]
}

func TestRecordOverride(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	tests := []struct {
		name     string
		seed     *Txn      // seeded with Put (MchID and OutTradeNo filled in)
		script   *Behavior // Script for the out_trade_no
		first    string    // the first call: "query" or "reversal" (cancelFields, txamt 2500)
		extra    map[string]string
		amt      string // record txamt
		curr     string // record txcurrcd
		cancel   string // record cancel flag after the first call
		answered string // txamt of the reversal's answer, if the first call is one
	}{
		{name: "seeded, no override", seed: &Txn{State: StatePaid, TxAmt: 2500}, first: "query", amt: "2500", curr: "HKD", cancel: "0"},
		{name: "txn amount", seed: &Txn{State: StatePaid, TxAmt: 2500, RecordTxAmt: 2400}, first: "query", amt: "2400", curr: "HKD", cancel: "0"},
		{name: "txn currency", seed: &Txn{State: StatePaid, TxAmt: 2500, TxCurrCd: "HKD", RecordTxCurrCd: "USD"}, first: "query", amt: "2500", curr: "USD", cancel: "0"},
		{name: "script on a seeded txn", seed: &Txn{State: StatePaid, TxAmt: 2500}, script: &Behavior{RecordTxAmt: 9999, RecordTxCurrCd: "CNY"}, first: "query", amt: "9999", curr: "CNY", cancel: "0"},
		{name: "txn beats script", seed: &Txn{State: StatePaid, TxAmt: 2500, RecordTxAmt: 2499}, script: &Behavior{RecordTxAmt: 9999}, first: "query", amt: "2499", curr: "HKD", cancel: "0"},
		{name: "override kept after a cancel, answer keeps the own amount", seed: &Txn{State: StateInFlight, TxAmt: 2500, RecordTxAmt: 250}, first: "reversal", amt: "250", curr: "HKD", cancel: "1", answered: "2500"},
		{name: "partially refunded keeps the original amount", seed: &Txn{State: StatePartiallyRefunded, TxAmt: 2500}, first: "query", amt: "2500", curr: "HKD", cancel: "5"},
		{name: "created by a cancel: its txamt and txcurrcd", script: &Behavior{InitialState: StateInFlight}, first: "reversal", extra: map[string]string{"txcurrcd": "USD"}, amt: "2500", curr: "USD", cancel: "1", answered: "2500"},
		{name: "created by a cancel without txcurrcd: HKD", script: &Behavior{InitialState: StateInFlight}, first: "reversal", amt: "2500", curr: "HKD", cancel: "1", answered: "2500"},
		{name: "created by a query: no amount yet", script: &Behavior{InitialState: StatePaid}, first: "query", amt: "0", curr: "HKD", cancel: "0"},
		{name: "created by a query, scripted amount", script: &Behavior{InitialState: StatePaid, RecordTxAmt: 100, RecordTxCurrCd: "EUR"}, first: "query", amt: "100", curr: "EUR", cancel: "0"},
	}
	for i, tt := range tests {
		otn := fmt.Sprintf("RO-%d", i)
		if tt.seed != nil {
			tx := *tt.seed
			tx.MchID, tx.OutTradeNo = mchid, otn
			if err := sb.Put(tx); err != nil {
				t.Fatal(err)
			}
		}
		if tt.script != nil {
			if err := sb.Script(otn, *tt.script); err != nil {
				t.Fatal(err)
			}
		}
		f := cancelFields(otn)
		if tt.first == "query" {
			f = map[string]string{"mchid": mchid, "out_trade_no": otn}
		}
		for k, v := range tt.extra {
			f[k] = v
		}
		a := post(t, base, tt.first, f, nil)
		if tt.answered != "" && (a.str("respcd") != "0000" || fmt.Sprint(a.body["txamt"]) != tt.answered) {
			t.Errorf("%s: cancel answer %v, want 0000 with txamt %s", tt.name, a.body, tt.answered)
		}
		r := only(t, tt.name, query(t, base, otn, nil))
		if got := fmt.Sprint(r["txamt"]); got != tt.amt || r["txcurrcd"] != tt.curr || r["cancel"] != tt.cancel {
			t.Errorf("%s: record txamt %s txcurrcd %v cancel %v, want %s %s %s", tt.name, got, r["txcurrcd"], r["cancel"], tt.amt, tt.curr, tt.cancel)
		}
	}
}

func TestRecordCodes(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	inFlight := []string{"", "1143", "1145", "1298", "1161", "1295", "1296", "1297", "1100", "1205", "1252", "1254", "2999", "1102", "7777"}
	failed := []string{"", "1147", "1181", "1201", "1202", "1203", "1204", "1212", "2005"}
	type row struct {
		state  State
		code   string // "" is the default
		seeded bool   // Txn.Respcd on a Put, else Behavior.Respcd/FailRespcd on a rule
	}
	var tests []row
	for _, seeded := range []bool{true, false} {
		for _, c := range inFlight {
			tests = append(tests, row{StateInFlight, c, seeded})
		}
		for _, c := range failed {
			tests = append(tests, row{StateFailed, c, seeded})
		}
	}
	for i, tt := range tests {
		otn := fmt.Sprintf("RC-%d", i)
		if tt.seeded {
			if err := sb.Put(Txn{MchID: mchid, OutTradeNo: otn, State: tt.state, TxAmt: 2500, Respcd: tt.code}); err != nil {
				t.Fatal(err)
			}
		} else {
			b := Behavior{InitialState: tt.state, Respcd: tt.code}
			if tt.state == StateFailed {
				b = Behavior{InitialState: tt.state, FailRespcd: tt.code}
			}
			if err := sb.Script(otn, b); err != nil {
				t.Fatal(err)
			}
		}
		want := tt.code
		if want == "" {
			want = map[State]string{StateInFlight: "1143", StateFailed: "1147"}[tt.state]
		}
		name := fmt.Sprintf("%s %q seeded=%t", tt.state, tt.code, tt.seeded)
		if r := only(t, name, query(t, base, otn, nil)); r["respcd"] != want || r["cancel"] != "0" {
			t.Errorf("%s: record %v, want respcd %s cancel 0", name, r, want)
		}
		// An in-flight payment is reversed; a failed one answers its code.
		wantCancel, wantFlag := "0000", "1"
		if tt.state == StateFailed {
			wantCancel, wantFlag = want, "0"
		}
		if a := post(t, base, "reversal", cancelFields(otn), nil); a.str("respcd") != wantCancel {
			t.Errorf("%s: reversal %v, want %s", name, a.body, wantCancel)
		}
		if r := only(t, name, query(t, base, otn, nil)); r["cancel"] != wantFlag {
			t.Errorf("%s: record after the reversal %v, want cancel %s", name, r, wantFlag)
		}
	}
}

func TestScriptValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    *Behavior // checked as a rule's and as a Txn's behaviour
		txn  *Txn
		want string // in the error; "" for valid
	}{
		{name: "record override", b: &Behavior{RecordTxAmt: 1, RecordTxCurrCd: "USD"}, txn: &Txn{RecordTxAmt: 99999999999, RecordTxCurrCd: "HKD"}},
		{name: "negative record_txamt", b: &Behavior{RecordTxAmt: -1}, txn: &Txn{RecordTxAmt: -1}, want: "record_txamt"},
		{name: "12-digit record_txamt", b: &Behavior{RecordTxAmt: 100000000000}, txn: &Txn{RecordTxAmt: 100000000000}, want: "record_txamt"},
		{name: "lower-case record_txcurrcd", b: &Behavior{RecordTxCurrCd: "usd"}, txn: &Txn{RecordTxCurrCd: "usd"}, want: "record_txcurrcd"},
		{name: "long record_txcurrcd", b: &Behavior{RecordTxCurrCd: "USDT"}, txn: &Txn{RecordTxCurrCd: "USDT"}, want: "record_txcurrcd"},
		{name: "unknown respcd", b: &Behavior{Respcd: "7777", FailRespcd: "2005"}, txn: &Txn{State: StateInFlight, Respcd: "7777"}},
		{name: "short respcd", b: &Behavior{Respcd: "777"}, txn: &Txn{Respcd: "777"}, want: "respcd"},
		{name: "cancel_effect_codes", b: &Behavior{CancelEffectCodes: []string{"9999", "0000", "1260"}, HideAfterCancel: true}},
		{name: "short cancel_effect_codes entry", b: &Behavior{CancelEffectCodes: []string{"0000", "99"}}, want: "scripted respcd"},
		{name: "retry_after", b: &Behavior{HTTP429: 1, RetryAfter: Duration(720 * time.Hour)}},
		{name: "retry_after under a second", b: &Behavior{RetryAfter: Duration(1500 * time.Millisecond)}, want: "retry_after"},
		{name: "negative retry_after", b: &Behavior{RetryAfter: Duration(-time.Second)}, want: "retry_after"},
		{name: "sysdtm", txn: &Txn{SysDtm: "2026-11-30 23:59:59"}},
		{name: "sysdtm without time", txn: &Txn{SysDtm: "2026-11-30"}, want: "sysdtm"},
		{name: "partially_refunded", b: &Behavior{InitialState: StatePartiallyRefunded}, txn: &Txn{State: StatePartiallyRefunded}},
		{name: "partly_refunded", b: &Behavior{InitialState: "partly_refunded"}, txn: &Txn{State: "partly_refunded"}, want: "not a state"},
	}
	for _, tt := range tests {
		errs := map[string]error{}
		if tt.b != nil {
			errs["rule"] = (&Rule{Prefix: "A", Behavior: *tt.b}).validate()
			errs["txn behaviour"] = (&Txn{OutTradeNo: "A", Behavior: tt.b}).validate()
		}
		if tt.txn != nil {
			tx := *tt.txn
			tx.OutTradeNo = "A"
			errs["txn"] = tx.validate()
		}
		for what, err := range errs {
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%s: %s refused: %v", tt.name, what, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("%s: %s: error %v, want one naming %q", tt.name, what, err, tt.want)
			}
		}
	}
}

// step is one call of a scripted sequence: a cancel and its respcd, then the
// record a query sees afterwards (cancel flag, "" for no record).
type step struct {
	endpoint string
	respcd   string
	cancel   string
}

// play seeds otn in state with b as its script and plays the steps, checking
// each answer and the record a query sees after it.
func play(t *testing.T, sb *Sandbox, base, otn string, state State, b Behavior, steps []step) {
	t.Helper()
	if err := sb.Put(Txn{MchID: mchid, OutTradeNo: otn, State: state, TxAmt: 2500, TxDtm: txdtm, Behavior: &b}); err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		if a := post(t, base, st.endpoint, cancelFields(otn), nil); a.str("respcd") != st.respcd {
			t.Errorf("%s step %d: %s answered %v, want %s", otn, i, st.endpoint, a.body, st.respcd)
		}
		d := query(t, base, otn, nil).data()
		switch {
		case st.cancel == "" && len(d) != 0:
			t.Errorf("%s step %d: records %v, want none", otn, i, d)
		case st.cancel != "" && (len(d) != 1 || d[0]["cancel"] != st.cancel):
			t.Errorf("%s step %d: records %v, want one with cancel %s", otn, i, d, st.cancel)
		}
	}
}

func TestCancelEffectCodes(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	tests := []struct {
		name     string
		state    State
		b        Behavior
		steps    []step
		accepted int
	}{
		{"unknown answer, payment reversed", StateInFlight, Behavior{CancelEffectCodes: []string{"9999"}},
			[]step{{"reversal", "9999", "1"}, {"reversal", "1263", "1"}}, 1},
		{"paid answer, cancel landed", StateInFlight, Behavior{CancelEffectCodes: []string{"1260"}},
			[]step{{"reversal", "1260", "1"}}, 1},
		{"paid answer, payment completed first", StateInFlight, Behavior{SettleTo: StatePaid, CancelEffectCodes: []string{"1260"}},
			[]step{{"reversal", "1260", "0"}, {"reversal", "1260", "0"}}, 0},
		{"close answered 1143 after the effect", StateInFlight, Behavior{CancelEffectCodes: []string{"1143"}},
			[]step{{"close", "1143", "2"}, {"close", "1142", "2"}}, 1},
		{"success shape although nothing changed", StatePaid, Behavior{CancelEffectCodes: []string{"0000"}},
			[]step{{"reversal", "0000", "0"}, {"reversal", "1260", "0"}}, 0},
		{"order: cancel_codes, in_progress, then the effect codes", StateInFlight,
			Behavior{CancelCodes: []string{"1102"}, InProgress: 1, CancelEffectCodes: []string{"9999", "1100"}},
			[]step{{"reversal", "1102", "0"}, {"reversal", "1143", "0"}, {"reversal", "9999", "1"}, {"reversal", "1100", "1"}, {"reversal", "1263", "1"}}, 1},
		{"unknown_for comes first", StateInFlight, Behavior{UnknownFor: 1, CancelEffectCodes: []string{"9999"}},
			[]step{{"reversal", "1268", "0"}, {"reversal", "9999", "1"}}, 1},
	}
	for i, tt := range tests {
		otn := fmt.Sprintf("CE-%d", i)
		play(t, sb, base, otn, tt.state, tt.b, tt.steps)
		if n := sb.AcceptedCancels(otn); n != tt.accepted {
			t.Errorf("%s: %d accepted cancels, want %d", tt.name, n, tt.accepted)
		}
	}
}

func TestHideAfterCancel(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	hide := func(b Behavior) Behavior { b.HideAfterCancel = true; return b }
	tests := []struct {
		name  string
		state State
		b     Behavior
		steps []step
	}{
		{"accepted reversal", StateInFlight, hide(Behavior{}),
			[]step{{"reversal", "0000", ""}, {"reversal", "1263", ""}, {"close", "1264", ""}}},
		{"accepted close", StateInFlight, hide(Behavior{}),
			[]step{{"close", "0000", ""}}},
		{"refused cancels do not hide", StateInFlight, hide(Behavior{CancelCodes: []string{"1102"}, InProgress: 1}),
			[]step{{"reversal", "1102", "0"}, {"reversal", "1143", "0"}, {"reversal", "0000", ""}}},
		{"paid refuses: still seen", StatePaid, hide(Behavior{}),
			[]step{{"reversal", "1260", "0"}}},
		{"applied under an unknown answer", StateInFlight, hide(Behavior{CancelEffectCodes: []string{"9999"}}),
			[]step{{"reversal", "9999", ""}}},
		{"scripted 0000 without effect", StateInFlight, hide(Behavior{CancelCodes: []string{"0000"}}),
			[]step{{"reversal", "0000", ""}}},
		{"repeat answered 0000", StateReversed, hide(Behavior{RepeatCancelRespcd: "0000"}),
			[]step{{"reversal", "0000", ""}}},
		{"without the flag", StateInFlight, Behavior{},
			[]step{{"reversal", "0000", "1"}}},
	}
	for i, tt := range tests {
		otn := fmt.Sprintf("HC-%d", i)
		play(t, sb, base, otn, tt.state, tt.b, tt.steps)
		// Hidden from every kind of query: by syssn and by listing too.
		txn, _ := sb.Get(mchid, otn)
		wantSeen := tt.steps[len(tt.steps)-1].cancel != ""
		for _, f := range []map[string]string{{"mchid": mchid, "syssn": txn.Syssn}, {"mchid": mchid, "out_trade_no": otn + ",NOBODY"}} {
			if d := post(t, base, "query", f, nil).data(); (len(d) == 1) != wantSeen {
				t.Errorf("%s: query %v found %v, want seen=%t", tt.name, f, d, wantSeen)
			}
		}
	}
}

func TestQueryRange(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	// 23:59:30 on 30 November in UTC+8, QFPay's zone.
	now := time.Date(2026, 11, 30, 15, 59, 30, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(at time.Time) { mu.Lock(); now = at; mu.Unlock() }
	strict, sbase := newServer(t, func(c *Config) { c.Now, c.AnyMonth = clock, false }) // strict by default
	lenient, lbase := newServer(t, func(c *Config) { c.Now, c.AnyMonth, c.LooseRange = clock, false, true })
	for _, sb := range []*Sandbox{strict, lenient} {
		for _, tx := range []Txn{
			{MchID: mchid, OutTradeNo: "NOV", State: StatePaid, SysDtm: "2026-11-30 23:59:00"},
			{MchID: mchid, OutTradeNo: "OCT", State: StatePaid, TxDtm: "2026-10-31 23:59:59"}, // sysdtm from txdtm
		} {
			if err := sb.Put(tx); err != nil {
				t.Fatal(err)
			}
		}
		if err := sb.Script("NOW", Behavior{InitialState: StatePaid}); err != nil {
			t.Fatal(err)
		}
	}
	// NOW is created by this first query: its sysdtm is the clock, in UTC+8.
	if r := only(t, "NOW", query(t, sbase, "NOW", nil)); r["sysdtm"] != "2026-11-30 23:59:30" {
		t.Fatalf("NOW: sysdtm %v, want the clock in UTC+8", r["sysdtm"])
	}
	query(t, lbase, "NOW", nil)
	if tx, _ := strict.Get(mchid, "OCT"); tx.SysDtm != "2026-10-31 23:59:59" {
		t.Fatalf("OCT: sysdtm %q, want its txdtm", tx.SysDtm)
	}

	nov30, dec1 := now, time.Date(2026, 11, 30, 16, 0, 30, 0, time.UTC) // 00:00:30 on 1 December in UTC+8
	rng := func(from, to string) map[string]string { return map[string]string{"start_time": from, "end_time": to} }
	with := func(f map[string]string, k, v string) map[string]string { f[k] = v; return f }
	tests := []struct {
		name    string
		at      time.Time
		lenient bool // ask the sandbox with LooseRange
		otn     string
		fields  map[string]string
		respcd  string
		found   bool
	}{
		{"default month", nov30, false, "NOV", nil, "0000", true},
		{"default month leaves October out", nov30, false, "OCT", nil, "0000", false},
		{"October range", nov30, false, "OCT", rng("2026-10-01 00:00:00", "2026-10-31 23:59:59"), "0000", true},
		{"end is included", nov30, false, "NOV", rng("2026-11-01 00:00:00", "2026-11-30 23:59:00"), "0000", true},
		{"end before sysdtm", nov30, false, "NOV", rng("2026-11-01 00:00:00", "2026-11-30 23:58:59"), "0000", false},
		{"start only, open end", nov30, false, "OCT", map[string]string{"start_time": "2026-10-31 00:00:00"}, "0000", true},
		{"crosses a month", nov30, false, "NOV", rng("2026-11-30 00:00:00", "2026-12-01 00:00:00"), "1150", false},
		{"crosses a year", nov30, false, "NOV", rng("2025-12-31 00:00:00", "2026-01-01 00:00:00"), "1150", false},
		{"starts after it ends", nov30, false, "NOV", rng("2026-11-30 23:59:59", "2026-11-30 00:00:00"), "1150", false},
		{"same month in txzone -0500, two days in UTC+8", nov30, false, "NOV",
			with(rng("2026-11-30 00:00:00", "2026-11-30 23:59:59"), "txzone", "-0500"), "0000", true},
		{"crosses a month in txzone -0500", nov30, false, "NOV",
			with(rng("2026-11-30 00:00:00", "2026-12-01 00:00:00"), "txzone", "-0500"), "1150", false},
		{"txzone -0500 range reads in -0500", nov30, false, "NOV",
			with(rng("2026-11-30 11:00:00", "2026-11-30 23:59:59"), "txzone", "-0500"), "0000", false},
		{"a minute later it is December in UTC+8", dec1, false, "NOW", nil, "0000", false},
		{"November range finds it", dec1, false, "NOW", rng("2026-11-01 00:00:00", "2026-11-30 23:59:59"), "0000", true},
		{"still November in txzone +0000", dec1, false, "NOW", map[string]string{"txzone": "+0000"}, "0000", true},
		{"lenient: a range across months", nov30, true, "NOV", rng("2026-11-30 00:00:00", "2026-12-01 00:00:00"), "0000", true},
		{"lenient: start after end finds nothing", nov30, true, "NOV", rng("2026-11-30 23:59:59", "2026-11-30 00:00:00"), "0000", false},
		{"lenient: default month", dec1, true, "NOW", nil, "0000", false},
		{"bad txzone", nov30, false, "NOV", map[string]string{"txzone": "+08:00"}, "1104", false},
		{"txzone out of range", nov30, false, "NOV", map[string]string{"txzone": "+1500"}, "1104", false},
	}
	for _, tt := range tests {
		set(tt.at)
		base := sbase
		if tt.lenient {
			base = lbase
		}
		a := query(t, base, tt.otn, tt.fields)
		if a.status != 200 || a.str("respcd") != tt.respcd || (len(a.data()) == 1) != tt.found {
			t.Errorf("%s: HTTP %d %v, want respcd %s found=%t", tt.name, a.status, a.body, tt.respcd, tt.found)
		}
		if tt.respcd == "1150" && (!strings.Contains(a.str("respmsg"), "query range") || a.body["data"] != nil) {
			t.Errorf("%s: %v, want a respmsg about the range and no data", tt.name, a.body)
		}
	}
	n := 0
	for _, e := range strict.Ledger("NOV") {
		if e.Respcd == "1150" {
			n++
			if e.Fault != "bad_range" {
				t.Errorf("ledger %+v, want fault bad_range", e)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d queries answered 1150 in the ledger, want 4", n)
	}
	// The switch, at run time.
	set(nov30)
	strict.SetStrictRange(false)
	if a := query(t, sbase, "NOV", rng("2026-11-30 00:00:00", "2026-12-01 00:00:00")); a.str("respcd") != "0000" || len(a.data()) != 1 {
		t.Errorf("strict range off: %v", a.body)
	}
}

// send posts fields to endpoint like post, signed with signKey, and returns
// the HTTP status (0 when the connection was dropped).
func send(t *testing.T, base, endpoint string, fields map[string]string, signKey string) int {
	t.Helper()
	form := url.Values{}
	for k, v := range fields {
		form.Set(k, v)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/trade/v1/"+endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	req.Header.Set("X-QF-APPCODE", appCode)
	req.Header.Set("X-QF-SIGN", md5Sign(fields, signKey))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestLedgerChecks(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	tests := []struct {
		name     string
		b        Behavior
		ops      []string // query, reversal, close, badsign (a reversal), invalid (a reversal), reput (in_flight again)
		calls    int      // CancelCalls
		accepted int
		problems []string // the one violation CheckInvariants names for this out_trade_no, in parts; nil for none
	}{
		{"query then reversal", Behavior{}, []string{"query", "reversal"}, 1, 1, nil},
		{"faulted cancels count", Behavior{Drop: 1, HTTP429: 1, HTTP5xx: 1, Endpoints: []string{"reversal"}},
			[]string{"query", "reversal", "reversal", "reversal", "query", "reversal"}, 4, 1, nil},
		{"bad signatures do not count, refused fields do", Behavior{},
			[]string{"query", "badsign", "invalid", "reversal"}, 2, 1, nil},
		{"in progress, then applied", Behavior{InProgress: 1}, []string{"query", "reversal", "query", "reversal"}, 2, 1, nil},
		{"reversal after reversal", Behavior{}, []string{"query", "reversal", "query", "reversal"}, 2, 1,
			[]string{"reversal (seq", "sent to a payment already reversed"}},
		{"reversal after close", Behavior{}, []string{"query", "close", "reversal"}, 2, 1,
			[]string{"reversal (seq", "sent to a payment already closed"}},
		{"re-sent after an unknown answer that reversed", Behavior{CancelEffectCodes: []string{"9999"}},
			[]string{"query", "reversal", "query", "reversal"}, 2, 1, []string{"already reversed"}},
		{"re-sent after a lost answer", Behavior{DropAfter: 1, Endpoints: []string{"reversal"}},
			[]string{"query", "reversal", "query", "reversal"}, 2, 1, []string{"already reversed"}},
		{"re-sent while queries see nothing", Behavior{HideAfterCancel: true},
			[]string{"query", "reversal", "query", "close"}, 2, 1, []string{"close (seq", "sent to a payment already reversed"}},
		{"applied twice", Behavior{}, []string{"query", "reversal", "reput", "close"}, 2, 2, []string{"2 accepted cancels"}},
		{"not preceded by a query", Behavior{}, []string{"reversal"}, 1, 1, []string{"not preceded by an answered query"}},
	}
	for i, tt := range tests {
		otn := fmt.Sprintf("LC-%d", i)
		put := func() {
			b := tt.b
			if err := sb.Put(Txn{MchID: mchid, OutTradeNo: otn, State: StateInFlight, TxAmt: 2500, TxDtm: txdtm, Behavior: &b}); err != nil {
				t.Fatal(err)
			}
		}
		put()
		for _, op := range tt.ops {
			f, ep, k := cancelFields(otn), op, key
			switch op {
			case "query":
				f = map[string]string{"mchid": mchid, "out_trade_no": otn}
			case "badsign":
				ep, k = "reversal", "wrong"
			case "invalid":
				ep, f["txamt"] = "reversal", "-1"
			case "reput":
				put()
				continue
			}
			send(t, base, ep, f, k)
		}
		if n := sb.CancelCalls(otn); n != tt.calls {
			t.Errorf("%s: CancelCalls = %d, want %d", tt.name, n, tt.calls)
		}
		if n := sb.AcceptedCancels(otn); n != tt.accepted {
			t.Errorf("%s: AcceptedCancels = %d, want %d", tt.name, n, tt.accepted)
		}
		var got []string
		if err := sb.CheckInvariants(); err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if strings.HasPrefix(line, otn+": ") {
					got = append(got, line)
				}
			}
		}
		if (len(got) == 0) != (tt.problems == nil) || len(got) > 1 {
			t.Errorf("%s: problems %q, want one naming %q", tt.name, got, tt.problems)
			continue
		}
		for _, want := range tt.problems {
			if !strings.Contains(got[0], want) {
				t.Errorf("%s: problem %q, want it to say %q", tt.name, got[0], want)
			}
		}
	}

	// Rate-limited cancels never reached QFPay's handler.
	rl, rbase := newServer(t, func(c *Config) { c.RateLimit, c.PerSecond = true, 1 })
	send(t, rbase, "query", map[string]string{"mchid": mchid, "out_trade_no": "LC-RL"}, key)
	if st := send(t, rbase, "reversal", cancelFields("LC-RL"), key); st != http.StatusTooManyRequests {
		t.Fatalf("reversal over the limit: HTTP %d", st)
	}
	if n, all := rl.CancelCalls("LC-RL"), rl.Calls("LC-RL", "reversal"); n != 0 || all != 1 {
		t.Errorf("rate limited: CancelCalls = %d of %d reversal calls, want 0 of 1", n, all)
	}
}

func TestAdminNewFields(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		path, body string
		status     int
	}{
		{"/_sandbox/rules", `{"out_trade_no":"AJ-1","initial_state":"in_flight","cancel_effect_codes":["9999"],"hide_after_cancel":true,"record_txamt":2400,"record_txcurrcd":"USD"}`, 200},
		{"/_sandbox/txns", `{"mchid":"` + mchid + `","out_trade_no":"AJ-2","state":"partially_refunded","txamt":2500,"record_txcurrcd":"CNY","sysdtm":"2026-11-30 23:59:59"}`, 200},
		{"/_sandbox/txns", `{"mchid":"` + mchid + `","out_trade_no":"AJ-3","state":"in_flight","respcd":"7777","behavior":{"cancel_effect_codes":["1260"]}}`, 200},
		{"/_sandbox/rules", `{"prefix":"X","http_429":1,"retry_after":"720h"}`, 200},
		{"/_sandbox/rules", `{"prefix":"Y","retry_after":"1.5s"}`, 400},
		{"/_sandbox/rules", `{"prefix":"X","cancel_effect_codes":["9"]}`, 400},
		{"/_sandbox/rules", `{"prefix":"X","record_txcurrcd":"usd"}`, 400},
		{"/_sandbox/rules", `{"prefix":"X","record_txamt":-5}`, 400},
		{"/_sandbox/rules", `{"prefix":"X","initial_state":"partly_refunded"}`, 400},
		{"/_sandbox/txns", `{"out_trade_no":"X","respcd":"12"}`, 400},
		{"/_sandbox/txns", `{"out_trade_no":"X","sysdtm":"today"}`, 400},
		{"/_sandbox/txns", `{"out_trade_no":"X","behavior":{"hide_after_cancel":"yes"}}`, 400},
		{"/_sandbox/strict_range?on=maybe", ``, 400},
		{"/_sandbox/strict_range?on=false", ``, 200},
	}
	for _, tt := range tests {
		if st, b := do("POST", tt.path, tt.body); st != tt.status {
			t.Errorf("POST %s %s: %d %s, want %d", tt.path, tt.body, st, b, tt.status)
		}
	}
	if sb.strictRange.Load() {
		t.Error("strict_range switch: still on")
	}
	if _, b := do("GET", "/_sandbox/rules", ""); !strings.Contains(b, `"cancel_effect_codes":["9999"]`) || !strings.Contains(b, `"hide_after_cancel":true`) ||
		!strings.Contains(b, `"record_txamt":2400`) || !strings.Contains(b, `"record_txcurrcd":"USD"`) {
		t.Errorf("rules: %s", b)
	}
	if _, b := do("GET", "/_sandbox/txns?out_trade_no=AJ-2&mchid="+mchid, ""); !strings.Contains(b, `"state":"partially_refunded"`) || !strings.Contains(b, `"record_txcurrcd":"CNY"`) {
		t.Errorf("txn: %s", b)
	}
	// What they script.
	if r := only(t, "AJ-1", query(t, base, "AJ-1", nil)); fmt.Sprint(r["txamt"]) != "2400" || r["txcurrcd"] != "USD" {
		t.Errorf("AJ-1 record %v, want 2400 USD", r)
	}
	if a := post(t, base, "reversal", cancelFields("AJ-1"), nil); a.str("respcd") != "9999" {
		t.Errorf("AJ-1 reversal %v, want 9999", a.body)
	}
	if d := query(t, base, "AJ-1", nil).data(); len(d) != 0 {
		t.Errorf("AJ-1 after the cancel: %v, want no record", d)
	}
	if r := only(t, "AJ-2", query(t, base, "AJ-2", map[string]string{"start_time": "2026-11-01 00:00:00", "end_time": "2026-11-30 23:59:59"})); r["cancel"] != "5" || r["txcurrcd"] != "CNY" {
		t.Errorf("AJ-2 record %v, want cancel 5 in CNY", r)
	}
	if r := only(t, "AJ-3", query(t, base, "AJ-3", nil)); r["respcd"] != "7777" {
		t.Errorf("AJ-3 record %v, want respcd 7777", r)
	}
	if a := post(t, base, "close", cancelFields("AJ-3"), nil); a.str("respcd") != "1260" {
		t.Errorf("AJ-3 close %v, want 1260", a.body)
	}
	if _, b := do("GET", "/_sandbox/ledger?out_trade_no=AJ-3", ""); !strings.Contains(b, `"state_before":"in_flight"`) || !strings.Contains(b, `"state":"closed"`) {
		t.Errorf("ledger: %s", b)
	}
}
