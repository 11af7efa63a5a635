package sandbox

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	appCode = "APPCODE"
	key     = "abcd1234"
	mchid   = "MNxMp11FV35qQN"
	txdtm   = "2020-03-05 16:50:30"
)

func newServer(t *testing.T, edit func(*Config)) (*Sandbox, string) {
	t.Helper()
	cfg := Config{AppCode: appCode, Key: key, AnyMonth: true}
	if edit != nil {
		edit(&cfg)
	}
	sb := New(cfg)
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	return sb, srv.URL
}

// md5Sign is a third, naive signer for the tests.
func md5Sign(fields map[string]string, k string) string {
	var names []string
	for n, v := range fields {
		if v != "" {
			names = append(names, n)
		}
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	var parts []string
	for _, n := range names {
		parts = append(parts, n+"="+fields[n])
	}
	sum := md5.Sum([]byte(strings.Join(parts, "&") + k))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func (a answer) str(k string) string {
	v, _ := a.body[k].(string)
	return v
}

func (a answer) data() []map[string]any {
	var out []map[string]any
	items, _ := a.body["data"].([]any)
	for _, it := range items {
		out = append(out, it.(map[string]any))
	}
	return out
}

// post sends fields signed with MD5 and key; edit may change the request.
func post(t *testing.T, base, endpoint string, fields map[string]string, edit func(*http.Request)) answer {
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
	req.Header.Set("X-QF-SIGN", md5Sign(fields, key))
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s: %v: %s", endpoint, err, b)
		}
	}
	return a
}

func cancelFields(otn string) map[string]string {
	return map[string]string{"mchid": mchid, "out_trade_no": otn, "txamt": "2500", "txdtm": txdtm}
}

func TestSignatureCheck(t *testing.T) {
	t.Parallel()
	_, base := newServer(t, nil)
	worked := map[string]string{"mchid": "ZaMVg12345", "txamt": "100", "txcurrcd": "HKD"}
	set := func(h, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(h, v) } }
	tests := []struct {
		name   string
		edit   func(*http.Request)
		respcd string
	}{
		{"md5 worked example", set("X-QF-SIGN", "3CB3AA9C21D818AB4CAFAA8FA3FEACF4"), "0000"},
		{"explicit MD5", func(r *http.Request) { r.Header.Set("X-QF-SIGNTYPE", "MD5") }, "0000"},
		{"sha256 worked example", func(r *http.Request) {
			r.Header.Set("X-QF-SIGNTYPE", "SHA256")
			r.Header.Set("X-QF-SIGN", "99D9F7174823928B74C74B1C7A7E1538DF733774DD21C9606A202CB8BB3D74E8")
		}, "0000"},
		{"md5 under SHA256 header", set("X-QF-SIGNTYPE", "SHA256"), "1108"},
		{"unknown sign type", set("X-QF-SIGNTYPE", "SHA1"), "1108"},
		{"wrong signature", set("X-QF-SIGN", "3CB3AA9C21D818AB4CAFAA8FA3FEACF5"), "1108"},
		{"lower-case hex", set("X-QF-SIGN", "3cb3aa9c21d818ab4cafaa8fa3feacf4"), "1108"},
		{"no signature", set("X-QF-SIGN", ""), "1108"},
		{"wrong app code", set("X-QF-APPCODE", "OTHER"), "1108"},
	}
	for _, tt := range tests {
		a := post(t, base, "query", worked, tt.edit)
		if a.status != 200 || a.str("respcd") != tt.respcd {
			t.Errorf("%s: HTTP %d respcd %q, want 200 %s", tt.name, a.status, a.str("respcd"), tt.respcd)
		}
	}
	// Fields in the URL are signed too (the seed says GET for some endpoints).
	q := url.Values{"out_trade_no": {"X"}}
	req, _ := http.NewRequest(http.MethodGet, base+"/trade/v1/query?"+q.Encode(), nil)
	req.Header.Set("X-QF-APPCODE", appCode)
	req.Header.Set("X-QF-SIGN", md5Sign(map[string]string{"out_trade_no": "X"}, key))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"respcd":"0000"`) {
		t.Errorf("GET: %s", b)
	}
}

// TestSeveralCredentials: every listed pair of app code and key is
// accepted, and no other; the ledger names the app code and the label of the
// key that verified each call; SetCredentials replaces the whole set (a key
// rotation); answers are signed with the key that verified the call.
func TestSeveralCredentials(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, func(c *Config) {
		c.SignResponses = true
		c.Credentials = []Credential{{AppCode: "APPB", Key: "key-b", Label: "b1"}, {AppCode: "APPB", Key: "key-b2", Label: "b2"}}
	})
	f := map[string]string{"out_trade_no": "SC-1"}
	as := func(app, k string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("X-QF-APPCODE", app)
			r.Header.Set("X-QF-SIGN", md5Sign(f, k))
		}
	}
	for _, tt := range []struct {
		app, key, respcd string
	}{
		{appCode, key, "0000"}, {"APPB", "key-b", "0000"}, {"APPB", "key-b2", "0000"},
		{"APPB", key, "1108"}, {appCode, "key-b", "1108"}, {"APPC", "key-b", "1108"},
	} {
		a := post(t, base, "query", f, as(tt.app, tt.key))
		if a.str("respcd") != tt.respcd {
			t.Errorf("%s signed with %s: respcd %q, want %s", tt.app, tt.key, a.str("respcd"), tt.respcd)
		}
	}
	var got []string
	for _, e := range sb.Ledger("SC-1") {
		got = append(got, e.AppCode+"/"+e.KeyLabel+"/"+e.Fault)
	}
	want := []string{"APPCODE//", "APPB/b1/", "APPB/b2/", "APPB//bad_sign", "APPCODE//bad_sign", "APPC//bad_sign"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ledger app code/key label/fault = %v, want %v", got, want)
	}

	// The answer is signed with the key that verified the call.
	raw := func(app, k string) (string, string) {
		form := url.Values{"out_trade_no": {"SC-1"}}
		req, _ := http.NewRequest(http.MethodPost, base+"/trade/v1/query", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-QF-APPCODE", app)
		req.Header.Set("X-QF-SIGN", md5Sign(f, k))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		sum := md5.Sum(append(b, k...))
		return resp.Header.Get("X-QF-SIGN"), strings.ToUpper(hex.EncodeToString(sum[:]))
	}
	if got, want := raw("APPB", "key-b2"); got != want {
		t.Errorf("answer to APPB/b2 signed %s, want %s (its own key)", got, want)
	}

	// Rotation: from now on only the new key of APPB.
	if err := sb.SetCredentials([]Credential{{AppCode: "APPB", Key: "key-b2", Label: "b2"}}); err != nil {
		t.Fatal(err)
	}
	if a := post(t, base, "query", f, as("APPB", "key-b")); a.str("respcd") != "1108" {
		t.Errorf("old key after SetCredentials: %q, want 1108", a.str("respcd"))
	}
	if a := post(t, base, "query", f, as(appCode, key)); a.str("respcd") != "1108" {
		t.Errorf("Config's pair after SetCredentials: %q, want 1108 (the whole set is replaced)", a.str("respcd"))
	}
	if a := post(t, base, "query", f, as("APPB", "key-b2")); a.str("respcd") != "0000" {
		t.Errorf("new key after SetCredentials: %q, want 0000", a.str("respcd"))
	}
	if err := sb.SetCredentials([]Credential{{AppCode: "APPB"}}); err == nil || strings.Contains(err.Error(), "key-b") {
		t.Errorf("SetCredentials with no key: %v", err)
	}
	sb.Reset()
	if a := post(t, base, "query", f, as("APPB", "key-b")); a.str("respcd") != "0000" {
		t.Errorf("after Reset: %q, want the Config's credentials back", a.str("respcd"))
	}
	if err := (Config{Credentials: []Credential{{AppCode: "A", Key: "k"}}}).Validate(); err != nil {
		t.Errorf("credentials without AppCode/Key: %v", err)
	}
	if err := (Config{AppCode: "A", Credentials: []Credential{{AppCode: "B"}}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "key is required") || !strings.Contains(err.Error(), "credential 1: key is required") {
		t.Errorf("Validate = %v; want both missing keys", err)
	}
}

// TestInFlight: a call is counted from its arrival to its answer.
func TestInFlight(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	if err := sb.Script("IF-1", Behavior{Latency: Latency{Fixed: Duration(300 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan answer, 1)
	go func() { done <- post(t, base, "query", map[string]string{"out_trade_no": "IF-1"}, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for sb.InFlight("IF-1") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the call was never counted in flight")
		}
		time.Sleep(time.Millisecond)
	}
	if a := <-done; a.str("respcd") != "0000" || sb.InFlight("IF-1") != 0 || sb.InFlight("OTHER") != 0 {
		t.Errorf("after the answer: respcd %q, in flight %d", a.str("respcd"), sb.InFlight("IF-1"))
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	tests := []struct {
		endpoint string
		edit     func(map[string]string)
		field    string
	}{
		{"reversal", func(f map[string]string) { delete(f, "out_trade_no") }, "out_trade_no"},
		{"reversal", func(f map[string]string) { f["out_trade_no"] = strings.Repeat("a", 129) }, "out_trade_no"},
		{"close", func(f map[string]string) { f["syssn"] = strings.Repeat("1", 41) }, "syssn"},
		{"reversal", func(f map[string]string) { delete(f, "txamt") }, "txamt"},
		{"reversal", func(f map[string]string) { f["txamt"] = "25.00" }, "txamt"},
		{"reversal", func(f map[string]string) { f["txamt"] = "0" }, "txamt"},
		{"reversal", func(f map[string]string) { f["txamt"] = "123456789012" }, "txamt"},
		{"reversal", func(f map[string]string) { f["txdtm"] = "2020-03-05" }, "txdtm"},
		{"reversal", func(f map[string]string) { f["txdtm"] = "2020-13-05 16:50:30" }, "txdtm"},
		{"reversal", func(f map[string]string) { f["mchid"] = strings.Repeat("M", 17) }, "mchid"},
		{"reversal", func(f map[string]string) { f["udid"] = strings.Repeat("u", 41) }, "udid"},
		{"query", func(f map[string]string) { f["start_time"] = "yesterday" }, "start_time"},
		{"query", func(f map[string]string) { f["out_trade_no"] = "A,,B" }, "out_trade_no"},
	}
	for _, tt := range tests {
		f := cancelFields("V-1")
		tt.edit(f)
		a := post(t, base, tt.endpoint, f, nil)
		if a.status != 200 || a.str("respcd") != "1104" || !strings.Contains(a.str("resperr"), tt.field) {
			t.Errorf("%s %v: %d %v, want 1104 naming %s", tt.endpoint, f, a.status, a.body, tt.field)
		}
	}
	for _, e := range sb.Entries() {
		if e.Fault != "invalid" || e.Respcd != "1104" || e.Accepted {
			t.Errorf("ledger %+v", e)
		}
	}
}

func TestStatesAndCodes(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	type step struct {
		endpoint string
		respcd   string
		cancel   string // query record cancel flag after the step ("" = no record)
	}
	tests := []struct {
		state State
		steps []step
	}{
		{StateInFlight, []step{{"reversal", "0000", "1"}, {"reversal", "1263", "1"}, {"close", "1264", "1"}}},
		{StateInFlight, []step{{"close", "0000", "2"}, {"close", "1142", "2"}, {"reversal", "1264", "2"}}},
		{StatePaid, []step{{"reversal", "1260", "0"}, {"close", "1260", "0"}}},
		{StateFailed, []step{{"reversal", "1147", "0"}}},
		{StateRefunded, []step{{"reversal", "1262", "3"}}},
		{StatePartiallyRefunded, []step{{"reversal", "1262", "5"}, {"close", "1262", "5"}}},
		{StateUnknown, []step{{"reversal", "1268", ""}, {"close", "1268", ""}}},
	}
	for i, tt := range tests {
		otn := fmt.Sprintf("S-%d", i)
		if err := sb.Put(Txn{MchID: mchid, OutTradeNo: otn, State: tt.state, TxAmt: 2500, TxDtm: txdtm}); err != nil {
			t.Fatal(err)
		}
		for _, st := range tt.steps {
			a := post(t, base, st.endpoint, cancelFields(otn), nil)
			if a.str("respcd") != st.respcd {
				t.Errorf("%s %s: %v, want %s", tt.state, st.endpoint, a.body, st.respcd)
			}
			if st.respcd == "0000" && (a.str("orig_syssn") == "" || a.str("syssn") == "" || a.str("out_trade_no") != otn) {
				t.Errorf("%s: flat answer %v", tt.state, a.body)
			}
			q := post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": otn}, nil)
			d := q.data()
			switch {
			case st.cancel == "" && len(d) != 0:
				t.Errorf("%s: records %v, want none", tt.state, d)
			case st.cancel != "" && (len(d) != 1 || d[0]["cancel"] != st.cancel || d[0]["order_type"] != "payment"):
				t.Errorf("%s after %s: records %v, want cancel %s", tt.state, st.endpoint, d, st.cancel)
			}
		}
	}
	if sb.AcceptedCancels("S-0") != 1 || sb.AcceptedCancels("S-1") != 1 || sb.AcceptedCancels("S-2") != 0 {
		t.Error("accepted cancels")
	}
	if err := sb.CheckInvariants(); err == nil || !strings.Contains(err.Error(), "not preceded") {
		t.Errorf("CheckInvariants = %v: the first cancels had no query before them", err)
	}
	if n := sb.Calls("S-0", "query"); n != 3 {
		t.Errorf("Calls(S-0, query) = %d", n)
	}
}

func TestInvariants(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	_ = sb.Put(Txn{MchID: mchid, OutTradeNo: "I-1", State: StateInFlight, TxAmt: 2500, TxDtm: txdtm})
	post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": "I-1"}, nil)
	post(t, base, "reversal", cancelFields("I-1"), nil)
	if err := sb.CheckInvariants(); err != nil {
		t.Fatalf("query then reversal: %v", err)
	}
	_ = sb.Put(Txn{MchID: mchid, OutTradeNo: "I-1", State: StateInFlight, TxAmt: 2500, TxDtm: txdtm})
	post(t, base, "close", cancelFields("I-1"), nil)
	err := sb.CheckInvariants()
	if err == nil || !strings.Contains(err.Error(), "I-1: 2 accepted cancels") {
		t.Fatalf("two accepted: %v", err)
	}
	resp, err := http.Get(base + "/_sandbox/check")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"ok":false`) || !strings.Contains(string(b), "2 accepted cancels") {
		t.Errorf("check: %s", b)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, func(c *Config) {
		c.Rules = []Rule{
			{Prefix: "R", Behavior: Behavior{InitialState: StatePaid}},
			{Prefix: "RF", Behavior: Behavior{InitialState: StateFailed, FailRespcd: "1205", PayType: "800201"}},
		}
	})
	if err := sb.AddRule(Rule{Prefix: "RFI", Behavior: Behavior{InitialState: StateInFlight, Respcd: "1145"}}); err != nil {
		t.Fatal(err)
	}
	if err := sb.Script("RFIX", Behavior{InitialState: StateRefunded}); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{ // respcd, cancel
		"R1": {"0000", "0"}, "RF1": {"1205", "0"}, "RFI1": {"1145", "0"}, "RFIX": {"0000", "3"},
	}
	for otn, w := range want {
		d := post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": otn}, nil).data()
		if len(d) != 1 || d[0]["respcd"] != w[0] || d[0]["cancel"] != w[1] {
			t.Errorf("%s: %v, want %v", otn, d, w)
		}
	}
	if txn, _ := sb.Get(mchid, "RF1"); txn.PayType != "800201" || txn.State != StateFailed {
		t.Errorf("RF1: %+v", txn)
	}
	if d := post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": "X1"}, nil).data(); len(d) != 0 {
		t.Errorf("no rule: %v", d)
	}
	// A rule only applies at first sight: a later rule does not change a known txn.
	_ = sb.AddRule(Rule{Prefix: "R1", Behavior: Behavior{InitialState: StateFailed}})
	if txn, _ := sb.Get(mchid, "R1"); txn.State != StatePaid {
		t.Errorf("R1 changed: %+v", txn)
	}
	if err := sb.AddRule(Rule{Prefix: "Z", Behavior: Behavior{InitialState: "bogus"}}); err == nil {
		t.Error("bad rule accepted")
	}
	if len(sb.Rules()) != 5 {
		t.Errorf("rules: %+v", sb.Rules())
	}
	sb.Reset()
	if len(sb.Rules()) != 2 || len(sb.Entries()) != 0 || len(sb.Txns()) != 0 {
		t.Errorf("after reset: %d rules, %d entries, %d txns", len(sb.Rules()), len(sb.Entries()), len(sb.Txns()))
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, nil)
	_ = sb.Script("F-1", Behavior{InitialState: StateInFlight, HTTP429: 1, HTTP5xx: 2, Status5xx: 500, Endpoints: []string{"reversal"}})
	var statuses []int
	for range 4 {
		statuses = append(statuses, post(t, base, "reversal", cancelFields("F-1"), nil).status)
	}
	if fmt.Sprint(statuses) != "[429 500 500 200]" {
		t.Errorf("statuses %v", statuses)
	}
	// Queries are not covered by the reversal-only faults.
	if a := post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": "F-1"}, nil); a.status != 200 {
		t.Errorf("query: %d", a.status)
	}
	faults := []string{}
	for _, e := range sb.Ledger("F-1") {
		faults = append(faults, e.Fault)
	}
	if fmt.Sprint(faults) != "[429 5xx 5xx  ]" {
		t.Errorf("ledger faults %q", faults)
	}
	// Retry-After only when scripted, on 429 and 5xx alike, in seconds.
	if a := post(t, base, "reversal", cancelFields("F-1"), nil); a.header.Get("Retry-After") != "" {
		t.Errorf("unscripted Retry-After %q", a.header.Get("Retry-After"))
	}
	_ = sb.Script("F-3", Behavior{InitialState: StateInFlight, HTTP429: 1, HTTP5xx: 1, RetryAfter: Duration(30 * 24 * time.Hour)})
	for _, want := range []int{429, 503} {
		if a := post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": "F-3"}, nil); a.status != want || a.header.Get("Retry-After") != "2592000" {
			t.Errorf("F-3: HTTP %d Retry-After %q, want %d 2592000", a.status, a.header.Get("Retry-After"), want)
		}
	}
	if a := post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": "F-3"}, nil); a.status != 200 || a.header.Get("Retry-After") != "" {
		t.Errorf("F-3 answered: HTTP %d Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	// A dropped connection.
	_ = sb.Script("F-2", Behavior{InitialState: StateInFlight, Drop: 1})
	form := url.Values{"mchid": {mchid}, "out_trade_no": {"F-2"}, "txamt": {"2500"}, "txdtm": {txdtm}}
	req, _ := http.NewRequest(http.MethodPost, base+"/trade/v1/reversal", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-QF-APPCODE", appCode)
	req.Header.Set("X-QF-SIGN", md5Sign(cancelFields("F-2"), key))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("drop: got HTTP %d", resp.StatusCode)
	}
	if l := sb.Ledger("F-2"); len(l) != 1 || l[0].Fault != "drop" || l[0].HTTPStatus != 0 {
		t.Errorf("drop ledger %+v", l)
	}
}

func TestConcurrentCancelsAcceptOnce(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, func(c *Config) {
		c.Rules = []Rule{{Prefix: "C-", Behavior: Behavior{InitialState: StateInFlight}}}
	})
	var wg sync.WaitGroup
	codes := make(chan string, 40)
	for i := range 40 {
		ep := "reversal"
		if i%2 == 1 {
			ep = "close"
		}
		wg.Go(func() { codes <- post(t, base, ep, cancelFields("C-1"), nil).str("respcd") })
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		switch c {
		case "0000":
			ok++
		case "1263", "1142", "1264":
		default:
			t.Errorf("respcd %s", c)
		}
	}
	if ok != 1 || sb.AcceptedCancels("C-1") != 1 {
		t.Errorf("%d successes, %d accepted", ok, sb.AcceptedCancels("C-1"))
	}
}

func TestRateLimitWindows(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 3, 5, 16, 50, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sb, base := newServer(t, func(c *Config) { c.Now = clock })
	q := map[string]string{"mchid": mchid, "out_trade_no": "RL"}
	count := func(n int) (ok, limited int) {
		for range n {
			switch s := post(t, base, "query", q, nil).status; s {
			case 200:
				ok++
			case 429:
				limited++
			default:
				t.Fatalf("status %d", s)
			}
		}
		return
	}
	if ok, lim := count(150); ok != 150 || lim != 0 {
		t.Fatalf("off: %d ok %d limited", ok, lim)
	}
	sb.SetRateLimit(true)
	advance(time.Minute)
	if ok, lim := count(101); ok != 100 || lim != 1 {
		t.Errorf("second 1: %d ok, %d limited", ok, lim)
	}
	for range 3 {
		advance(time.Second)
		count(100)
	}
	advance(time.Second)
	if ok, lim := count(5); ok != 0 || lim != 5 {
		t.Errorf("minute cap: %d ok, %d limited", ok, lim)
	}
	advance(time.Minute)
	if ok, _ := count(1); ok != 1 {
		t.Error("next minute")
	}
}

func TestLatencyAndClose(t *testing.T) {
	t.Parallel()
	l := Latency{Min: Duration(time.Millisecond), Max: Duration(3 * time.Millisecond)}
	for range 1000 {
		if d := l.sample(); d < time.Millisecond || d > 3*time.Millisecond {
			t.Fatalf("sample %v out of range", d)
		}
	}
	if d := (Latency{Fixed: Duration(time.Second)}).sample(); d != time.Second {
		t.Fatalf("fixed %v", d)
	}
	sb, base, stop, err := Start(Config{AppCode: appCode, Key: key, Rules: []Rule{{Prefix: "SLOW", Behavior: Behavior{Latency: Latency{Fixed: Duration(time.Hour)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan answer, 1)
	go func() { done <- post(t, base, "query", map[string]string{"out_trade_no": "SLOW"}, nil) }()
	for len(sb.Entries()) == 0 && len(sb.Txns()) == 0 {
		time.Sleep(time.Millisecond) // until the handler holds the call
	}
	start := time.Now()
	stop()
	if a := <-done; a.status != 503 {
		t.Errorf("closing answer: %d", a.status)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("stop waited for the scripted latency")
	}
}

func TestAdminHTTP(t *testing.T) {
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
	if st, b := do("POST", "/_sandbox/txns", `[{"mchid":"`+mchid+`","out_trade_no":"AD-1","state":"in_flight","txamt":2500,"txdtm":"`+txdtm+`"},
		{"out_trade_no":"AD-2","state":"paid","behavior":{"http_429":1}}]`); st != 200 || !strings.Contains(b, `"added":2`) {
		t.Fatalf("txns: %d %s", st, b)
	}
	if st, b := do("POST", "/_sandbox/rules", `{"prefix":"AD-R","initial_state":"in_flight","latency":{"min":"0ms","max":"1ms"},"in_progress":1}`); st != 200 {
		t.Fatalf("rules: %d %s", st, b)
	}
	for _, bad := range []string{`{"prefix":"X","initial_state":"gone"}`, `{"prefix":"X","cancel_codes":["12"]}`, `{"prefix":"X","unknown_for":-1}`, `{"prefix":"X","latency":{"fixed":"soon"}}`, `nope`} {
		if st, _ := do("POST", "/_sandbox/rules", bad); st != 400 {
			t.Errorf("bad rule %s: %d", bad, st)
		}
	}
	if st, _ := do("POST", "/_sandbox/txns", `{"state":"paid"}`); st != 400 {
		t.Error("txn without out_trade_no accepted")
	}
	post(t, base, "query", map[string]string{"mchid": mchid, "out_trade_no": "AD-1"}, nil)
	post(t, base, "reversal", cancelFields("AD-1"), nil)
	if a := post(t, base, "query", map[string]string{"out_trade_no": "AD-2"}, nil); a.status != 429 {
		t.Errorf("script from txn: %d", a.status)
	}
	st, b := do("GET", "/_sandbox/ledger?out_trade_no=AD-1", "")
	var entries []Entry
	if err := json.Unmarshal([]byte(b), &entries); st != 200 || err != nil || len(entries) != 2 || !entries[1].Accepted ||
		entries[1].Fields["txamt"] != "2500" || entries[1].State != StateReversed {
		t.Errorf("ledger: %d %s", st, b)
	}
	if _, b := do("GET", "/_sandbox/ledger", ""); strings.Count(b, `"seq"`) != 3 {
		t.Errorf("full ledger: %s", b)
	}
	if st, b := do("GET", "/_sandbox/txns?out_trade_no=AD-1&mchid="+mchid, ""); st != 200 || !strings.Contains(b, `"state":"reversed"`) {
		t.Errorf("txn: %d %s", st, b)
	}
	if st, _ := do("GET", "/_sandbox/txns?out_trade_no=nope", ""); st != 404 {
		t.Errorf("missing txn: %d", st)
	}
	if _, b := do("GET", "/_sandbox/rules", ""); !strings.Contains(b, `"AD-R"`) || !strings.Contains(b, `"AD-2"`) {
		t.Errorf("rules: %s", b)
	}
	if st, _ := do("POST", "/_sandbox/ratelimit?on=true", ""); st != 200 || !sb.rateOn.Load() {
		t.Error("ratelimit switch")
	}
	if st, _ := do("GET", "/_sandbox/nothing", ""); st != 404 {
		t.Error("unknown admin path")
	}
	if st, _ := do("GET", "/trade/v1/refund", ""); st != 404 {
		t.Error("unknown api path")
	}
	if st, _ := do("POST", "/_sandbox/reset", ""); st != 200 || len(sb.Entries()) != 0 {
		t.Error("reset")
	}
}

func TestResponseSigning(t *testing.T) {
	t.Parallel()
	_, base := newServer(t, func(c *Config) { c.SignResponses = true })
	form := url.Values{"out_trade_no": {"RS"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/trade/v1/query", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-QF-APPCODE", appCode)
	req.Header.Set("X-QF-SIGN", md5Sign(map[string]string{"out_trade_no": "RS"}, key))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := md5.Sum(append(bytes.Clone(b), key...))
	if got, want := resp.Header.Get("X-QF-SIGN"), strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Errorf("X-QF-SIGN %s, want %s", got, want)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	err := Config{PerSecond: -1, Rules: []Rule{{Prefix: "a", OutTradeNo: "b"}}, Txns: []Txn{{}}}.Validate()
	for _, want := range []string{"app code", "key", "rate", "prefix or out_trade_no", "out_trade_no is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an invalid config")
		}
	}()
	New(Config{})
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	var l Latency
	if err := json.Unmarshal([]byte(`{"fixed":"1.5s","min":1000,"max":"2ms"}`), &l); err != nil {
		t.Fatal(err)
	}
	if l.Fixed != Duration(1500*time.Millisecond) || l.Min != 1000 || l.Max != Duration(2*time.Millisecond) {
		t.Errorf("%+v", l)
	}
	b, _ := json.Marshal(l)
	if string(b) != `{"fixed":"1.5s","min":"1µs","max":"2ms"}` {
		t.Errorf("%s", b)
	}
	if err := json.Unmarshal([]byte(`{"fixed":"later"}`), &l); err == nil {
		t.Error("bad duration accepted")
	}
}

func TestLedgerLimit(t *testing.T) {
	t.Parallel()
	sb, base := newServer(t, func(c *Config) { c.LedgerLimit = 10 })
	for i := range 25 {
		post(t, base, "query", map[string]string{"out_trade_no": fmt.Sprintf("L-%d", i%3)}, nil)
	}
	all := sb.Entries()
	if len(all) > 10 || all[len(all)-1].Seq != 25 || sb.LedgerDropped() != int64(25-len(all)) {
		t.Fatalf("%d entries, last seq %d, dropped %d", len(all), all[len(all)-1].Seq, sb.LedgerDropped())
	}
	n := 0
	for i := range 3 {
		for _, e := range sb.Ledger(fmt.Sprintf("L-%d", i)) {
			if e.OutTradeNo != fmt.Sprintf("L-%d", i) {
				t.Fatalf("index points at %+v", e)
			}
			n++
		}
	}
	if n != len(all) {
		t.Fatalf("index holds %d of %d", n, len(all))
	}
}

// BenchmarkHandler measures the sandbox alone (no network): a query, a
// reversal and a confirming query per op, on distinct out_trade_nos.
func BenchmarkHandler(b *testing.B) {
	sb := New(Config{AppCode: appCode, Key: key, AnyMonth: true, Rules: []Rule{{Prefix: "H-", Behavior: Behavior{InitialState: StateInFlight}}}})
	b.Cleanup(sb.Close)
	var n atomic.Int64
	mk := func(endpoint string, f map[string]string) *http.Request {
		form := url.Values{}
		for k, v := range f {
			form.Set(k, v)
		}
		r := httptest.NewRequest(http.MethodPost, "/trade/v1/"+endpoint, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
		r.Header.Set("X-QF-APPCODE", appCode)
		r.Header.Set("X-QF-SIGN", md5Sign(f, key))
		return r
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			otn := fmt.Sprintf("H-%d", n.Add(1))
			q := map[string]string{"mchid": mchid, "out_trade_no": otn}
			for _, r := range []*http.Request{mk("query", q), mk("reversal", cancelFields(otn)), mk("query", q)} {
				w := httptest.NewRecorder()
				sb.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("HTTP %d", w.Code)
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attempts/s")
}
