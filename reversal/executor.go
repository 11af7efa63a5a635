package reversal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/store"
)

// ExecutorConfig tunes an Executor. Zero fields take the defaults.
type ExecutorConfig struct {
	Owner        string        // this instance's name, in lease owners; required
	Workers      int           // attempts driven at once; default 32
	Lease        time.Duration // claim lease; default 30s. Must exceed a gateway call's timeout by a margin.
	PollInterval time.Duration // fallback poll for due attempts; default 1s
	BackoffBase  time.Duration // first re-check delay; default 1s
	BackoffMax   time.Duration // longest re-check delay; default 5m
	StopTimeout  time.Duration // how long in-flight steps may finish on stop; default 10s
	// MerchantRate is the gateway calls per minute one merchant may get;
	// default 400 (QFPay's limit). Negative switches pacing off.
	MerchantRate float64
	// MerchantRatePerSec is QFPay's other limit, calls per second; default
	// 100. The calls are spaced to fit both.
	MerchantRatePerSec float64
	// MerchantBurst is how many of one merchant's calls may go back to back
	// (spaced by the per-second limit); default 16. The minute limit holds
	// over any window: the sustained rate is MerchantRate less the burst.
	MerchantBurst int
	// SharedPacing keeps each merchant's budget in PostgreSQL, shared by
	// every instance (and claims only attempts whose merchant has budget
	// now); false keeps it in this process.
	SharedPacing bool
	// TxZone is the UTC offset of txdtm, sent to QFPay's query as txzone
	// (like "+0800"); empty leaves QFPay's default, UTC+8.
	TxZone string
	// Policy bounds the decision table. Re-checks are used as given (zero
	// means none; see DefaultPolicy); a zero CancelMaxCalls or
	// MaxGatewayCalls takes DefaultPolicy's.
	Policy Policy
	Now    func() time.Time // the clock; time.Now when nil
	Logger *slog.Logger     // nil: slog.Default()
	// OnFinal receives the status of each attempt this executor decided,
	// after the write that made it final committed (its outcomes are in the
	// outbox): the publisher's fast path. It must not block for long. May be
	// nil.
	OnFinal func(status reversald.Status)
	Hooks   ExecutorHooks
}

// ExecutorHooks let the caller count what the executor does (metrics). Any
// may be nil. They are called from the worker goroutines: they must be safe
// for concurrent use, cheap, and must not block.
type ExecutorHooks struct {
	Call    func(endpoint string, class qfpay.Class, latency time.Duration)
	Step    func(step reversald.Step, d time.Duration)
	Claimed func(n int, d time.Duration)
	Final   func(status reversald.Status) // an attempt reached its outcome
	// PaceWait: a call waited d for its merchant's slot; ok is false when
	// it got none within its lease.
	PaceWait func(d time.Duration, ok bool)
	// Paused: QFPay answered 429 (or Retry-After) for mchid: every call of
	// that merchant is held back for d.
	Paused func(mchid string, d time.Duration)
	// Drive: a claimed attempt is about to be driven. The context it
	// returns is the one its steps and writes run under; the func it returns
	// is called with the attempt as it stands when the drive returns.
	// StepStart: likewise around one step (its gateway calls and the writes
	// within it); its func receives the attempt as Decide left it and the
	// step's error. Tracing sets them (Traced); nil leaves the context as it
	// is, at the cost of a call.
	Drive     func(ctx context.Context, a reversald.Attempt) (context.Context, func(a reversald.Attempt))
	StepStart func(ctx context.Context, a reversald.Attempt) (context.Context, func(a reversald.Attempt, err error))
	// StepWrite: likewise around one write of the attempt. Writes of
	// several workers share a batch (one round trip, one commit); its func
	// receives the context the batch's statements ran under (its first
	// waiter's), how many steps the batch wrote, and this write's result.
	StepWrite func(ctx context.Context, a reversald.Attempt) (context.Context, func(leader context.Context, batch int, err error))
}

func endNothing(reversald.Attempt)                {}
func endStepNothing(reversald.Attempt, error)     {}
func endWriteNothing(context.Context, int, error) {}

func (h ExecutorHooks) withDefaults() ExecutorHooks {
	if h.Call == nil {
		h.Call = func(string, qfpay.Class, time.Duration) {}
	}
	if h.Step == nil {
		h.Step = func(reversald.Step, time.Duration) {}
	}
	if h.Claimed == nil {
		h.Claimed = func(int, time.Duration) {}
	}
	if h.Final == nil {
		h.Final = func(reversald.Status) {}
	}
	if h.PaceWait == nil {
		h.PaceWait = func(time.Duration, bool) {}
	}
	if h.Paused == nil {
		h.Paused = func(string, time.Duration) {}
	}
	if h.Drive == nil {
		h.Drive = func(ctx context.Context, _ reversald.Attempt) (context.Context, func(reversald.Attempt)) {
			return ctx, endNothing
		}
	}
	if h.StepStart == nil {
		h.StepStart = func(ctx context.Context, _ reversald.Attempt) (context.Context, func(reversald.Attempt, error)) {
			return ctx, endStepNothing
		}
	}
	if h.StepWrite == nil {
		h.StepWrite = func(ctx context.Context, _ reversald.Attempt) (context.Context, func(context.Context, int, error)) {
			return ctx, endWriteNothing
		}
	}
	return h
}

func (c ExecutorConfig) withDefaults() ExecutorConfig {
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
	if c.MerchantRatePerSec == 0 {
		c.MerchantRatePerSec = 100
	}
	if c.MerchantBurst == 0 {
		c.MerchantBurst = 16
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Policy.CancelMaxCalls == 0 {
		c.Policy.CancelMaxCalls = DefaultPolicy.CancelMaxCalls
	}
	if c.Policy.MaxGatewayCalls == 0 {
		c.Policy.MaxGatewayCalls = DefaultPolicy.MaxGatewayCalls
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.OnFinal == nil {
		c.OnFinal = func(reversald.Status) {}
	}
	c.Hooks = c.Hooks.withDefaults()
	return c
}

// Validate reports every problem with c (after defaults).
func (c ExecutorConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Owner == "" {
		errs = append(errs, errors.New("owner is required"))
	}
	if c.MerchantRate > 0 && (c.MerchantBurst < 1 || float64(c.MerchantBurst) >= c.MerchantRate) {
		errs = append(errs, fmt.Errorf("merchant burst must be at least 1 and below the per-minute rate %v, got %d", c.MerchantRate, c.MerchantBurst))
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
	gw     *qfpay.Directory // the account that signs for each merchant
	handed chan []int64
	slots  chan struct{} // places held: attempts claimed and not yet done
	freed  chan struct{} // a place was freed

	pacer Pacer
	steps stepWrites // the step writes of every worker, grouped

	// crashAfterCancel, when set by a test, is called after a cancel answered
	// and before its write-back; returning true abandons the attempt there,
	// as a crash would.
	crashAfterCancel func(reversald.Attempt) bool
}

// NewExecutor checks cfg and builds an Executor. gw resolves each attempt's
// mchid to the QFPay account that signs its calls, at every call, so that a
// credential reload (gw.Replace) applies from the next call on.
func NewExecutor(cfg ExecutorConfig, st *store.Store, gw *qfpay.Directory) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("executor config: %w", err)
	}
	cfg = cfg.withDefaults()
	var p Pacer = unpaced{}
	if cfg.MerchantRate > 0 {
		if cfg.SharedPacing {
			p = newSharedPacer(st, cfg.Hooks.PaceWait)
		} else {
			p = newLocalPacer(cfg.Hooks.PaceWait)
		}
	}
	return &Executor{
		cfg:    cfg,
		store:  st,
		gw:     gw,
		pacer:  p,
		steps:  stepWrites{write: st.WriteSteps},
		handed: make(chan []int64, 1024),
		slots:  make(chan struct{}, cfg.Workers+claimAhead(cfg.Workers)),
		freed:  make(chan struct{}, 1),
	}, nil
}
