package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunServesSignedCalls(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"rules":[{"prefix":"DEMO-","initial_state":"in_flight"}],
		"txns":[{"out_trade_no":"PAID-1","state":"paid","txamt":100}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"QFPAY_SANDBOX_KEY": "k3y", "QFPAY_SANDBOX_RULES": rules}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-appcode", "APP1"}, lookup, pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	_, after, _ := strings.Cut(line, "listening on ")
	base, _, _ := strings.Cut(after, " ")
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.Contains(line, "1 rules, 1 txns") || strings.Contains(line, "k3y") {
		t.Fatalf("banner %q", line)
	}

	call := func(path, fields, sign string) string {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(fields))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
		req.Header.Set("X-QF-APPCODE", "APP1")
		req.Header.Set("X-QF-SIGN", sign)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	sign := func(canonical string) string {
		sum := md5.Sum([]byte(canonical + "k3y"))
		return strings.ToUpper(hex.EncodeToString(sum[:]))
	}
	if got := call("/trade/v1/query", "out_trade_no=PAID-1", sign("out_trade_no=PAID-1")); !strings.Contains(got, `"respcd":"0000"`) || !strings.Contains(got, `"out_trade_no":"PAID-1"`) {
		t.Errorf("query: %s", got)
	}
	canon := "out_trade_no=DEMO-1&txamt=100&txdtm=" + time.Now().Format("2006-01-02 15:04:05")
	form := url.Values{}
	for _, kv := range strings.Split(canon, "&") {
		k, v, _ := strings.Cut(kv, "=")
		form.Set(k, v)
	}
	if got := call("/trade/v1/reversal", form.Encode(), sign(canon)); !strings.Contains(got, `"respcd":"0000"`) {
		t.Errorf("reversal: %s", got)
	}
	if got := call("/trade/v1/query", "out_trade_no=PAID-1", "WRONG"); !strings.Contains(got, `"respcd":"1108"`) {
		t.Errorf("bad signature: %s", got)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestRunRejectsBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "rules.json")
	_ = os.WriteFile(bad, []byte(`[{"prefix":"X","initial_stat":"paid"}]`), 0o600)
	lookup := func(string) (string, bool) { return "", false }
	if err := run(context.Background(), []string{"-rules", bad, "-addr", "127.0.0.1:0"}, lookup, io.Discard); err == nil || !strings.Contains(err.Error(), "initial_stat") {
		t.Errorf("typo in rules: %v", err)
	}
	if err := run(context.Background(), []string{"-appcode", "", "-addr", "127.0.0.1:0"}, lookup, io.Discard); err == nil {
		t.Error("empty app code accepted")
	}
}

// serve runs the command with env and args until the test ends, and returns
// its base URL.
func serve(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), lookup, pw)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancel")
		}
		http.DefaultClient.CloseIdleConnections()
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	_, after, _ := strings.Cut(line, "listening on ")
	base, _, _ := strings.Cut(after, " ")
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("banner %q", line)
	}
	return base
}

// do sends body to target; signKey, if set, signs the form fields of body
// with MD5 for app code APP1. It returns the status and the answer.
func do(t *testing.T, method, target, body, signKey string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, target, strings.NewReader(body))
	if signKey != "" {
		form, err := url.ParseQuery(body)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for k := range form {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		for _, k := range names {
			parts = append(parts, k+"="+form.Get(k))
		}
		sum := md5.Sum([]byte(strings.Join(parts, "&") + signKey))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
		req.Header.Set("X-QF-APPCODE", "APP1")
		req.Header.Set("X-QF-SIGN", strings.ToUpper(hex.EncodeToString(sum[:])))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunScriptsAStrictQFPay scripts, over the admin API, a cancel that QFPay
// applies but answers 9999 and that queries no longer find, and checks the
// one-month query range: on by default, off with QFPAY_SANDBOX_LOOSE_RANGE.
func TestRunScriptsAStrictQFPay(t *testing.T) {
	base := serve(t, map[string]string{"QFPAY_SANDBOX_KEY": "k3y"}, "-appcode", "APP1")
	if st, b := do(t, "POST", base+"/_sandbox/rules", `{"out_trade_no":"LOST-1","initial_state":"in_flight","cancel_effect_codes":["9999"],"hide_after_cancel":true,"record_txamt":2400}`, ""); st != 200 {
		t.Fatalf("rule: %d %s", st, b)
	}
	if st, b := do(t, "POST", base+"/_sandbox/rules", `{"prefix":"X","cancel_effect_codes":["99"]}`, ""); st != 400 || !strings.Contains(b, "99") {
		t.Errorf("bad rule: %d %s", st, b)
	}
	txdtm := url.QueryEscape(time.Now().Format("2006-01-02 15:04:05"))
	steps := []struct {
		path, body, want string
	}{
		{"/trade/v1/query", "out_trade_no=LOST-1", `"txamt":2400`},
		{"/trade/v1/reversal", "out_trade_no=LOST-1&txamt=2500&txdtm=" + txdtm, `"respcd":"9999"`},
		{"/trade/v1/query", "out_trade_no=LOST-1", `"data":[]`},
		{"/trade/v1/query", "out_trade_no=LOST-1&start_time=2026-11-30+00%3A00%3A00&end_time=2026-12-01+00%3A00%3A00", `"respcd":"1150"`},
	}
	for _, st := range steps {
		if code, b := do(t, "POST", base+st.path, st.body, "k3y"); code != 200 || !strings.Contains(b, st.want) {
			t.Errorf("%s %s: %d %s, want %s", st.path, st.body, code, b, st.want)
		}
	}
	// The reversal took effect although it answered 9999.
	if _, b := do(t, "GET", base+"/_sandbox/ledger?out_trade_no=LOST-1", "", ""); !strings.Contains(b, `"accepted":true`) || !strings.Contains(b, `"state":"reversed"`) {
		t.Errorf("ledger: %s", b)
	}
	loose := serve(t, map[string]string{"QFPAY_SANDBOX_KEY": "k3y", "QFPAY_SANDBOX_LOOSE_RANGE": "true"}, "-appcode", "APP1")
	if code, b := do(t, "POST", loose+steps[3].path, steps[3].body, "k3y"); code != 200 || !strings.Contains(b, `"respcd":"0000"`) {
		t.Errorf("loose range: %d %s, want 0000", code, b)
	}
}
