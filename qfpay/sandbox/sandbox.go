package sandbox

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

const (
	epQuery    = "query"
	epReversal = "reversal"
	epClose    = "close"

	dtmLayout      = "2006-01-02 15:04:05"
	defaultPayType = "800101"
	defaultCurr    = "HKD"
	maxForm        = 64 << 10
	nShards        = 64
)

// Config configures a Sandbox.
type Config struct {
	// AppCode expected in X-QF-APPCODE.
	AppCode string `json:"app_code"`
	// Key is the client key requests are signed with.
	Key string `json:"-"`
	// Credentials are more app code and key pairs the sandbox accepts,
	// besides AppCode and Key (which may then be left empty): a request signed
	// with any of them passes, and the ledger records which (Entry.AppCode,
	// Entry.KeyLabel). One app code may be listed with several keys, as during
	// a key rotation. SetCredentials replaces the whole accepted set at run time.
	Credentials []Credential `json:"credentials,omitempty"`
	// RateLimit switches on per-merchant limiting (PerSecond, PerMinute, then
	// HTTP 429). The merchant is the mchid field, or the app code without one.
	RateLimit bool `json:"rate_limit"`
	PerSecond int  `json:"per_second,omitempty"` // default 100
	PerMinute int  `json:"per_minute,omitempty"` // default 400
	// SignResponses adds X-QF-SIGN: upper MD5(raw body + key) to every answer.
	SignResponses bool `json:"sign_responses"`
	// AnyMonth makes a query without start_time/end_time find transactions of
	// any date. By default, as at QFPay, such a query sees only the records
	// whose sysdtm is in the current calendar month of its txzone (UTC+8
	// without one). A given range is always applied to sysdtm.
	AnyMonth bool `json:"any_month"`
	// LooseRange switches off QFPay's rule on start_time..end_time. By
	// default, as at QFPay, a range that crosses a calendar month (in the
	// query's txzone), or that starts after it ends, answers top-level respcd
	// 1150 with no data. With LooseRange such a range is simply applied to
	// sysdtm (start after end finds nothing). Only for trying a client that
	// does not cut its ranges; the daemon's tests keep the default.
	LooseRange bool `json:"loose_range"`
	// LedgerLimit bounds the ledger for a long-running sandbox: when it is full
	// the older half is forgotten (see LedgerDropped). 0 keeps everything.
	LedgerLimit int `json:"ledger_limit,omitempty"`
	// Rules and Txns are loaded by New and again by Reset.
	Rules []Rule `json:"rules,omitempty"`
	Txns  []Txn  `json:"txns,omitempty"`
	// Now is the clock (sysdtm, the query month, rate limits); default time.Now.
	// A test can place it at the end of a month.
	Now func() time.Time `json:"-"`
}

// Credential is one app code and key pair the sandbox accepts.
type Credential struct {
	AppCode string `json:"app_code"`
	Key     string `json:"-"`
	// Label names the key in the ledger (Entry.KeyLabel), so that a test can
	// tell which of two keys of one app code signed a call. Never the key.
	Label string `json:"label,omitempty"`
}

func (c Credential) validate(i int) []error {
	var errs []error
	if c.AppCode == "" {
		errs = append(errs, fmt.Errorf("credential %d: app code is required", i+1))
	}
	if c.Key == "" {
		errs = append(errs, fmt.Errorf("credential %d: key is required", i+1))
	}
	return errs
}

// accepted is every pair the config accepts: AppCode and Key first.
func (c Config) accepted() []Credential {
	var out []Credential
	if c.AppCode != "" || c.Key != "" || len(c.Credentials) == 0 {
		out = append(out, Credential{AppCode: c.AppCode, Key: c.Key})
	}
	return append(out, c.Credentials...)
}

// Validate lists every problem.
func (c Config) Validate() error {
	var errs []error
	if c.AppCode != "" || c.Key != "" || len(c.Credentials) == 0 {
		if c.AppCode == "" {
			errs = append(errs, errors.New("app code is required"))
		}
		if c.Key == "" {
			errs = append(errs, errors.New("key is required"))
		}
	}
	for i, cr := range c.Credentials {
		errs = append(errs, cr.validate(i)...)
	}
	if c.PerSecond < 0 || c.PerMinute < 0 {
		errs = append(errs, errors.New("rate limits must not be negative"))
	}
	if c.LedgerLimit < 0 {
		errs = append(errs, errors.New("ledger limit must not be negative"))
	}
	for i := range c.Rules {
		if err := c.Rules[i].validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range c.Txns {
		if err := c.Txns[i].validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox config: %w", err)
	}
	return nil
}

// Sandbox is an http.Handler that behaves like QFPay. Safe for concurrent use.
type Sandbox struct {
	cfg   Config
	key   []byte // the first accepted key: signs answers given before authentication
	creds atomic.Pointer[[]Credential]
	now   func() time.Time
	done  chan struct{}
	stop  sync.Once

	shards     [nShards]shard
	syssnIdx   sync.Map // syssn -> tkey
	inFlightMu sync.Mutex
	inFlight   map[string]int // out_trade_no -> calls arrived, not yet answered (none: no key)
	seq        atomic.Uint64  // syssn numbers
	entrySeq   atomic.Uint64  // entry numbers: odd and even send txamt differently

	rulesMu sync.Mutex
	rules   atomic.Pointer[ruleSet]

	rateOn      atomic.Bool
	strictRange atomic.Bool
	limiter     limiter
	ledger      ledger
}

// New builds a sandbox. It panics if cfg is invalid: check untrusted config
// with cfg.Validate first (Start does).
func New(cfg Config) *Sandbox {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &Sandbox{cfg: cfg, key: []byte(cfg.accepted()[0].Key), now: cfg.Now, done: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	s.limiter.perSec, s.limiter.perMin = cfg.PerSecond, cfg.PerMinute
	if s.limiter.perSec == 0 {
		s.limiter.perSec = 100
	}
	if s.limiter.perMin == 0 {
		s.limiter.perMin = 400
	}
	s.rateOn.Store(cfg.RateLimit)
	s.strictRange.Store(!cfg.LooseRange)
	s.ledger.limit = cfg.LedgerLimit
	s.Reset()
	return s
}

// Close wakes every answer that is waiting out a scripted latency, so that a
// server can shut down; the sandbox keeps answering without delays afterwards.
func (s *Sandbox) Close() { s.stop.Do(func() { close(s.done) }) }

// Reset forgets every transaction, call and rule, then loads the
// credentials, rules and transactions of the Config again.
func (s *Sandbox) Reset() {
	acc := s.cfg.accepted()
	s.creds.Store(&acc)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.m = make(map[tkey]*entry)
		sh.mu.Unlock()
	}
	s.syssnIdx.Clear()
	s.ledger.reset()
	s.limiter.reset()
	s.rulesMu.Lock()
	s.rules.Store(&ruleSet{scripts: map[string]*Behavior{}})
	s.rulesMu.Unlock()
	for _, r := range s.cfg.Rules {
		_ = s.AddRule(r)
	}
	for _, t := range s.cfg.Txns {
		_ = s.Put(t)
	}
}

// SetCredentials replaces every app code and key pair the sandbox accepts
// (Config.AppCode and Key included) with creds, from the next call on: a
// test rotating a key tells the sandbox to accept the new key only.
func (s *Sandbox) SetCredentials(creds []Credential) error {
	var errs []error
	if len(creds) == 0 {
		errs = append(errs, errors.New("no credential"))
	}
	for i, c := range creds {
		errs = append(errs, c.validate(i)...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox credentials: %w", err)
	}
	c := append([]Credential(nil), creds...)
	s.creds.Store(&c)
	return nil
}

// SetRateLimit switches per-merchant rate limiting on or off.
func (s *Sandbox) SetRateLimit(on bool) { s.rateOn.Store(on) }

// SetStrictRange switches QFPay's one-month query range rule on or off; it is
// on unless Config.LooseRange (see there).
func (s *Sandbox) SetStrictRange(on bool) { s.strictRange.Store(on) }
