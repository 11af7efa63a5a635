package qfpay

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reversald/reversald/qfpay/sandbox"
)

const (
	testAppCode = "TESTAPPCODE"
	testKey     = "test-client-key"
	testMchID   = "MNxMp11FV35qQN"
	seedOTN     = "4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ"
	seedTxDtm   = "2020-03-05 16:50:30"
)

// testClient is a client of baseURL with the test credentials; edit may change
// the config.
func testClient(t testing.TB, baseURL string, edit func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: baseURL, AppCode: testAppCode, ClientKey: NewKey(testKey), MchID: testMchID, Timeout: 5 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// startSandbox serves a sandbox with the test credentials on loopback.
func startSandbox(t testing.TB, edit func(*sandbox.Config)) (*sandbox.Sandbox, string) {
	t.Helper()
	cfg := sandbox.Config{AppCode: testAppCode, Key: testKey, AnyMonth: true}
	if edit != nil {
		edit(&cfg)
	}
	sb, u, stop, err := sandbox.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return sb, u
}

func put(t testing.TB, sb *sandbox.Sandbox, otn string, st sandbox.State) sandbox.Txn {
	t.Helper()
	if err := sb.Put(sandbox.Txn{MchID: testMchID, OutTradeNo: otn, State: st, TxAmt: 2500, TxDtm: seedTxDtm}); err != nil {
		t.Fatal(err)
	}
	txn, _ := sb.Get(testMchID, otn)
	return txn
}

func cancelReq(otn string) CancelRequest {
	return CancelRequest{OutTradeNo: otn, TxAmt: 2500, TxDtm: seedTxDtm}
}

func TestRequestOnTheWire(t *testing.T) {
	t.Parallel()
	for _, st := range []SignType{SignMD5, SignSHA256} {
		t.Run(string(st), func(t *testing.T) {
			t.Parallel()
			got := make(chan *http.Request, 1)
			bodies := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- r
				bodies <- string(b)
				_, _ = io.WriteString(w, `{"respcd":"0000","orig_syssn":"1","syssn":"2"}`)
			}))
			t.Cleanup(srv.Close)
			c := testClient(t, srv.URL+"/", func(c *Config) { c.SignType = st })
			req := cancelReq(seedOTN)
			req.Udid = "收银台 1&2"
			if _, err := c.Reverse(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			r, body := <-got, <-bodies
			if r.Method != http.MethodPost || r.URL.Path != PathReversal {
				t.Errorf("%s %s", r.Method, r.URL.Path)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded; charset=UTF-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if r.Header.Get("X-QF-APPCODE") != testAppCode {
				t.Errorf("appcode %q", r.Header.Get("X-QF-APPCODE"))
			}
			if h := r.Header.Get("X-QF-SIGNTYPE"); (st == SignMD5 && h != "") || (st == SignSHA256 && h != "SHA256") {
				t.Errorf("X-QF-SIGNTYPE %q for %s", h, st)
			}
			form, err := url.ParseQuery(body)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"mchid": testMchID, "out_trade_no": seedOTN, "txamt": "2500", "txdtm": seedTxDtm, "udid": "收银台 1&2"}
			if len(form) != len(want) {
				t.Errorf("form %v, want %v", form, want)
			}
			for k, v := range want {
				if form.Get(k) != v {
					t.Errorf("form %s = %q, want %q", k, form.Get(k), v)
				}
			}
			if strings.Contains(body, testKey) {
				t.Error("the key was sent")
			}
			plain := "mchid=" + testMchID + "&out_trade_no=" + seedOTN + "&txamt=2500&txdtm=" + seedTxDtm + "&udid=收银台 1&2" + testKey
			if st == SignMD5 {
				sum := md5.Sum([]byte(plain))
				if want := strings.ToUpper(hex.EncodeToString(sum[:])); r.Header.Get("X-QF-SIGN") != want {
					t.Errorf("X-QF-SIGN %s, want %s", r.Header.Get("X-QF-SIGN"), want)
				}
			}
		})
	}
}

func TestQueryStates(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	c := testClient(t, u, nil)
	want := map[string]RecordState{
		"Q-PAID": StatePaid, "Q-INFLIGHT": StateInFlight, "Q-FAILED": StateFailed,
		"Q-REV": StateReversed, "Q-CLOSED": StateClosed, "Q-REFUNDED": StateRefunded,
	}
	states := map[string]sandbox.State{
		"Q-PAID": sandbox.StatePaid, "Q-INFLIGHT": sandbox.StateInFlight, "Q-FAILED": sandbox.StateFailed,
		"Q-REV": sandbox.StateReversed, "Q-CLOSED": sandbox.StateClosed, "Q-REFUNDED": sandbox.StateRefunded,
	}
	var raws string
	for otn, st := range states {
		txn := put(t, sb, otn, st)
		res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: otn})
		if err != nil {
			t.Fatalf("%s: %v", otn, err)
		}
		rec, ok := res.Payment(otn)
		if !ok || rec.State() != want[otn] || rec.Syssn != txn.Syssn || rec.TxAmt != 2500 || rec.PayType != "800101" {
			t.Errorf("%s: record %+v (%v), want %v", otn, rec, rec.State(), want[otn])
		}
		raws += string(res.Call.Raw)
	}
	if !strings.Contains(raws, `"txamt":"2500"`) || !strings.Contains(raws, `"txamt":2500`) {
		t.Errorf("the sandbox should send amounts both as strings and numbers: %s", raws)
	}
	// Unknown: no record, and not an error.
	res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: "Q-NOBODY"})
	if err != nil || len(res.Data) != 0 || res.Call.Respcd != "0000" {
		t.Errorf("unknown: %+v, %v", res, err)
	}
	// Lists and syssn.
	paid, _ := sb.Get(testMchID, "Q-PAID")
	res, err = c.Query(context.Background(), QueryRequest{OutTradeNo: "Q-REV,Q-NOBODY", Syssn: paid.Syssn})
	if err != nil || len(res.Data) != 2 {
		t.Errorf("list: %+v, %v", res.Data, err)
	}
}

func TestQueryMonthWindow(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, func(c *sandbox.Config) { c.AnyMonth = false })
	c := testClient(t, u, nil)
	put(t, sb, "OLD", sandbox.StatePaid) // txdtm 2020-03-05
	res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: "OLD"})
	if err != nil || len(res.Data) != 0 {
		t.Fatalf("default window is the current month: %+v %v", res.Data, err)
	}
	res, err = c.Query(context.Background(), QueryRequest{OutTradeNo: "OLD", StartTime: "2020-03-05 00:00:00", EndTime: "2020-03-06 00:00:00"})
	if err != nil || len(res.Data) != 1 {
		t.Fatalf("with a window around txdtm: %+v %v", res.Data, err)
	}
}

func TestCancelLifecycle(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	c := testClient(t, u, nil)
	ctx := context.Background()
	tests := []struct {
		name   string
		state  sandbox.State
		method Method
		class  Class
		after  RecordState
	}{
		{"reverse in flight", sandbox.StateInFlight, MethodReversal, ClassSuccess, StateReversed},
		{"close in flight", sandbox.StateInFlight, MethodClose, ClassSuccess, StateClosed},
		{"reverse paid", sandbox.StatePaid, MethodReversal, ClassPaid, StatePaid},
		{"close paid", sandbox.StatePaid, MethodClose, ClassPaid, StatePaid},
		{"reverse refunded", sandbox.StateRefunded, MethodReversal, ClassRefunded, StateRefunded},
		{"reverse failed", sandbox.StateFailed, MethodReversal, ClassPaymentFailed, StateFailed},
		{"reverse reversed", sandbox.StateReversed, MethodReversal, ClassAlreadyCancelled, StateReversed},
		{"close closed", sandbox.StateClosed, MethodClose, ClassAlreadyCancelled, StateClosed},
		{"close reversed", sandbox.StateReversed, MethodClose, ClassAlreadyCancelled, StateReversed},
	}
	for i, tt := range tests {
		otn := "LC-" + string(rune('A'+i))
		txn := put(t, sb, otn, tt.state)
		var res CancelResult
		var err error
		if tt.method == MethodReversal {
			res, err = c.Reverse(ctx, cancelReq(otn))
		} else {
			res, err = c.Close(ctx, cancelReq(otn))
		}
		if Classify(err) != tt.class {
			t.Errorf("%s: %v (%v), want %v", tt.name, err, Classify(err), tt.class)
		}
		if res.Method != tt.method || !res.Call.Sent || res.Call.HTTPStatus != 200 || res.Call.Endpoint != string(tt.method) {
			t.Errorf("%s: call %+v", tt.name, res.Call)
		}
		if tt.class == ClassSuccess && (res.OrigSyssn != txn.Syssn || res.Syssn == "" || res.Syssn == txn.Syssn || res.TxAmt != 2500) {
			t.Errorf("%s: result %+v", tt.name, res)
		}
		q, err := c.Query(ctx, QueryRequest{OutTradeNo: otn})
		if rec, ok := q.Payment(otn); err != nil || !ok || rec.State() != tt.after {
			t.Errorf("%s: query after: %+v %v, want %v", tt.name, rec, err, tt.after)
		}
		wantAccepted := 0
		if tt.class == ClassSuccess {
			wantAccepted = 1
		}
		if n := sb.AcceptedCancels(otn); n != wantAccepted {
			t.Errorf("%s: %d accepted cancels", tt.name, n)
		}
	}
	// A second reversal of a reversed payment: already cancelled, still one accepted.
	_, err := c.Reverse(ctx, cancelReq("LC-A"))
	var re *RespError
	if !errors.As(err, &re) || re.Respcd != "1263" || sb.AcceptedCancels("LC-A") != 1 {
		t.Errorf("second reversal: %v", err)
	}
	// Unknown: 1268.
	_, err = c.Reverse(ctx, cancelReq("LC-NOBODY"))
	if Classify(err) != ClassNotFound {
		t.Errorf("unknown: %v", err)
	}
	// By syssn only.
	txn := put(t, sb, "LC-SYSSN", sandbox.StateInFlight)
	res, err := c.Reverse(ctx, CancelRequest{Syssn: txn.Syssn, TxAmt: 2500, TxDtm: seedTxDtm})
	if err != nil || res.OrigSyssn != txn.Syssn || sb.AcceptedCancels("LC-SYSSN") != 1 {
		t.Errorf("by syssn: %+v %v", res, err)
	}
	// A different merchant does not see the transaction.
	_, err = c.Reverse(ctx, CancelRequest{MchID: "OTHER", OutTradeNo: "LC-B", TxAmt: 2500, TxDtm: seedTxDtm})
	if Classify(err) != ClassNotFound {
		t.Errorf("other merchant: %v", err)
	}
}

func TestCancelRouting(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	c := testClient(t, u, nil)
	ctx := context.Background()
	for payType, want := range map[string]string{"800101": "reversal", "800108": "reversal", "800208": "reversal", "800201": "close", "800107": "close"} {
		otn := "RT-" + payType
		put(t, sb, otn, sandbox.StateInFlight)
		res, err := c.Cancel(ctx, payType, cancelReq(otn))
		if err != nil || string(res.Method) != want {
			t.Errorf("%s: %v %v", payType, res.Method, err)
		}
		if l := sb.Ledger(otn); len(l) != 1 || l[0].Endpoint != want || !l[0].Accepted {
			t.Errorf("%s: ledger %+v", payType, l)
		}
	}
	// Hong Kong-only: no call at all.
	put(t, sb, "RT-HK", sandbox.StateInFlight)
	res, err := c.Cancel(ctx, "801501", cancelReq("RT-HK"))
	if !errors.Is(err, ErrNotCancellable) || Classify(err) != ClassUnsupported || res.Call.Sent || res.Method != MethodNone {
		t.Errorf("hk: %+v %v", res, err)
	}
	if n := len(sb.Ledger("RT-HK")); n != 0 {
		t.Errorf("hk: %d calls reached the sandbox", n)
	}
	// A replaced table.
	routes, _ := ParseRoutes("800101=close")
	c2 := testClient(t, u, func(c *Config) { c.Routes = routes })
	put(t, sb, "RT-CFG", sandbox.StateInFlight)
	if res, err := c2.Cancel(ctx, "800101", cancelReq("RT-CFG")); err != nil || res.Method != MethodClose {
		t.Errorf("configured route: %v %v", res.Method, err)
	}
	if m, err := c2.Route("800101"); m != MethodClose || err != nil {
		t.Errorf("Route: %v %v", m, err)
	}
}

func TestNothingInvalidIsSent(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	c := testClient(t, u, nil)
	ctx := context.Background()
	bad := cancelReq("INV-1")
	bad.TxDtm = "2020-03-05T16:50:30Z"
	for _, f := range []func() (Call, error){
		func() (Call, error) { r, err := c.Reverse(ctx, bad); return r.Call, err },
		func() (Call, error) { r, err := c.Close(ctx, bad); return r.Call, err },
		func() (Call, error) { r, err := c.Cancel(ctx, "800101", bad); return r.Call, err },
		func() (Call, error) { r, err := c.Query(ctx, QueryRequest{}); return r.Call, err },
		func() (Call, error) {
			r, err := c.Query(ctx, QueryRequest{OutTradeNo: "INV-1", StartTime: "march"})
			return r.Call, err
		},
	} {
		call, err := f()
		var ve *ValidationError
		if !errors.As(err, &ve) || call.Sent || Classify(err) != ClassNeedsReview {
			t.Errorf("err %v, sent %v", err, call.Sent)
		}
	}
	if n := len(sb.Entries()); n != 0 {
		t.Errorf("%d invalid calls reached the sandbox", n)
	}
}

func TestSignatureChecks(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	put(t, sb, "SIG-1", sandbox.StatePaid)
	ctx := context.Background()
	sha := testClient(t, u, func(c *Config) { c.SignType = SignSHA256 })
	if _, err := sha.Query(ctx, QueryRequest{OutTradeNo: "SIG-1"}); err != nil {
		t.Errorf("sha256: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"wrong key":        func(c *Config) { c.ClientKey = NewKey("not-the-key") },
		"wrong key sha256": func(c *Config) { c.ClientKey = NewKey("not-the-key"); c.SignType = SignSHA256 },
		"wrong app code":   func(c *Config) { c.AppCode = "OTHERAPP" },
	} {
		c := testClient(t, u, edit)
		_, err := c.Query(ctx, QueryRequest{OutTradeNo: "SIG-1"})
		var re *RespError
		if !errors.As(err, &re) || re.Respcd != "1108" || Classify(err) != ClassNeedsReview {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestVerifyResponses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sb, u := startSandbox(t, func(c *sandbox.Config) { c.SignResponses = true })
	put(t, sb, "VR-1", sandbox.StatePaid)
	c := testClient(t, u, func(c *Config) { c.VerifyResponses = true })
	if _, err := c.Query(ctx, QueryRequest{OutTradeNo: "VR-1"}); err != nil {
		t.Fatalf("signed by the sandbox: %v", err)
	}
	body := `{"respcd":"0000","data":[]}`
	good := SignResponse([]byte(body), NewKey(testKey), SignMD5)
	tests := []struct {
		name   string
		header map[string]string
		verify bool
		want   error
	}{
		{"unsigned", nil, true, nil},
		{"good", map[string]string{"X-QF-SIGN": good}, true, nil},
		{"good sha256", map[string]string{"X-QF-SIGN": SignResponse([]byte(body), NewKey(testKey), SignSHA256), "X-QF-SIGNTYPE": "SHA256"}, true, nil},
		{"bad", map[string]string{"X-QF-SIGN": strings.Repeat("0", 32)}, true, ErrResponseSignature},
		{"bad, verification off", map[string]string{"X-QF-SIGN": strings.Repeat("0", 32)}, false, nil},
	}
	for _, tt := range tests {
		c := testClient(t, serveBody(t, 200, body, tt.header), func(c *Config) { c.VerifyResponses = tt.verify })
		_, err := c.Query(ctx, QueryRequest{OutTradeNo: "VR-1"})
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if tt.want != nil && Classify(err) != ClassNeedsReview {
			t.Errorf("%s: class %v", tt.name, Classify(err))
		}
	}
}

func TestScriptedFaults(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	c := testClient(t, u, nil)
	ctx := context.Background()
	script := func(otn string, b sandbox.Behavior) {
		t.Helper()
		if err := sb.Script(otn, b); err != nil {
			t.Fatal(err)
		}
	}
	// N in-progress answers before the cancel settles.
	script("SF-PROGRESS", sandbox.Behavior{InitialState: sandbox.StateInFlight, InProgress: 2})
	for i, want := range []Class{ClassInProgress, ClassInProgress, ClassSuccess, ClassAlreadyCancelled} {
		_, err := c.Reverse(ctx, cancelReq("SF-PROGRESS"))
		if Classify(err) != want {
			t.Errorf("in progress, call %d: %v, want %v", i+1, err, want)
		}
	}
	// 429 then 5xx, then an answer.
	script("SF-HTTP", sandbox.Behavior{InitialState: sandbox.StatePaid, HTTP429: 1, HTTP5xx: 1, Status5xx: 502})
	var he *HTTPError
	_, err := c.Query(ctx, QueryRequest{OutTradeNo: "SF-HTTP"})
	if !errors.As(err, &he) || he.Status != 429 || Classify(err) != ClassTransient {
		t.Errorf("429: %v", err)
	}
	_, err = c.Query(ctx, QueryRequest{OutTradeNo: "SF-HTTP"})
	if !errors.As(err, &he) || he.Status != 502 || Classify(err) != ClassTransient {
		t.Errorf("502: %v", err)
	}
	// A scripted Retry-After reaches the error, up to a one-week ceiling
	// (30 days asked).
	script("SF-WAIT", sandbox.Behavior{InitialState: sandbox.StatePaid, HTTP429: 1, RetryAfter: sandbox.Duration(30 * 24 * time.Hour)})
	if _, err := c.Query(ctx, QueryRequest{OutTradeNo: "SF-WAIT"}); !errors.As(err, &he) || he.Status != 429 || he.RetryAfter != 7*24*time.Hour {
		t.Errorf("429 with Retry-After: %v %+v", err, he)
	}
	if q, err := c.Query(ctx, QueryRequest{OutTradeNo: "SF-HTTP"}); err != nil || len(q.Data) != 1 || q.Data[0].State() != StatePaid {
		t.Errorf("third query: %+v %v", q.Data, err)
	}
	// A dropped connection before anything happened: transport error, no effect.
	script("SF-DROP", sandbox.Behavior{InitialState: sandbox.StateInFlight, Drop: 1, Endpoints: []string{"reversal"}})
	res, err := c.Reverse(ctx, cancelReq("SF-DROP"))
	var te *TransportError
	if !errors.As(err, &te) || Classify(err) != ClassTransient || !res.Call.Sent || res.Call.HTTPStatus != 0 {
		t.Errorf("drop: %v %+v", err, res.Call)
	}
	if txn, _ := sb.Get(testMchID, "SF-DROP"); txn.State != sandbox.StateInFlight {
		t.Errorf("drop: state %s", txn.State)
	}
	// Dropped after the effect: the answer is lost, the reversal happened; a query tells.
	script("SF-LOST", sandbox.Behavior{InitialState: sandbox.StateInFlight, DropAfter: 1, Endpoints: []string{"reversal"}})
	_, err = c.Reverse(ctx, cancelReq("SF-LOST"))
	if Classify(err) != ClassTransient {
		t.Errorf("drop after: %v", err)
	}
	if q, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-LOST"}); len(q.Data) != 1 || q.Data[0].State() != StateReversed {
		t.Errorf("drop after: query %+v", q.Data)
	}
	if sb.AcceptedCancels("SF-LOST") != 1 {
		t.Error("drop after: not accepted")
	}
	// The payment completes while the reversal is in flight.
	script("SF-RACE", sandbox.Behavior{InitialState: sandbox.StateInFlight, CompleteDuringCancel: true})
	if q, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-RACE"}); len(q.Data) != 1 || q.Data[0].State() != StateInFlight {
		t.Errorf("race: before %+v", q.Data)
	}
	_, err = c.Reverse(ctx, cancelReq("SF-RACE"))
	if Classify(err) != ClassPaid {
		t.Errorf("race: %v", err)
	}
	if q, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-RACE"}); len(q.Data) != 1 || q.Data[0].State() != StatePaid {
		t.Errorf("race: after %+v", q.Data)
	}
	// Settles to failed: the payment failed first.
	script("SF-FAIL", sandbox.Behavior{InitialState: sandbox.StateInFlight, InProgress: 1, SettleTo: sandbox.StateFailed, Respcd: "1145"})
	if q, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-FAIL"}); len(q.Data) != 1 || q.Data[0].Respcd != "1145" || q.Data[0].State() != StateInFlight {
		t.Errorf("settle failed: before %+v", q.Data)
	}
	_, err1 := c.Close(ctx, cancelReq("SF-FAIL"))
	_, err2 := c.Close(ctx, cancelReq("SF-FAIL"))
	if Classify(err1) != ClassInProgress || Classify(err2) != ClassPaymentFailed {
		t.Errorf("settle failed: %v / %v", err1, err2)
	}
	if q, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-FAIL"}); len(q.Data) != 1 || q.Data[0].State() != StateFailed {
		t.Errorf("settle failed: after %+v", q.Data)
	}
	// Scripted codes: a duplicate, then a risk refusal, then the real answer.
	script("SF-CODES", sandbox.Behavior{InitialState: sandbox.StateInFlight, CancelCodes: []string{"1102", "1294"},
		QueryCodes: []string{"1100", "0000", "1108"}})
	for i, want := range []Class{ClassDuplicate, ClassNeedsReview, ClassSuccess} {
		if _, err := c.Reverse(ctx, cancelReq("SF-CODES")); Classify(err) != want {
			t.Errorf("cancel codes, call %d: %v, want %v", i+1, err, want)
		}
	}
	for i, want := range []Class{ClassTransient, ClassSuccess, ClassNeedsReview, ClassSuccess} {
		if _, err := c.Query(ctx, QueryRequest{OutTradeNo: "SF-CODES"}); Classify(err) != want {
			t.Errorf("query codes, call %d: %v, want %v", i+1, err, want)
		}
	}
	// Not seen yet: two calls find nothing, then the payment is there.
	script("SF-LATE", sandbox.Behavior{InitialState: sandbox.StatePaid, UnknownFor: 2})
	q1, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-LATE"})
	_, err = c.Reverse(ctx, cancelReq("SF-LATE"))
	q3, _ := c.Query(ctx, QueryRequest{OutTradeNo: "SF-LATE"})
	if len(q1.Data) != 0 || Classify(err) != ClassNotFound || len(q3.Data) != 1 || q3.Data[0].State() != StatePaid {
		t.Errorf("unknown for 2: %v / %v / %v", q1.Data, err, q3.Data)
	}
	if err := sb.CheckInvariants(); err == nil {
		t.Error("CheckInvariants: the cancels above were not preceded by queries")
	}
}

func TestTimeoutsAndCancellation(t *testing.T) {
	t.Parallel()
	sb, u := startSandbox(t, nil)
	if err := sb.Script("TO-SLOW", sandbox.Behavior{InitialState: sandbox.StateInFlight, Latency: sandbox.Latency{Fixed: sandbox.Duration(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	c := testClient(t, u, func(c *Config) { c.Timeout = 50 * time.Millisecond })
	res, err := c.Reverse(context.Background(), cancelReq("TO-SLOW"))
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout || !errors.Is(err, context.DeadlineExceeded) || Classify(err) != ClassTransient || !res.Call.Sent {
		t.Errorf("timeout: %v", err)
	}
	if res.Call.Latency <= 0 {
		t.Errorf("latency %v", res.Call.Latency)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Query(ctx, QueryRequest{OutTradeNo: "TO-SLOW"})
	if !errors.Is(err, context.Canceled) || Classify(err) != ClassTransient {
		t.Errorf("cancelled: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 5, 16, 50, 30, 0, time.UTC)
	_, u := startSandbox(t, func(c *sandbox.Config) {
		c.RateLimit, c.PerSecond, c.PerMinute = true, 3, 5
		c.Now = func() time.Time { return now }
	})
	c := testClient(t, u, nil)
	var classes []Class
	for range 4 {
		_, err := c.Query(context.Background(), QueryRequest{OutTradeNo: "RL"})
		classes = append(classes, Classify(err))
	}
	want := []Class{ClassSuccess, ClassSuccess, ClassSuccess, ClassTransient}
	for i := range want {
		if classes[i] != want[i] {
			t.Fatalf("classes %v, want %v", classes, want)
		}
	}
	other := testClient(t, u, func(c *Config) { c.MchID = "OTHERMCH" })
	if _, err := other.Query(context.Background(), QueryRequest{OutTradeNo: "RL"}); err != nil {
		t.Errorf("the limit is per merchant: %v", err)
	}
}
