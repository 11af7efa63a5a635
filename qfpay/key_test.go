package qfpay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/reversald/reversald/qfpay/sandbox"
)

const secret = "s3cr3t-client-key-do-not-print"

func TestKeyRedacts(t *testing.T) {
	t.Parallel()
	k := NewKey(secret)
	cfg := Config{
		BaseURL: "https://test-openapi-hk.qfapi.com", AppCode: "APPCODE", ClientKey: k,
		MchID: "MNxMp11FV35qQN", Timeout: time.Second,
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	type holder struct{ key Key } // unexported field: fmt cannot call its methods
	values := map[string]any{
		"key": k, "*key": &k, "config": cfg, "*config": &cfg, "client": c, "holder": holder{k},
		"slice": []Key{k}, "map": map[string]Key{"k": k},
	}
	for name, v := range values {
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		if b, err := json.Marshal(v); err == nil {
			outs = append(outs, string(b))
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
		outs = append(outs, buf.String())
		for _, out := range outs {
			if strings.Contains(out, secret) || strings.Contains(strings.ToLower(out), strings.ToLower(fmt.Sprintf("%x", secret))) {
				t.Errorf("%s leaks the key: %s", name, out)
			}
		}
	}
	if got := fmt.Sprint(k); got != "[REDACTED]" {
		t.Errorf("Sprint(key) = %q", got)
	}
	if b, _ := json.Marshal(k); string(b) != `"[REDACTED]"` {
		t.Errorf("json(key) = %s", b)
	}
	if b, _ := k.MarshalText(); string(b) != "[REDACTED]" {
		t.Errorf("text(key) = %s", b)
	}
	if Key.String(Key{}) != "" || !(Key{}).IsZero() || NewKey("").IsZero() == false {
		t.Error("zero key")
	}
}

// No failure path puts the key (or a signature) into an error or a Call.
func TestErrorsNeverContainKey(t *testing.T) {
	t.Parallel()
	var errs []error
	for _, err := range liveErrors(t) {
		errs = append(errs, err)
	}
	sb, u := startSandbox(t, func(c *sandbox.Config) { c.SignResponses = true })
	_ = sb.Script("K-429", sandbox.Behavior{InitialState: sandbox.StateInFlight, HTTP429: 1})
	_ = sb.Script("K-PROG", sandbox.Behavior{InitialState: sandbox.StateInFlight, InProgress: 5})
	ctx := context.Background()
	good := testClient(t, u, nil)
	wrongKey := testClient(t, u, func(c *Config) { c.ClientKey = NewKey(testKey + "x") })
	verifying := testClient(t, serveBody(t, 200, `{"respcd":"0000"}`, map[string]string{"X-QF-SIGN": "00"}),
		func(c *Config) { c.VerifyResponses = true })
	bad := cancelReq("K-1")
	bad.TxAmt = -1
	var calls []any
	collect := func(v any, err error) {
		calls = append(calls, v)
		errs = append(errs, err)
	}
	collect(good.Query(ctx, QueryRequest{OutTradeNo: "K-429"}))
	collect(good.Reverse(ctx, cancelReq("K-PROG")))
	collect(good.Reverse(ctx, cancelReq("K-NONE")))
	collect(good.Reverse(ctx, bad))
	collect(good.Cancel(ctx, "801501", cancelReq("K-1")))
	collect(wrongKey.Query(ctx, QueryRequest{OutTradeNo: "K-1"}))
	collect(verifying.Query(ctx, QueryRequest{OutTradeNo: "K-1"}))
	_, cfgErr := New(Config{ClientKey: NewKey(testKey), SignType: "x"})
	errs = append(errs, cfgErr)
	_, signErr := Sign(nil, NewKey(testKey), "bogus")
	errs = append(errs, signErr)

	sig, _ := Sign(map[string]string{"out_trade_no": "K-1", "mchid": testMchID}, NewKey(testKey), SignMD5)
	for i, err := range errs {
		if err == nil {
			t.Errorf("error %d is nil", i)
			continue
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(s, testKey) || strings.Contains(s, sig) {
				t.Errorf("error leaks the key: %s", s)
			}
		}
	}
	for _, c := range calls {
		b, _ := json.Marshal(c)
		if s := fmt.Sprintf("%+v %s", c, b); strings.Contains(s, testKey) {
			t.Errorf("result leaks the key: %s", s)
		}
	}
	for _, e := range sb.Entries() {
		if _, ok := e.Fields["sign"]; ok {
			t.Errorf("ledger holds a signature: %+v", e)
		}
	}
}
