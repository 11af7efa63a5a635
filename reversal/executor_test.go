package reversal

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/testclock"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

const (
	testAppCode = "APPCODE0001"
	testKey     = "test-client-key-9f8e7d"
	testMchID   = "MNxMp11FV35qQN"
)

type rig struct {
	t     *testing.T
	clock *testclock.Clock
	sb    *sandbox.Sandbox
	url   string
	dbURL string
	store *store.Store
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clk := testclock.New(time.Date(2026, 11, 22, 10, 0, 0, 0, time.Local))
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: testAppCode, Key: testKey, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	dbURL := storetest.URL(t)
	r := &rig{t: t, clock: clk, sb: sb, url: url, dbURL: dbURL}
	r.store = r.openStore()
	return r
}

func (r *rig) openStore() *store.Store {
	st, err := store.Open(context.Background(), r.dbURL, store.Options{Now: r.clock.Now})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(st.Close)
	return st
}

// client is one credential, signing with key, the default for every merchant.
func (r *rig) client(key string) *qfpay.Directory { return oneCredential(r.t, r.url, key) }

// run starts an executor and stops it when the test ends.
func (r *rig) run(st *store.Store, gw *qfpay.Directory, mod func(*ExecutorConfig)) *Executor {
	r.t.Helper()
	cfg := ExecutorConfig{
		Owner: fmt.Sprintf("test-%p", gw), Workers: 16, PollInterval: 5 * time.Millisecond,
		BackoffBase: time.Second, BackoffMax: time.Minute, MerchantRate: -1, Now: r.clock.Now,
		Policy: Policy{NotFoundRechecks: 2, ConfirmRechecks: 2},
	}
	if mod != nil {
		mod(&cfg)
	}
	return startExecutor(r.t, cfg, st, gw)
}

// startExecutor builds an executor and runs it until the test ends; the run
// must end without an error.
func startExecutor(tb testing.TB, cfg ExecutorConfig, st *store.Store, gw *qfpay.Directory) *Executor {
	tb.Helper()
	ex, err := NewExecutor(cfg, st, gw)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("executor %s: %v", cfg.Owner, err)
		}
	})
	return ex
}

// waitAllFinal polls, on the real clock, until every attempt is final, and
// fails with the pending ones after timeout.
func waitAllFinal(tb testing.TB, st *store.Store, timeout time.Duration) []reversald.Attempt {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		all, err := st.List(context.Background(), "", 100000)
		if err != nil {
			tb.Fatal(err)
		}
		var pending []reversald.Attempt
		for _, a := range all {
			if !a.Final() {
				pending = append(pending, a)
			}
		}
		if len(pending) == 0 {
			return all
		}
		if time.Now().After(deadline) {
			for _, a := range pending {
				tb.Logf("pending: %+v", a)
			}
			tb.Fatalf("%d of %d attempts still pending after %s", len(pending), len(all), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) intake(events ...reversald.Event) store.IntakeResult {
	r.t.Helper()
	res, err := r.store.Intake(context.Background(), events)
	if err != nil {
		r.t.Fatal(err)
	}
	return res
}

func (r *rig) event(otn, payType string) reversald.Event {
	return reversald.Event{EventID: "ev-" + otn, MchID: testMchID, OutTradeNo: otn, TxAmt: 2500, TxCurrCd: "HKD",
		TxDtm: r.clock.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout), PayType: payType}
}

// waitFinal polls until every attempt is final, moving the clock on so that
// re-checks fall due, and fails after a bounded number of rounds.
func (r *rig) waitFinal(step time.Duration) []reversald.Attempt {
	r.t.Helper()
	// A bound on liveness, not a speed check: generous, so that a machine
	// busy with other work does not fail a test of outcomes.
	const settle = 5 * time.Minute
	deadline := time.Now().Add(settle)
	for {
		all, err := r.store.List(context.Background(), "", 100000)
		if err != nil {
			r.t.Fatal(err)
		}
		pending, leased := 0, 0
		for _, a := range all {
			if !a.Final() {
				pending++
				if a.LeaseOwner != "" || !a.NextRunAt.After(r.clock.Now()) {
					leased++ // being worked, or due and about to be
				}
			}
		}
		if pending == 0 {
			return all
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d attempts still pending after %s", pending, len(all), settle)
		}
		// Move time on only while every pending attempt waits for a later
		// run, so that leases run out only where a test means them to.
		if leased == 0 {
			r.clock.Advance(step)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExecutorDecisionTableEndToEnd drives one attempt per row of the
// decision table through the executor, the client and the sandbox.
func TestExecutorDecisionTableEndToEnd(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	type row struct {
		otn, payType string
		seed         *sandbox.Txn
		script       *sandbox.Behavior
		status       reversald.Status
		method       reversald.Method
		cancels      int // accepted cancels in the ledger
	}
	txn := func(state sandbox.State) *sandbox.Txn { return &sandbox.Txn{State: state} }
	rows := []row{
		{otn: "PAID", seed: txn(sandbox.StatePaid), status: "paid", method: "none"},
		{otn: "INFLIGHT-REV", seed: txn(sandbox.StateInFlight), status: "reversed", method: "reversal", cancels: 1},
		{otn: "INFLIGHT-CLOSE", payType: "800201", seed: &sandbox.Txn{State: sandbox.StateInFlight, PayType: "800201"}, status: "closed", method: "close", cancels: 1},
		{otn: "ALREADY-REV", seed: txn(sandbox.StateReversed), status: "reversed", method: "none"},
		{otn: "ALREADY-CLOSED", seed: txn(sandbox.StateClosed), status: "closed", method: "none"},
		{otn: "REFUNDED", seed: txn(sandbox.StateRefunded), status: "refunded", method: "none"},
		{otn: "FAILED", seed: txn(sandbox.StateFailed), status: "not_paid", method: "none"},
		{otn: "UNKNOWN", status: "not_found", method: "reversal"},
		{otn: "HK-ONLY", payType: "801501", seed: &sandbox.Txn{State: sandbox.StateInFlight, PayType: "801501"}, status: "unsupported", method: "none"},
		{otn: "COMPLETES", seed: txn(sandbox.StateInFlight), script: &sandbox.Behavior{CompleteDuringCancel: true}, status: "paid", method: "reversal"},
		{otn: "SLOW-CANCEL", seed: txn(sandbox.StateInFlight), script: &sandbox.Behavior{InProgress: 1}, status: "reversed", method: "reversal", cancels: 1},
		{otn: "LOST-ANSWER", seed: txn(sandbox.StateInFlight), script: &sandbox.Behavior{DropAfter: 1, Endpoints: []string{"reversal"}}, status: "reversed", method: "reversal", cancels: 1},
		{otn: "DROPPED", seed: txn(sandbox.StateInFlight), script: &sandbox.Behavior{Drop: 1, Endpoints: []string{"reversal"}}, status: "reversed", method: "reversal", cancels: 1},
		{otn: "RATE-LIMITED", seed: txn(sandbox.StateInFlight), script: &sandbox.Behavior{HTTP429: 2}, status: "reversed", method: "reversal", cancels: 1},
		{otn: "GATEWAY-5XX", seed: txn(sandbox.StateInFlight), script: &sandbox.Behavior{HTTP5xx: 2}, status: "reversed", method: "reversal", cancels: 1},
	}
	var events []reversald.Event
	for _, rw := range rows {
		pt := rw.payType
		if pt == "" {
			pt = "800101"
		}
		ev := r.event(rw.otn, pt)
		events = append(events, ev)
		if rw.seed != nil {
			s := *rw.seed
			s.MchID, s.OutTradeNo, s.TxAmt, s.TxDtm = testMchID, rw.otn, ev.TxAmt, ev.TxDtm
			if s.PayType == "" {
				s.PayType = pt
			}
			if err := r.sb.Put(s); err != nil {
				t.Fatal(err)
			}
		}
		if rw.script != nil {
			if err := r.sb.Script(rw.otn, *rw.script); err != nil {
				t.Fatal(err)
			}
		}
	}
	ex := r.run(r.store, r.client(testKey), nil)
	ex.Notify(r.intake(events...).NewAttempts)
	r.waitFinal(2 * time.Minute)

	for _, rw := range rows {
		a, err := r.store.Find(context.Background(), testMchID, rw.otn)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != rw.status || a.Method != rw.method {
			t.Errorf("%s: status %s method %s (%s), want %s %s", rw.otn, a.Status, a.Method, a.Reason, rw.status, rw.method)
		}
		if got := r.sb.AcceptedCancels(rw.otn); got != rw.cancels {
			t.Errorf("%s: %d accepted cancels, want %d", rw.otn, got, rw.cancels)
		}
		h, err := r.store.History(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Calls) != a.GatewayCalls || len(h.Outcomes) != 1 || h.Outcomes[0].Status != rw.status {
			t.Errorf("%s: %d audit rows for %d calls, outcomes %+v", rw.otn, len(h.Calls), a.GatewayCalls, h.Outcomes)
		}
		for _, c := range h.Calls {
			if strings.Contains(fmt.Sprint(c.Request), testKey) || strings.Contains(string(c.Response), testKey) || strings.Contains(c.Error, testKey) {
				t.Errorf("%s: audit row holds the client key", rw.otn)
			}
		}
	}
	if n := r.sb.Calls("HK-ONLY", "reversal") + r.sb.Calls("HK-ONLY", "close"); n != 0 {
		t.Errorf("HK-ONLY: %d cancels sent, want none (no cancel route)", n)
	}
	if err := r.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

func TestExecutorNeedsReviewOnBadSignatureAndDeadline(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	if err := r.sb.Put(sandbox.Txn{MchID: testMchID, OutTradeNo: "BADSIG", State: sandbox.StateInFlight}); err != nil {
		t.Fatal(err)
	}
	ex := r.run(r.store, r.client("not-the-key"), nil)
	ex.Notify(r.intake(r.event("BADSIG", "800101")).NewAttempts)
	r.waitFinal(time.Second)
	a, _ := r.store.Find(context.Background(), testMchID, "BADSIG")
	if a.Status != reversald.StatusNeedsReview || a.Respcd != "1108" || r.sb.Calls("BADSIG", "") != 1 {
		t.Errorf("bad signature: %s respcd %s after %d calls (%s); want needs_review 1108 after 1 call", a.Status, a.Respcd, r.sb.Calls("BADSIG", ""), a.Reason)
	}

	// A gateway that never answers in time: the deadline ends it.
	r2 := newRig(t)
	if err := r2.sb.Script("STUCK", sandbox.Behavior{HTTP5xx: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	ex2 := r2.run(r2.store, r2.client(testKey), nil)
	ex2.Notify(r2.intake(r2.event("STUCK", "800101")).NewAttempts)
	r2.waitFinal(time.Hour)
	a, _ = r2.store.Find(context.Background(), testMchID, "STUCK")
	if a.Status != reversald.StatusNeedsReview || !strings.Contains(a.Reason, "deadline") || !strings.Contains(a.Reason, "record") {
		t.Errorf("stuck: %s (%s), want needs_review for the deadline, carrying the last record", a.Status, a.Reason)
	}
}

// TestExecutorCrashAfterCancel kills a worker between the cancel's answer and
// its write-back. After the lease runs out another executor takes over: it
// must query first, and QFPay must see one cancel.
func TestExecutorCrashAfterCancel(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	if err := r.sb.Put(sandbox.Txn{MchID: testMchID, OutTradeNo: "CRASH", State: sandbox.StateInFlight}); err != nil {
		t.Fatal(err)
	}
	crashed := make(chan struct{})
	var once sync.Once
	first := r.run(r.store, r.client(testKey), func(c *ExecutorConfig) { c.Owner = "first" })
	first.crashAfterCancel = func(reversald.Attempt) bool {
		once.Do(func() { close(crashed) })
		return true
	}
	first.Notify(r.intake(r.event("CRASH", "800101")).NewAttempts)
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("the cancel was never sent")
	}
	a, _ := r.store.Find(context.Background(), testMchID, "CRASH")
	if !a.CancelPending || a.Step != reversald.StepCancel || a.LeaseOwner != "first" {
		t.Fatalf("before takeover: %+v; want the cancel intent recorded under first's lease", a)
	}

	// The second instance, on its own pool, waits out the lease.
	r.run(r.openStore(), r.client(testKey), func(c *ExecutorConfig) { c.Owner = "second" })
	r.clock.Advance(31 * time.Second)
	all := r.waitFinal(time.Second)
	if all[0].Status != reversald.StatusReversed {
		t.Fatalf("after takeover: %s (%s), want reversed", all[0].Status, all[0].Reason)
	}
	led := r.sb.Ledger("CRASH")
	var eps []string
	for _, e := range led {
		eps = append(eps, e.Endpoint)
	}
	// query (first), reversal (first, answered, not written), then the
	// takeover's query that finds it reversed.
	if len(eps) < 3 || eps[0] != "query" || eps[1] != "reversal" || eps[2] != "query" {
		t.Fatalf("ledger = %v, want query, reversal, query...", eps)
	}
	if n := r.sb.AcceptedCancels("CRASH"); n != 1 || r.sb.Calls("CRASH", "reversal") != 1 {
		t.Fatalf("%d accepted of %d reversal calls, want exactly one", n, r.sb.Calls("CRASH", "reversal"))
	}
	if err := r.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

// TestTwoExecutorsShareWork runs two executors, on separate pools as two
// instances would be, over the same 1,000 attempts with a mix of outcomes.
func TestTwoExecutorsShareWork(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const n = 1000
	mix := []sandbox.Txn{
		{State: sandbox.StateInFlight},
		{State: sandbox.StatePaid},
		{State: sandbox.StateInFlight, PayType: "800201"},
		{State: sandbox.StateFailed},
		{State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{DropAfter: 1, Endpoints: []string{"reversal"}}},
		{State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{InProgress: 1}},
		{State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{CompleteDuringCancel: true}},
		{State: sandbox.StateInFlight, Behavior: &sandbox.Behavior{HTTP5xx: 1}},
		{State: sandbox.StateReversed},
	}
	events := make([]reversald.Event, 0, n)
	for i := range n {
		otn := fmt.Sprintf("MIX%05d", i)
		tx := mix[i%len(mix)]
		ev := r.event(otn, "800101")
		if tx.PayType != "" {
			ev.PayType = tx.PayType
		}
		tx.MchID, tx.OutTradeNo, tx.TxAmt, tx.TxDtm = testMchID, otn, ev.TxAmt, ev.TxDtm
		if err := r.sb.Put(tx); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	var finalA, finalB atomic.Int64
	a := r.run(r.store, r.client(testKey), func(c *ExecutorConfig) {
		c.Owner, c.Hooks.Final = "a", func(reversald.Status) { finalA.Add(1) }
	})
	b := r.run(r.openStore(), r.client(testKey), func(c *ExecutorConfig) {
		c.Owner, c.Hooks.Final = "b", func(reversald.Status) { finalB.Add(1) }
	})
	res := r.intake(events...)
	a.Notify(res.NewAttempts[:n/2])
	b.Notify(res.NewAttempts[n/2:])
	all := r.waitFinal(2 * time.Second)
	if len(all) != n {
		t.Fatalf("%d attempts, want %d", len(all), n)
	}
	byStatus := map[reversald.Status]int{}
	for _, at := range all {
		byStatus[at.Status]++
	}
	if byStatus[reversald.StatusNeedsReview] != 0 {
		t.Errorf("needs_review: %d", byStatus[reversald.StatusNeedsReview])
	}
	t.Logf("outcomes: %v", byStatus)
	for _, at := range all {
		if c := r.sb.AcceptedCancels(at.OutTradeNo); c > 1 {
			t.Errorf("%s cancelled %d times", at.OutTradeNo, c)
		}
	}
	if err := r.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
	for _, at := range all {
		h, err := r.store.History(context.Background(), at.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Outcomes) != 1 {
			t.Errorf("%s: %d outcomes, want 1", at.OutTradeNo, len(h.Outcomes))
		}
	}
	// Both instances did work, and every attempt was finished exactly once.
	if finalA.Load() == 0 || finalB.Load() == 0 || finalA.Load()+finalB.Load() != n {
		t.Errorf("finished by a: %d, by b: %d; want both > 0 and %d in all", finalA.Load(), finalB.Load(), n)
	}
}

// countingHandler counts log records whose message is msg.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestExecutorBacksOffWhenTheDatabaseFails: with PostgreSQL unreachable and
// attempts handed over, the executor retries at its poll interval, not in a
// tight loop.
func TestExecutorBacksOffWhenTheDatabaseFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dead := r.openStore()
	dead.Close()
	var errs atomic.Int64
	ex := r.run(dead, r.client(testKey), func(c *ExecutorConfig) {
		c.PollInterval = 100 * time.Millisecond
		c.Logger = slog.New(countingHandler{msg: "claim attempts", n: &errs})
	})
	ex.Notify([]int64{1, 2, 3})
	time.Sleep(500 * time.Millisecond) // the bound being measured is a rate over time
	// At a 100ms poll interval that is about 5; a tight loop made 281,612.
	// The bound is loose so that a loaded machine cannot make it flaky.
	if n := errs.Load(); n == 0 || n > 100 {
		t.Errorf("%d failed claims in 500ms at a 100ms poll interval; want a handful", n)
	}
}

// TestExecutorKeepsAZeroPolicy: NOT_FOUND_RECHECKS=0 and CONFIRM_RECHECKS=0
// are valid settings and must not be replaced by the defaults.
func TestExecutorKeepsAZeroPolicy(t *testing.T) {
	t.Parallel()
	ex, err := NewExecutor(ExecutorConfig{Owner: "x"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := ex.cfg.Policy; p.NotFoundRechecks != 0 || p.ConfirmRechecks != 0 {
		t.Errorf("policy = %+v, want the zero re-checks as given", p)
	}
	if p := ex.cfg.Policy; p.CancelMaxCalls != DefaultPolicy.CancelMaxCalls || p.MaxGatewayCalls != DefaultPolicy.MaxGatewayCalls {
		t.Errorf("policy = %+v, want the default bounds", p)
	}
}

// TestStopHandsBackAttemptsClaimedAhead: attempts claimed ahead of a free
// worker that no worker started are handed back at the stop (due at once,
// no lease), not left leased until their lease runs out; the ones being
// driven finish their step.
func TestStopHandsBackAttemptsClaimedAhead(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const workers, n = 8, 20 // claimAhead(8) = 2
	// Long enough that the test looks and stops before a worker frees up,
	// even on a loaded machine.
	ids := r.slowAttempts("AHEAD", n, 5*time.Second)
	cfg := ExecutorConfig{
		Owner: "ahead", Workers: workers, PollInterval: 5 * time.Millisecond, StopTimeout: 20 * time.Second,
		MerchantRate: -1, Now: r.clock.Now, Policy: Policy{NotFoundRechecks: 2, ConfirmRechecks: 2},
	}
	ex, err := NewExecutor(cfg, r.store, oneCredentialTimeout(t, r.url, testKey, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	ex.Notify(ids)

	r.waitHeld("ahead", workers, claimAhead(workers))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all, err := r.store.List(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	queried, untouched := 0, 0
	for _, a := range all {
		if a.LeaseOwner != "" || !a.LeaseExpiresAt.IsZero() {
			t.Errorf("%s still leased by %q until %s after the stop", a.OutTradeNo, a.LeaseOwner, a.LeaseExpiresAt)
		}
		if a.NextRunAt.After(r.clock.Now().Add(cfg.withDefaults().BackoffMax)) {
			t.Errorf("%s due at %s, want within the backoff", a.OutTradeNo, a.NextRunAt)
		}
		switch r.sb.Calls(a.OutTradeNo, "query") {
		case 0:
			untouched++
			if a.GatewayCalls != 0 || a.NextRunAt.After(r.clock.Now()) {
				t.Errorf("unstarted %s: %d gateway calls, due %s; want none, due now (%s)", a.OutTradeNo, a.GatewayCalls, a.NextRunAt, r.clock.Now())
			}
		default:
			queried++
		}
	}
	if queried != workers || untouched != n-workers {
		t.Errorf("%d attempts queried and %d untouched, want %d and %d", queried, untouched, workers, n-workers)
	}
}

// TestClaimedAheadThatWaitedIsClaimedAgain: an attempt claimed ahead that
// waits for a worker longer than maxAheadWait (every worker stuck on slow
// calls; here the clock jumps two-thirds of the lease) is handed back and
// claimed again with a whole lease, not driven on the rest of the old one:
// its first gateway call is made under a later claim's token.
func TestClaimedAheadThatWaitedIsClaimedAgain(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const workers, n = 4, 5 // claimAhead(4) = 1
	ids := r.slowAttempts("SHORT", n, 3*time.Second)
	ex := r.run(r.store, oneCredentialTimeout(t, r.url, testKey, 10*time.Second), func(c *ExecutorConfig) { c.Owner, c.Workers, c.Lease = "short", workers, 30*time.Second })
	ex.Notify(ids)
	ahead := r.waitHeld("short", workers, 1)[0]
	r.clock.Advance(20 * time.Second) // the waiting attempt's lease is now two-thirds spent
	for i := 0; ; i++ {
		h, err := r.store.History(context.Background(), ahead.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Calls) > 0 {
			if c := h.Calls[0]; c.Token <= ahead.Token {
				t.Fatalf("the attempt claimed ahead (token %d) made its first call under token %d: driven on its short lease", ahead.Token, c.Token)
			}
			break
		}
		if i == 3000 { // a worker frees after 3 s, and its call takes 3 s more
			t.Fatalf("after 30 s the attempt claimed ahead has made no call")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slowAttempts records n attempts (prefix-00, prefix-01, ...) whose every
// gateway answer takes latency, to hold the workers that drive them, and
// returns their ids. The client must wait longer (oneCredentialTimeout).
func (r *rig) slowAttempts(prefix string, n int, latency time.Duration) []int64 {
	r.t.Helper()
	var ids []int64
	for i := range n {
		otn := fmt.Sprintf("%s-%02d", prefix, i)
		if err := r.sb.Script(otn, sandbox.Behavior{Latency: sandbox.Latency{Fixed: sandbox.Duration(latency)}}); err != nil {
			r.t.Fatal(err)
		}
		ids = append(ids, r.intake(r.event(otn, "800101")).NewAttempts...)
	}
	return ids
}

// waitHeld waits (up to 5 s) until owner holds driving attempts with a call
// under way at the sandbox and ahead more claimed and not started, and
// returns the latter.
func (r *rig) waitHeld(owner string, driving, ahead int) []reversald.Attempt {
	r.t.Helper()
	for i := 0; ; i++ {
		all, err := r.store.List(context.Background(), "", 1000)
		if err != nil {
			r.t.Fatal(err)
		}
		d, waiting := 0, []reversald.Attempt{}
		for _, a := range all {
			switch {
			case a.LeaseOwner != owner:
			case r.sb.InFlight(a.OutTradeNo) > 0:
				d++
			default:
				waiting = append(waiting, a)
			}
		}
		if d == driving && len(waiting) == ahead {
			return waiting
		}
		if i == 500 {
			r.t.Fatalf("after 5 s: %d attempts driven and %d claimed ahead by %s, want %d and %d", d, len(waiting), owner, driving, ahead)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
