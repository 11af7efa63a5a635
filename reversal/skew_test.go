package reversal

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// TestLeasesIgnoreInstanceClocks runs two executors on one database, one of
// them with its clock ten minutes behind, both pacing one merchant hard
// enough that calls wait for their slot. Leases are set and compared on
// PostgreSQL's clock and each instance measures what is left of its lease on
// its own clock, from before it claimed: the slow clock never makes an
// instance wait on the pacer past its lease, so no attempt is worked by two
// instances (no gateway call is fenced out), and its re-checks are not
// pushed ten minutes away.
func TestLeasesIgnoreInstanceClocks(t *testing.T) {
	t.Parallel()
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: testAppCode, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	dbURL := storetest.URL(t)
	open := func() *store.Store {
		st, err := store.Open(context.Background(), dbURL, store.Options{}) // PostgreSQL's clock
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	client := func() *qfpay.Directory { return oneCredential(t, url, testKey) }
	const n = 12
	var events []reversald.Event
	for i := range n {
		otn := fmt.Sprintf("SKEW%03d", i)
		txdtm := time.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout)
		if err := sb.Put(sandbox.Txn{MchID: testMchID, OutTradeNo: otn, State: sandbox.StateInFlight, TxAmt: 2500, TxDtm: txdtm}); err != nil {
			t.Fatal(err)
		}
		events = append(events, reversald.Event{EventID: "ev-" + otn, MchID: testMchID, OutTradeNo: otn, TxAmt: 2500, TxCurrCd: "HKD", TxDtm: txdtm, PayType: "800101"})
	}
	st := open()
	res, err := st.Intake(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	start := func(owner string, now func() time.Time) *Executor {
		return startExecutor(t, ExecutorConfig{
			Owner: owner, Workers: 8, Lease: time.Second, PollInterval: 10 * time.Millisecond,
			BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			MerchantRate: 40, // per instance: a burst of 10, then one call every 1.5s
			Policy:       Policy{NotFoundRechecks: 1, ConfirmRechecks: 2}, Now: now,
			Logger: slog.New(slog.DiscardHandler),
		}, open(), client())
	}
	a := start("on-time", time.Now)
	b := start("ten-minutes-slow", func() time.Time { return time.Now().Add(-10 * time.Minute) })
	a.Notify(res.NewAttempts[:n/2])
	b.Notify(res.NewAttempts[n/2:])

	all := waitAllFinal(t, st, 90*time.Second)
	fenced := 0
	for _, at := range all {
		if at.Status != reversald.StatusReversed {
			t.Errorf("%s: %s (%s), want reversed", at.OutTradeNo, at.Status, at.Reason)
		}
		h, err := st.History(context.Background(), at.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range h.Calls {
			if c.FencedOut {
				fenced++
			}
		}
		if c := sb.AcceptedCancels(at.OutTradeNo); c != 1 {
			t.Errorf("%s: %d accepted cancels, want 1", at.OutTradeNo, c)
		}
	}
	if fenced != 0 {
		t.Errorf("%d gateway calls made by an instance that had lost its lease", fenced)
	}
	if err := sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}
