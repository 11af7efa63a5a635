package qfpay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRecordState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		respcd, cancel string
		want           RecordState
	}{
		{"0000", "0", StatePaid},
		{"0000", "", StatePaid},
		{"0000", "1", StateReversed}, // a reversed record may still show 0000
		{"1143", "1", StateReversed},
		{"0000", "2", StateClosed},
		{"0000", "3", StateRefunded},
		{"0000", "5", StatePartiallyRefunded}, // part of the money is still captured
		{"0000", "4", StateUnknown},           // undocumented
		{"0000", "9", StateUnknown},
		{"1143", "0", StateInFlight},
		{"1145", "0", StateInFlight},
		{"1298", "", StateInFlight},
		// Waiting is not failing: every wait, network, unknown-result and
		// try-later code, and any code not documented as a failure, is in flight.
		{"1161", "0", StateInFlight},
		{"1295", "0", StateInFlight},
		{"1296", "0", StateInFlight},
		{"1297", "0", StateInFlight},
		{"1100", "0", StateInFlight},
		{"1205", "0", StateInFlight},
		{"1252", "0", StateInFlight},
		{"1254", "0", StateInFlight},
		{"2999", "0", StateInFlight},
		{"1102", "0", StateInFlight},
		{"7777", "0", StateInFlight},
		// Documented failed payments: nothing was charged.
		{"1147", "0", StateFailed},
		{"1181", "0", StateFailed},
		{"1201", "0", StateFailed},
		{"1202", "0", StateFailed},
		{"1203", "0", StateFailed},
		{"1204", "0", StateFailed},
		{"1212", "0", StateFailed},
		{"2005", "0", StateFailed},
		{"", "0", StateUnknown},
	}
	for _, tt := range tests {
		if got := (Record{Respcd: tt.respcd, Cancel: tt.cancel}).State(); got != tt.want {
			t.Errorf("State(respcd %q, cancel %q) = %v, want %v", tt.respcd, tt.cancel, got, tt.want)
		}
	}
	if StateInFlight.String() != "in_flight" || RecordState(99).String() != "RecordState(99)" {
		t.Error("RecordState.String")
	}
}

// serveBody answers every call with status and body.
func serveBody(t *testing.T, status int, body string, header map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDecodeLenient(t *testing.T) {
	t.Parallel()
	body := `{"respcd":"0000","resperr":"","respmsg":"ok","page":"1","page_size":10,"data":[
	 {"respcd":"0000","cancel":0,"syssn":20200305066100020000976392,"out_trade_no":"A","pay_type":800101,
	  "order_type":"payment","txamt":2500,"txcurrcd":"HKD","txdtm":"2020-03-05 16:50:30","sysdtm":"2020-03-05 16:50:31","errmsg":null,
	  "chnlsn":"x1","nested":{"a":[1,2]},"flag":true},
	 {"respcd":"0000","cancel":"3","syssn":"2","out_trade_no":"R","order_type":"refund","origssn":"20200305066100020000976392","txamt":"2500.0"},
	 {"respcd":"0000","cancel":"0","out_trade_no":"B","txamt":"12abc"}]}`
	c := testClient(t, serveBody(t, 200, body, nil), nil)
	res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: "A,R,B"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Page != 1 || res.PageSize != 10 || len(res.Data) != 3 || res.Call.Respmsg != "ok" {
		t.Fatalf("res = %+v", res)
	}
	a := res.Data[0]
	if a.Cancel != "0" || a.Syssn != "20200305066100020000976392" || a.PayType != "800101" || a.TxAmt != 2500 ||
		a.ErrMsg != "" || a.State() != StatePaid || string(a.Extra["nested"]) != `{"a":[1,2]}` ||
		string(a.Extra["chnlsn"]) != `"x1"` || string(a.Extra["flag"]) != "true" || len(a.Extra) != 3 {
		t.Errorf("record A = %+v", a)
	}
	r := res.Data[1]
	if r.OrderType != "refund" || r.OrigSsn != a.Syssn || r.TxAmt != 2500 || r.IsPayment() || r.State() != StateRefunded {
		t.Errorf("record R = %+v", r)
	}
	if p, ok := res.Payment("R"); ok {
		t.Errorf("Payment(R) = %+v: a refund record is not the payment", p)
	}
	if p, ok := res.Payment("A"); !ok || p.Syssn != a.Syssn {
		t.Errorf("Payment(A) = %+v, %v", p, ok)
	}
	b := res.Data[2]
	if b.TxAmt != 0 || string(b.Extra["txamt"]) != `"12abc"` {
		t.Errorf("record B = %+v: an unreadable amount stays in Extra", b)
	}
}

func TestDecodeCancelExtras(t *testing.T) {
	t.Parallel()
	body := `{"respcd":"0000","resperr":"","respmsg":"","orig_syssn":"1","syssn":"2","out_trade_no":"A","txamt":"2500",
	  "txcurrcd":"HKD","txdtm":"2020-03-05 16:50:30","sysdtm":"2020-03-05 16:51:00","chnlsn":"c","surcharge_fee":0,
	  "surcharge_rate":"0.0","chnlsn2":"","cardcd":"","udid":"pos"}`
	c := testClient(t, serveBody(t, 200, body, nil), nil)
	res, err := c.Reverse(context.Background(), validCancel())
	if err != nil {
		t.Fatal(err)
	}
	if res.OrigSyssn != "1" || res.Syssn != "2" || res.TxAmt != 2500 || res.ChnlSn != "c" || res.Method != MethodReversal ||
		len(res.Extra) != 5 || string(res.Extra["surcharge_fee"]) != "0" {
		t.Errorf("res = %+v", res)
	}
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		status     int
		want       Class
	}{
		{"html", "<html>bad gateway</html>", 200, ClassTransient},
		{"array", `[1,2]`, 200, ClassTransient},
		{"no respcd", `{"resperr":"x"}`, 200, ClassTransient},
		{"data not array", `{"respcd":"0000","data":{"x":1}}`, 200, ClassTransient},
		{"record not object", `{"respcd":"0000","data":[1]}`, 200, ClassTransient},
		{"huge", `{"respcd":"0000","x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 200, ClassTransient},
		{"respcd number", `{"respcd":1108}`, 200, ClassNeedsReview},
		{"400 with json", `{"respcd":"1104","resperr":"bad"}`, 400, ClassNeedsReview},
		{"502 html", "bad gateway", 502, ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testClient(t, serveBody(t, tt.status, tt.body, nil), nil)
			res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: "A"})
			if err == nil || Classify(err) != tt.want {
				t.Fatalf("err = %v (%v), want class %v", err, Classify(err), tt.want)
			}
			if len(res.Call.Raw) > MaxRawBytes || res.Call.HTTPStatus != tt.status || !res.Call.Sent {
				t.Errorf("call = status %d, raw %d bytes, sent %v", res.Call.HTTPStatus, len(res.Call.Raw), res.Call.Sent)
			}
		})
	}
}

func TestRawBounded(t *testing.T) {
	t.Parallel()
	body := `{"respcd":"0000","data":[],"pad":"` + strings.Repeat("x", 3*MaxRawBytes) + `"}`
	c := testClient(t, serveBody(t, 200, body, nil), nil)
	res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Call.Raw) != MaxRawBytes || string(res.Call.Raw) != body[:MaxRawBytes] {
		t.Errorf("raw = %d bytes", len(res.Call.Raw))
	}
	var he *HTTPError
	c = testClient(t, serveBody(t, 429, "slow down", map[string]string{"Retry-After": "3"}), nil)
	_, err = c.Query(context.Background(), QueryRequest{OutTradeNo: "A"})
	if !errors.As(err, &he) || he.Status != 429 || he.RetryAfter.Seconds() != 3 || Classify(err) != ClassTransient {
		t.Errorf("429: %v", err)
	}
}

func TestNoRedirects(t *testing.T) {
	t.Parallel()
	hits := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.Method + " " + r.URL.Path
		if r.URL.Path == PathReversal {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			return
		}
		_, _ = w.Write([]byte(`{"respcd":"0000"}`))
	}))
	t.Cleanup(srv.Close)
	c := testClient(t, srv.URL, nil)
	res, err := c.Reverse(context.Background(), validCancel())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTemporaryRedirect || Classify(err) != ClassNeedsReview || res.Call.HTTPStatus != 307 {
		t.Fatalf("redirect: %v", err)
	}
	close(hits)
	var got []string
	for h := range hits {
		got = append(got, h)
	}
	if len(got) != 1 {
		t.Fatalf("requests %v: the redirect was followed", got)
	}
}

// FuzzDecodeRecord: any bytes decode without a panic; a decoded record keeps
// every field it did not name in Extra, and its State is always defined.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"respcd":"0000","cancel":0,"txamt":"2500","pay_type":800101,"x":[1]}`))
	f.Add([]byte(`{"respcd":"1143","cancel":"1","txamt":2.5e3,"origssn":null}`))
	f.Add([]byte(`{"respcd":{"a":1}}`))
	f.Add([]byte(`{"txamt":"99999999999999999999"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("error %v is not ErrMalformedResponse", err)
			}
			return
		}
		if s := r.State(); s < StateUnknown || s > StateFailed {
			t.Fatalf("state %d", s)
		}
		for _, known := range []string{"respcd", "cancel", "syssn", "out_trade_no", "pay_type", "order_type", "origssn", "txcurrcd", "txdtm", "sysdtm", "errmsg"} {
			if _, ok := r.Extra[known]; ok {
				t.Fatalf("%s decoded and kept in Extra", known)
			}
		}
	})
}

// TestDecodeGarbledPayType: a pay_type QFPay sends that is not 6 digits is
// caught here, kept only in Extra, and read as unknown, so it can never reach
// the store and wedge an attempt in a failing write.
func TestDecodeGarbledPayType(t *testing.T) {
	t.Parallel()
	for _, pt := range []string{`"80010"`, `"8001011"`, `"80A101"`, `"` + strings.Repeat("9", 500) + `"`, `800101.5`} {
		r, err := decodeRecord([]byte(`{"respcd":"0000","cancel":"0","pay_type":` + pt + `}`))
		if err != nil {
			t.Fatalf("pay_type %s: %v", pt, err)
		}
		if r.PayType != "" {
			t.Errorf("pay_type %s read as %q, want unknown", pt, r.PayType)
		}
		if _, ok := r.Extra["pay_type"]; !ok {
			t.Errorf("pay_type %s not kept in Extra", pt)
		}
	}
	r, err := decodeRecord([]byte(`{"respcd":"0000","pay_type":800208}`))
	if err != nil || r.PayType != "800208" {
		t.Errorf("a numeric 6-digit pay_type: %q, %v", r.PayType, err)
	}
}

// FuzzUnquote: unquote gives what json.Unmarshal gives for every JSON string
// token json.Unmarshal accepts, escaped or not, valid UTF-8 or not.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`""`, `"abc"`, `"a\"b"`, `"\u00e9\n"`, `"é"`, `"\ud800"`, `"\\"`, `"x\/y"`, "\"\xff\xfe\"", "\"a\x80\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &want) != nil {
			return // not a JSON string token: decodeObject never hands one over
		}
		got, err := unquote(raw)
		if err != nil || got != want {
			t.Fatalf("unquote(%q) = %q, %v; json.Unmarshal gives %q", raw, got, err, want)
		}
	})
}
