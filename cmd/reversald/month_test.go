package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestDaemonQueriesEachMonthAndCapsRetryAfter drives the daemon against the
// harness's sandbox, which enforces QFPay's one-month query ranges (the
// sandbox's default), with two payments:
//
//   - MONTH: the POS says 23:50 on 31 October, QFPay stamped it 00:05 on
//     1 November, and it is still in flight. The daemon must look in both
//     months, find it in November and reverse it, and no query it sends may
//     cross a month (QFPay would answer 1150: the ledger would say bad_range).
//   - WAIT429: the first query answers HTTP 429 with Retry-After: 30 days.
//     The daemon caps the wait at EXECUTOR_BACKOFF_MAX (400ms here), so the
//     outcome arrives within the test's timeout.
func TestDaemonQueriesEachMonthAndCapsRetryAfter(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	const txdtm = "2026-10-31 23:50:00"
	for _, txn := range []sandbox.Txn{
		{OutTradeNo: "MONTH", State: sandbox.StateInFlight, TxDtm: txdtm, SysDtm: "2026-11-01 00:05:00"},
		{OutTradeNo: "WAIT429", State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{
			HTTP429: 1, RetryAfter: sandbox.Duration(30 * 24 * time.Hour), Endpoints: []string{"query"},
		}},
	} {
		txn.MchID, txn.TxAmt, txn.PayType = e2eMchID, 2500, "800101"
		if err := s.sb.Put(txn); err != nil {
			t.Fatal(err)
		}
	}
	out := s.collect(s.results)
	s.runInProcess(nil)
	s.produce(s.in, ev{id: "e-MONTH", otn: "MONTH", txdtm: txdtm}.message(), ev{id: "e-WAIT429", otn: "WAIT429"}.message())
	got := out.waitOutcomes(t, 2, 60*time.Second) // a 30-day Retry-After must be capped
	for _, otn := range []string{"MONTH", "WAIT429"} {
		if o := got["e-"+otn]; o.Status != "reversed" || o.QFPayTxAmt != 2500 {
			t.Errorf("%s: status %s (%s), QFPay's txamt %d; want reversed, 2500", otn, o.Status, o.Reason, o.QFPayTxAmt)
		}
		if n, acc := s.sb.CancelCalls(otn), s.sb.AcceptedCancels(otn); n != 1 || acc != 1 {
			t.Errorf("%s: %d cancels sent, %d accepted; want 1, 1", otn, n, acc)
		}
	}

	// Every query stayed inside one calendar month, and MONTH's were in
	// October and November.
	months := map[string]bool{}
	for _, e := range s.sb.Entries() {
		if e.Fault == "bad_range" || e.Respcd == "1150" {
			t.Errorf("the sandbox refused a query range: %+v", e)
		}
		if e.Endpoint != "query" {
			continue
		}
		from, to := e.Fields["start_time"], e.Fields["end_time"]
		if len(from) < 7 || len(to) < 7 || from[:7] != to[:7] {
			t.Errorf("%s: query range %q..%q is not inside one month", e.OutTradeNo, from, to)
			continue
		}
		if e.OutTradeNo == "MONTH" {
			months[from[:7]] = true
		}
	}
	if !months["2026-10"] || !months["2026-11"] || len(months) != 2 {
		t.Errorf("MONTH was queried in %v, want 2026-10 and 2026-11", months)
	}
	if l := s.sb.Ledger("WAIT429"); len(l) == 0 || l[0].Endpoint != "query" || l[0].HTTPStatus != 429 || l[0].Fault != "429" {
		t.Errorf("WAIT429: first call %+v, want the scripted 429", l)
	}
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}

	// The checks above are not vacuous: this sandbox does refuse a range
	// across a month, and the ledger says so. The client refuses to build
	// such a query, so the probe signs and posts the form by hand.
	params := map[string]string{"mchid": e2eMchID, "out_trade_no": "PROBE", "start_time": "2026-10-31 00:00:00", "end_time": "2026-11-01 00:00:00"}
	sig, err := qfpay.Sign(params, qfpay.NewKey(secretKey), qfpay.SignMD5)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.sbURL+qfpay.PathQuery, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-QF-APPCODE", e2eAppCode)
	req.Header.Set("X-QF-SIGN", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `"1150"`) {
		t.Errorf("a query across October and November answered %s, want respcd 1150 (is the harness's sandbox strict?)", body)
	}
	if l := s.sb.Ledger("PROBE"); len(l) != 1 || l[0].Fault != "bad_range" {
		t.Errorf("probe ledger %+v, want one bad_range entry", l)
	}
}
