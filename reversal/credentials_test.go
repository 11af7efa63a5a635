package reversal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// oneCredential is a directory of one credential, signing with key at url,
// the default for every merchant: what the tests without several credentials
// give the executor.
func oneCredential(tb testing.TB, url, key string) *qfpay.Directory {
	tb.Helper()
	return oneCredentialTimeout(tb, url, key, 2*time.Second)
}

// oneCredentialTimeout is oneCredential with a call timeout of its own.
func oneCredentialTimeout(tb testing.TB, url, key string, timeout time.Duration) *qfpay.Directory {
	tb.Helper()
	d, err := qfpay.NewDirectory([]qfpay.Credential{{Name: "default", Default: true,
		Config: qfpay.Config{BaseURL: url, AppCode: testAppCode, ClientKey: qfpay.NewKey(key), Timeout: timeout}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.CloseIdleConnections)
	return d
}

// TestExecutorSignsWithEachMerchantsCredential: two credentials (one by
// list, one by pattern, no default) through the executor, the client and a
// sandbox that accepts both: every call of a merchant is signed with its own
// credential, the audit names that app code, a merchant with no credential
// ends needs_review without any call, and a key replaced in the directory is
// used from the next call on.
func TestExecutorSignsWithEachMerchantsCredential(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	if err := r.sb.SetCredentials([]sandbox.Credential{
		{AppCode: "APPA", Key: "key-a-1", Label: "a1"},
		{AppCode: "APPB", Key: "key-b", Label: "b"},
	}); err != nil {
		t.Fatal(err)
	}
	account := func(name, appCode, key string, edit func(*qfpay.Credential)) qfpay.Credential {
		c := qfpay.Credential{Name: name, Config: qfpay.Config{BaseURL: r.url, AppCode: appCode, ClientKey: qfpay.NewKey(key), Timeout: 2 * time.Second}}
		edit(&c)
		return c
	}
	set := func(keyA string) []qfpay.Credential {
		return []qfpay.Credential{
			account("a", "APPA", keyA, func(c *qfpay.Credential) { c.MchIDs = []string{"MA1", "MA2"} }),
			account("b", "APPB", "key-b", func(c *qfpay.Credential) { c.Patterns = []string{"MB*"} }),
		}
	}
	gw, err := qfpay.NewDirectory(set("key-a-1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.CloseIdleConnections)

	event := func(mchid, otn string, state sandbox.State) reversald.Event {
		ev := r.event(otn, "800101")
		ev.MchID, ev.EventID = mchid, "ev-"+mchid+"-"+otn
		if state != "" {
			if err := r.sb.Put(sandbox.Txn{MchID: mchid, OutTradeNo: otn, State: state, TxAmt: ev.TxAmt, TxDtm: ev.TxDtm, PayType: "800101"}); err != nil {
				t.Fatal(err)
			}
		}
		return ev
	}
	ex := r.run(r.store, gw, nil)
	ex.Notify(r.intake(
		event("MA1", "A1", sandbox.StateInFlight), event("MA2", "A2", sandbox.StatePaid),
		event("MB1", "B1", sandbox.StateInFlight), event("MB22", "B2", sandbox.StatePaid),
		event("MX", "X1", sandbox.StateInFlight),
	).NewAttempts)
	r.waitFinal(time.Second)

	want := map[string]struct {
		mchid, appCode string
		status         reversald.Status
	}{
		"A1": {"MA1", "APPA", "reversed"}, "A2": {"MA2", "APPA", "paid"},
		"B1": {"MB1", "APPB", "reversed"}, "B2": {"MB22", "APPB", "paid"},
	}
	ctx := context.Background()
	for otn, w := range want {
		a, err := r.store.Find(ctx, w.mchid, otn)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != w.status {
			t.Errorf("%s: %s (%s), want %s", otn, a.Status, a.Reason, w.status)
		}
		for _, e := range r.sb.Ledger(otn) {
			if e.AppCode != w.appCode || e.Fault != "" {
				t.Errorf("%s: call %d signed %s (fault %q), want %s", otn, e.Seq, e.AppCode, e.Fault, w.appCode)
			}
		}
		h, err := r.store.History(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Calls) == 0 {
			t.Errorf("%s: no audit rows", otn)
		}
		for _, c := range h.Calls {
			if c.AppCode != w.appCode {
				t.Errorf("%s: audit row names app code %q, want %s", otn, c.AppCode, w.appCode)
			}
		}
	}
	x, err := r.store.Find(ctx, "MX", "X1")
	if err != nil {
		t.Fatal(err)
	}
	if x.Status != reversald.StatusNeedsReview || !strings.HasPrefix(x.Reason, "no QFPay credential for merchant MX") || x.GatewayCalls != 0 || r.sb.Calls("X1", "") != 0 {
		t.Errorf("unknown merchant: %s %q after %d calls (sandbox %d); want needs_review, no call", x.Status, x.Reason, x.GatewayCalls, r.sb.Calls("X1", ""))
	}

	// Rotate a's key: the directory first, then QFPay accepts the new key
	// only. Later calls sign with it.
	if err := gw.Replace(set("key-a-2")); err != nil {
		t.Fatal(err)
	}
	if err := r.sb.SetCredentials([]sandbox.Credential{
		{AppCode: "APPA", Key: "key-a-2", Label: "a2"},
		{AppCode: "APPB", Key: "key-b", Label: "b"},
	}); err != nil {
		t.Fatal(err)
	}
	ex.Notify(r.intake(event("MA1", "A3", sandbox.StateInFlight)).NewAttempts)
	r.waitFinal(time.Second)
	if a, _ := r.store.Find(ctx, "MA1", "A3"); a.Status != reversald.StatusReversed {
		t.Errorf("after the rotation: %s (%s), want reversed", a.Status, a.Reason)
	}
	for _, e := range r.sb.Ledger("A3") {
		if e.AppCode != "APPA" || e.KeyLabel != "a2" {
			t.Errorf("A3: call %d signed %s with key %q, want APPA with a2", e.Seq, e.AppCode, e.KeyLabel)
		}
	}
	if err := r.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}
