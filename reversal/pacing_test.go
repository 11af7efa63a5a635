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

// TestPacingIsSharedByTheGroup runs three executors, each with its own pool
// and client as three instances would, against a sandbox that enforces
// QFPay's per-merchant limits (scaled down: 600/min, 20/s). Two hot merchants
// have a backlog, six cold ones an attempt each. With the budget shared in
// PostgreSQL, QFPay never answers 429 and every cold attempt is decided
// before the hot backlogs drain; with a budget per instance (the control),
// three instances overrun the limit.
func TestPacingIsSharedByTheGroup(t *testing.T) {
	t.Parallel()
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		tooMany, coldLast, hotLast := runPacedGroup(t, true)
		if tooMany != 0 {
			t.Errorf("QFPay answered 429 %d times with the budget shared", tooMany)
		}
		if !coldLast.Before(hotLast) {
			t.Errorf("the last cold attempt was decided at %s, after the hot backlog drained at %s", coldLast, hotLast)
		}
	})
	t.Run("instance (control)", func(t *testing.T) {
		t.Parallel()
		if tooMany, _, _ := runPacedGroup(t, false); tooMany == 0 {
			t.Error("three instances pacing alone never met a 429: the test cannot tell shared pacing from none")
		}
	})
}

func runPacedGroup(t *testing.T, shared bool) (tooMany int, coldLast, hotLast time.Time) {
	t.Helper()
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: testAppCode, Key: testKey, RateLimit: true, PerMinute: 600, PerSecond: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	dbURL := storetest.URL(t)
	open := func() *store.Store {
		st, err := store.Open(context.Background(), dbURL, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	var events []reversald.Event
	add := func(mchid, otn string) {
		txdtm := time.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout)
		if err := sb.Put(sandbox.Txn{MchID: mchid, OutTradeNo: otn, State: sandbox.StateInFlight, TxAmt: 2500, TxDtm: txdtm}); err != nil {
			t.Fatal(err)
		}
		events = append(events, reversald.Event{EventID: "ev-" + otn, MchID: mchid, OutTradeNo: otn, TxAmt: 2500, TxCurrCd: "HKD", TxDtm: txdtm, PayType: "800101"})
	}
	// 24 payments a hot merchant (about 72 calls): enough that three
	// instances pacing alone overrun the per-second limit in any alignment
	// of the sandbox's one-second windows. With 12, their first bursts could
	// straddle a window boundary and fit under the limit in both halves, and
	// the control then saw no 429 (a CI run finished it in 0.62 s).
	for h := range 2 {
		for i := range 24 {
			add(fmt.Sprintf("HOT%d", h), fmt.Sprintf("H%d-%02d", h, i))
		}
	}
	for c := range 6 {
		add(fmt.Sprintf("COLD%d", c), fmt.Sprintf("C%d", c))
	}
	st := open()
	res, err := st.Intake(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	var exs []*Executor
	for i := range 3 {
		gw := oneCredential(t, url, testKey)
		ex := startExecutor(t, ExecutorConfig{
			Owner: fmt.Sprintf("instance-%d", i), Workers: 8, Lease: 5 * time.Second, PollInterval: 10 * time.Millisecond,
			BackoffBase: 50 * time.Millisecond, BackoffMax: time.Second,
			MerchantRate: 600, MerchantRatePerSec: 20, SharedPacing: shared,
			Policy: Policy{NotFoundRechecks: 1, ConfirmRechecks: 3}, Logger: slog.New(slog.DiscardHandler),
		}, open(), gw)
		exs = append(exs, ex)
	}
	for i, id := range res.NewAttempts {
		exs[i%3].Notify([]int64{id})
	}
	for _, a := range waitAllFinal(t, st, 5*time.Minute) { // liveness, not speed
		if shared && a.Status != reversald.StatusReversed {
			t.Errorf("%s: %s (%s)", a.OutTradeNo, a.Status, a.Reason)
		}
		if a.OutTradeNo[0] == 'C' && a.DecidedAt.After(coldLast) {
			coldLast = a.DecidedAt
		}
		if a.OutTradeNo[0] == 'H' && a.DecidedAt.After(hotLast) {
			hotLast = a.DecidedAt
		}
	}
	for _, e := range sb.Entries() {
		if e.HTTPStatus == 429 {
			tooMany++
		}
	}
	if err := sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
	return tooMany, coldLast, hotLast
}

// TestMerchantPaceOverrides: a credential's rates replace the cluster-wide
// ones for its merchants, and the burst never reaches the per-minute rate.
func TestMerchantPaceOverrides(t *testing.T) {
	t.Parallel()
	ex, err := NewExecutor(ExecutorConfig{Owner: "x", MerchantRate: 400, MerchantRatePerSec: 100, MerchantBurst: 16}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	def := ex.merchantPace(qfpay.Account{})
	if def != merchantPace(400, 100, 16) {
		t.Errorf("default pace %+v", def)
	}
	slow := ex.merchantPace(qfpay.Account{RatePerMin: 60, RatePerSec: 2})
	if want := merchantPace(60, 2, 16); slow != want || slow.Interval <= def.Interval || slow.MinGap <= def.MinGap {
		t.Errorf("override pace %+v, want %+v, slower than the default %+v", slow, want, def)
	}
	if tiny := ex.merchantPace(qfpay.Account{RatePerMin: 10}); tiny.Burst >= 10 {
		t.Errorf("a 10/min override keeps a burst of %d", tiny.Burst)
	}
	// The default sustained rate is 95% of QFPay's 400/min, within its limits.
	perMin := float64(time.Minute) / float64(def.Interval)
	if perMin < 0.94*400 || perMin > 400-16 {
		t.Errorf("sustained %.1f calls/min", perMin)
	}
}
