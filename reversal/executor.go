package reversal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/store"
)

// maxStepsPerClaim bounds the steps one claim chains without a backoff
// (query, cancel, confirm is three; a re-cancel after a re-check adds two).
const maxStepsPerClaim = 6

// ExecutorConfig tunes an Executor. Zero fields take the defaults.
type ExecutorConfig struct {
	Owner        string        // this instance's name, in lease owners; required
	Workers      int           // attempts driven at once; default 32
	Lease        time.Duration // claim lease; default 30s. Must exceed a gateway call's timeout by a margin.
	PollInterval time.Duration // fallback poll for due attempts; default 1s
	BackoffBase  time.Duration // first re-check delay; default 1s
	BackoffMax   time.Duration // longest re-check delay; default 5m
	StopTimeout  time.Duration // how long in-flight steps may finish on stop; default 10s
	// MerchantRate is the gateway calls per minute one merchant may get from
	// this process; default 400 (QFPay's limit). Negative switches pacing off.
	MerchantRate float64
	Policy       Policy           // used as given: the zero Policy means no re-checks (see DefaultPolicy)
	Now          func() time.Time // the clock; time.Now when nil
	Log          *slog.Logger
	Hooks        Hooks
}

// Hooks let the caller count what the executor does (metrics). Any may be nil.
type Hooks struct {
	Call    func(endpoint string, class qfpay.Class, latency time.Duration)
	Step    func(step reversald.Step, d time.Duration)
	Claimed func(n int, d time.Duration)
	Final   func(status reversald.Status) // an attempt reached its outcome (wake the publisher)
}

func (c *ExecutorConfig) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Workers == 0 {
		c.Workers = 32
	}
	def(&c.Lease, 30*time.Second)
	def(&c.PollInterval, time.Second)
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, 5*time.Minute)
	def(&c.StopTimeout, 10*time.Second)
	if c.MerchantRate == 0 {
		c.MerchantRate = 400
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with c (after defaults).
func (c ExecutorConfig) Validate() error {
	c.withDefaults()
	var errs []error
	if c.Owner == "" {
		errs = append(errs, errors.New("owner is required"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers must be at least 1, got %d", c.Workers))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"lease", c.Lease}, {"poll interval", c.PollInterval}, {"backoff base", c.BackoffBase}, {"backoff max", c.BackoffMax}, {"stop timeout", c.StopTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", d.name, d.v))
		}
	}
	if c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Errorf("backoff max %s is below backoff base %s", c.BackoffMax, c.BackoffBase))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Executor drives pending attempts to a final outcome: it claims them from
// the store, runs their steps against QFPay, and writes every step back,
// fenced by the claim's token.
//
// A cancel is only ever sent after the attempt has been written with
// CancelPending set and a fresh lease, so that whoever claims the attempt
// next (this process after a crash, or another instance after the lease runs
// out) queries before it could cancel again.
type Executor struct {
	cfg    ExecutorConfig
	store  *store.Store
	gw     *qfpay.Client
	handed chan []int64
	slots  chan struct{}
	freed  chan struct{} // a slot was freed

	mu       sync.Mutex
	limiters map[string]*rate.Limiter

	// crashAfterCancel, when set by a test, is called after a cancel answered
	// and before its write-back; returning true abandons the attempt there,
	// as a crash would.
	crashAfterCancel func(reversald.Attempt) bool
}

// NewExecutor checks cfg and builds an Executor.
func NewExecutor(cfg ExecutorConfig, st *store.Store, gw *qfpay.Client) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("executor config: %w", err)
	}
	cfg.withDefaults()
	return &Executor{
		cfg:      cfg,
		store:    st,
		gw:       gw,
		handed:   make(chan []int64, 1024),
		slots:    make(chan struct{}, cfg.Workers),
		freed:    make(chan struct{}, 1),
		limiters: make(map[string]*rate.Limiter),
	}, nil
}

// Notify hands newly recorded attempts to this executor so they start at
// once. It never blocks: if the hand-off queue is full, polling finds them.
func (e *Executor) Notify(ids []int64) {
	if len(ids) == 0 {
		return
	}
	select {
	case e.handed <- ids:
	default:
	}
}

// Run claims and drives attempts until ctx is cancelled, then lets in-flight
// steps finish within StopTimeout, releases what it still holds, and returns
// once every worker has exited. A cancelled ctx is not an error.
func (e *Executor) Run(ctx context.Context) error {
	// Workers run on a context that outlives ctx by StopTimeout, so a step
	// under way when the stop comes can finish and be written.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	stopping := make(chan struct{})

	// queue holds attempts handed over by intake, claimed by id (a primary
	// key lookup) ahead of polling, which has to walk the due index.
	var queue []int64
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		if ctx.Err() != nil {
			e.stop(stopping, &wg, cancelWork)
			return nil
		}
		polled := false
		if len(queue) == 0 {
			select {
			case <-ctx.Done():
				continue
			case ids := <-e.handed:
				queue = append(queue, ids...)
			case <-poll.C:
				polled = true
			}
		} else {
			// Polling still runs on its schedule, so that re-checks and
			// other instances' leftovers are not starved by new work.
			select {
			case <-poll.C:
				polled = true
			default:
			}
		}
		// Take whatever else was handed over meanwhile, up to a bound; what
		// does not fit is due anyway and polling finds it.
		for more := true; more && len(queue) < maxQueued; {
			select {
			case ids := <-e.handed:
				queue = append(queue, ids...)
			default:
				more = false
			}
		}
		if len(queue) > 0 {
			// Ids that are not claimed were taken by another instance, are
			// not due, or are final already: polling covers them.
			n, _, err := e.dispatch(ctx, workCtx, stopping, &wg, queue)
			if err != nil {
				// The database is failing: leave the queue to polling and
				// wait a poll interval rather than retry in a tight loop.
				e.logClaimError(ctx, err)
				queue = queue[:0]
				poll.Reset(e.cfg.PollInterval)
				continue
			}
			queue = queue[n:]
		}
		if polled {
			_, full, err := e.dispatch(ctx, workCtx, stopping, &wg, nil)
			e.logClaimError(ctx, err)
			// A full claim means more may be due: look again at once.
			if full {
				poll.Reset(0)
			} else {
				poll.Reset(e.cfg.PollInterval)
			}
		}
	}
}

func (e *Executor) logClaimError(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		e.cfg.Log.Error("claim attempts", "error", err)
	}
}

// maxQueued bounds the hand-off queue.
const maxQueued = 10_000

// stop lets in-flight steps finish within StopTimeout, then cancels them,
// and returns when every worker has exited.
func (e *Executor) stop(stopping chan struct{}, wg *sync.WaitGroup, cancelWork context.CancelFunc) {
	close(stopping)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.cfg.StopTimeout):
		e.cfg.Log.Warn("executor stop timeout: cancelling in-flight steps", "timeout", e.cfg.StopTimeout)
		cancelWork()
		<-done
	}
}

// dispatch claims attempts for the free worker slots (from ids when given,
// else the due ones) and starts a worker for each. It returns how many ids it
// used up (tried) and whether it filled every free slot.
func (e *Executor) dispatch(ctx, workCtx context.Context, stopping <-chan struct{}, wg *sync.WaitGroup, ids []int64) (int, bool, error) {
	free := e.waitSlots(ctx, len(ids))
	if free == 0 {
		return 0, true, nil
	}
	limit := free
	if ids != nil {
		limit = min(free, len(ids))
		ids = ids[:limit]
	}
	start := time.Now()
	got, err := e.store.Claim(ctx, store.Claim{Owner: e.cfg.Owner, Lease: e.cfg.Lease, Limit: limit, IDs: ids})
	if err != nil {
		return 0, false, err
	}
	if e.cfg.Hooks.Claimed != nil {
		e.cfg.Hooks.Claimed(len(got), time.Since(start))
	}
	for _, a := range got {
		e.slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer e.release()
			e.drive(workCtx, stopping, a)
		}()
	}
	return limit, len(got) == free, nil
}

// waitSlots returns the number of free worker slots. When busy, it waits a
// little for a quarter of them to free up (or as many as there are queued
// attempts), so that a claim fetches a batch rather than one row per round
// trip.
func (e *Executor) waitSlots(ctx context.Context, queued int) int {
	want := max(1, cap(e.slots)/4)
	if queued > 0 {
		want = max(1, min(want, queued))
	}
	free := cap(e.slots) - len(e.slots)
	if free >= want {
		return free
	}
	timer := time.NewTimer(5 * time.Millisecond)
	defer timer.Stop()
	for free < want {
		select {
		case <-e.freed:
		case <-timer.C:
			return cap(e.slots) - len(e.slots)
		case <-ctx.Done():
			return 0
		}
		free = cap(e.slots) - len(e.slots)
	}
	return free
}

// release frees a worker slot and tells a waiting dispatcher.
func (e *Executor) release() {
	<-e.slots
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// drive runs one claimed attempt's steps until it is final, scheduled for
// later, or its lease is lost.
func (e *Executor) drive(ctx context.Context, stopping <-chan struct{}, a reversald.Attempt) {
	log := e.cfg.Log.With("attempt", a.ID, "mchid", a.MchID, "out_trade_no", a.OutTradeNo)
	// A cancel whose answer was never written may have happened: find out.
	if a.Step == reversald.StepCancel && a.CancelPending {
		a.Step = reversald.StepQuery
	}
	var calls []reversald.Call
	made := 0
	for {
		if !e.cfg.Now().Before(a.DeadlineAt) {
			a, _ = final(a, reversald.StatusNeedsReview, "deadline passed before a final answer")
			e.write(ctx, log, a, calls, false)
			return
		}
		started := time.Now()
		step := a.Step
		var obs Observation
		switch step {
		case reversald.StepQuery, reversald.StepConfirm:
			if !e.pace(ctx, a.MchID, a.LeaseExpiresAt) {
				e.reschedule(ctx, log, a, calls, "merchant pacing: no gateway slot within the lease")
				return
			}
			res, err := e.gw.Query(ctx, e.queryRequest(a))
			obs = Observation{Query: &res, Err: err}
			calls = e.record(calls, step, res.Call, err)
		case reversald.StepCancel:
			method, err := e.gw.Route(a.PayType)
			if err != nil {
				obs = Observation{Err: err}
				break
			}
			if !e.pace(ctx, a.MchID, a.LeaseExpiresAt) {
				e.reschedule(ctx, log, a, calls, "merchant pacing: no gateway slot within the lease")
				return
			}
			// Record the intent, with a fresh lease, before the cancel leaves.
			a.CancelPending = true
			a.Method = methodOf(method)
			written := e.cfg.Now()
			if !e.write(ctx, log, a, calls, true) {
				return
			}
			a.GatewayCalls += len(calls)
			calls = nil
			a.LeaseExpiresAt = written.Add(e.cfg.Lease)
			// The lease must outlast the cancel. If the write itself was slow
			// (pool or lock waits), give the attempt back instead: whoever
			// claims it next queries first, as the intent says.
			if e.cfg.Now().After(written.Add(e.cfg.Lease / 2)) {
				// The cancel provably did not leave: no intent to keep.
				a.CancelPending, a.Step = false, reversald.StepQuery
				e.reschedule(ctx, log, a, nil, "the lease ran short before the cancel; querying first next time")
				return
			}
			var res qfpay.CancelResult
			if method == qfpay.MethodReversal {
				res, err = e.gw.Reverse(ctx, e.cancelRequest(a))
			} else {
				res, err = e.gw.Close(ctx, e.cancelRequest(a))
			}
			obs = Observation{Cancel: &res, Method: method, Err: err}
			calls = e.record(calls, step, res.Call, err)
			if e.crashAfterCancel != nil && e.crashAfterCancel(a) {
				return
			}
		default:
			obs = Observation{}
		}
		var sched Schedule
		a, sched = Decide(a, obs, e.cfg.Policy)
		if e.cfg.Hooks.Step != nil {
			e.cfg.Hooks.Step(step, time.Since(started))
		}
		switch sched {
		case Final:
			e.write(ctx, log, a, calls, false)
			return
		case Later:
			a.NextRunAt = e.cfg.Now().Add(max(e.backoff(a), retryAfter(obs.Err)))
			e.write(ctx, log, a, calls, false)
			return
		case Now:
			// However the gateway answers, one claim makes a bounded number
			// of calls; the rest waits for a backoff.
			if made++; made >= maxStepsPerClaim {
				if a.Step == reversald.StepCancel {
					a.Step = reversald.StepQuery // a cancel after a backoff needs a fresh query
				}
				a.NextRunAt = e.cfg.Now().Add(e.backoff(a))
				e.write(ctx, log, a, calls, false)
				return
			}
			select {
			case <-stopping:
				e.reschedule(ctx, log, a, calls, a.Reason)
				return
			default:
			}
			if a.Step == reversald.StepCancel {
				continue // the intent write before the cancel writes these calls
			}
			// Steps that follow each other at once share one write.
		}
	}
}

// write stores a step; keep renews the lease instead of releasing it. It
// reports whether the write landed.
func (e *Executor) write(ctx context.Context, log *slog.Logger, a reversald.Attempt, calls []reversald.Call, keep bool) bool {
	if !keep && a.Status == reversald.StatusPending && a.NextRunAt.IsZero() {
		a.NextRunAt = e.cfg.Now()
	}
	// The write must land even if the stop is under way.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	err := e.store.WriteStep(wctx, store.Step{Attempt: a, Calls: calls, KeepLease: keep, Lease: e.cfg.Lease})
	switch {
	case errors.Is(err, store.ErrFenced):
		log.Warn("lease lost: another worker owns the attempt; dropping this step", "token", a.Token)
		return false
	case err != nil:
		// The lease runs out and another claim retries from the stored state.
		log.Error("write step", "step", a.Step, "error", err)
		return false
	}
	if a.Final() {
		log.Info("attempt final", "status", a.Status, "reason", a.Reason, "gateway_calls", a.GatewayCalls+len(calls))
		if e.cfg.Hooks.Final != nil {
			e.cfg.Hooks.Final(a.Status)
		}
	}
	return true
}

// reschedule writes a's state to run again soon and releases the lease.
func (e *Executor) reschedule(ctx context.Context, log *slog.Logger, a reversald.Attempt, calls []reversald.Call, reason string) {
	a.Reason = reason
	a.NextRunAt = e.cfg.Now().Add(e.cfg.BackoffBase)
	e.write(ctx, log, a, calls, false)
}

func (e *Executor) record(calls []reversald.Call, step reversald.Step, c qfpay.Call, err error) []reversald.Call {
	if e.cfg.Hooks.Call != nil && c.Sent {
		e.cfg.Hooks.Call(c.Endpoint, qfpay.Classify(err), c.Latency)
	}
	if !c.Sent {
		return calls
	}
	sc := reversald.Call{
		Step: step, Endpoint: c.Endpoint, Request: c.Request, HTTPStatus: c.HTTPStatus,
		Respcd: c.Respcd, Response: c.Raw, Latency: c.Latency, At: e.cfg.Now(),
	}
	if err != nil {
		sc.Error = err.Error()
	}
	return append(calls, sc)
}

// pace waits for the merchant's gateway budget, but never past the lease.
func (e *Executor) pace(ctx context.Context, mchid string, leaseUntil time.Time) bool {
	if e.cfg.MerchantRate < 0 {
		return true
	}
	e.mu.Lock()
	l, ok := e.limiters[mchid]
	if !ok {
		// A burst of a quarter of the per-minute budget (QFPay allows 100/s
		// within its 400/min).
		l = rate.NewLimiter(rate.Limit(e.cfg.MerchantRate/60), max(1, int(e.cfg.MerchantRate/4)))
		e.limiters[mchid] = l
	}
	e.mu.Unlock()
	// Leave the lease a margin for the call itself.
	wait := leaseUntil.Sub(e.cfg.Now()) - e.cfg.Lease/2
	if wait <= 0 {
		return l.Allow()
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return l.Wait(wctx) == nil
}

// backoff grows with the calls the attempt has made, with equal jitter in
// [d/2, d], so that a burst of re-checks spreads out.
func (e *Executor) backoff(a reversald.Attempt) time.Duration {
	n := min(a.GatewayCalls+a.Rechecks, 16)
	d := min(e.cfg.BackoffBase<<n, e.cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// retryAfter is how long QFPay asked us to wait (HTTP 429 Retry-After), if
// it did.
func retryAfter(err error) time.Duration {
	var h *qfpay.HTTPError
	if errors.As(err, &h) {
		return h.RetryAfter
	}
	return 0
}

func (e *Executor) queryRequest(a reversald.Attempt) qfpay.QueryRequest {
	q := qfpay.QueryRequest{MchID: a.MchID, OutTradeNo: a.OutTradeNo}
	// The query range defaults to the current month; look around txdtm so an
	// attempt that crosses a month boundary still finds its payment.
	if t, err := time.Parse(time.DateTime, a.TxDtm); err == nil {
		q.StartTime = t.Add(-24 * time.Hour).Format(time.DateTime)
		q.EndTime = t.Add(48 * time.Hour).Format(time.DateTime)
	}
	return q
}

func (e *Executor) cancelRequest(a reversald.Attempt) qfpay.CancelRequest {
	return qfpay.CancelRequest{MchID: a.MchID, Syssn: a.Syssn, OutTradeNo: a.OutTradeNo, TxAmt: a.TxAmt, TxDtm: a.TxDtm, Udid: a.Udid}
}
