package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
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
	// RateLimit switches on per-merchant limiting (PerSecond, PerMinute, then
	// HTTP 429). The merchant is the mchid field, or the app code without one.
	RateLimit bool `json:"rate_limit"`
	PerSecond int  `json:"per_second,omitempty"` // default 100
	PerMinute int  `json:"per_minute,omitempty"` // default 400
	// SignResponses adds X-QF-SIGN: upper MD5(raw body + key) to every answer.
	SignResponses bool `json:"sign_responses"`
	// AnyMonth makes a query find transactions of any date. By default, as at
	// QFPay, a query without start_time/end_time sees only the current month.
	AnyMonth bool `json:"any_month"`
	// LedgerLimit bounds the ledger for a long-running sandbox: when it is full
	// the older half is forgotten (see LedgerDropped). 0 keeps everything.
	LedgerLimit int `json:"ledger_limit,omitempty"`
	// Rules and Txns are loaded by New and again by Reset.
	Rules []Rule `json:"rules,omitempty"`
	Txns  []Txn  `json:"txns,omitempty"`
	// Now is the clock (sysdtm, the query month, rate limits); default time.Now.
	Now func() time.Time `json:"-"`
}

// Validate lists every problem.
func (c Config) Validate() error {
	var errs []error
	if c.AppCode == "" {
		errs = append(errs, errors.New("app code is required"))
	}
	if c.Key == "" {
		errs = append(errs, errors.New("key is required"))
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
	cfg  Config
	key  []byte
	now  func() time.Time
	done chan struct{}
	stop sync.Once

	shards   [nShards]shard
	syssnIdx sync.Map      // syssn -> tkey
	seq      atomic.Uint64 // syssn numbers
	entrySeq atomic.Uint64 // entry numbers: odd and even send txamt differently

	rulesMu sync.Mutex
	rules   atomic.Pointer[ruleSet]

	rateOn  atomic.Bool
	limiter limiter
	ledger  ledger
}

type tkey struct{ mchid, otn string }

type entry struct {
	txn     Txn
	calls   int // calls covered by the behaviour's faults
	cancels int // cancels that got past the faults
	queries int // single-order queries that got past the faults
	looks   int // calls that got past the faults, for Behavior.UnknownFor
	n       uint64
}

type shard struct {
	mu sync.Mutex
	m  map[tkey]*entry
}

type ruleSet struct {
	scripts  map[string]*Behavior
	prefixes []Rule // longest prefix first
}

func (rs *ruleSet) lookup(otn string) *Behavior {
	if b, ok := rs.scripts[otn]; ok {
		return b
	}
	for i := range rs.prefixes {
		if strings.HasPrefix(otn, rs.prefixes[i].Prefix) {
			return &rs.prefixes[i].Behavior
		}
	}
	return nil
}

// New builds a sandbox. It panics if cfg is invalid: check untrusted config
// with cfg.Validate first (Start does).
func New(cfg Config) *Sandbox {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &Sandbox{cfg: cfg, key: []byte(cfg.Key), now: cfg.Now, done: make(chan struct{})}
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
	s.ledger.limit = cfg.LedgerLimit
	s.Reset()
	return s
}

// Close wakes every answer that is waiting out a scripted latency, so that a
// server can shut down; the sandbox keeps answering without delays afterwards.
func (s *Sandbox) Close() { s.stop.Do(func() { close(s.done) }) }

// Reset forgets every transaction, call and rule, then loads the rules and
// transactions of the Config again.
func (s *Sandbox) Reset() {
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

// SetRateLimit switches per-merchant rate limiting on or off.
func (s *Sandbox) SetRateLimit(on bool) { s.rateOn.Store(on) }

// AddRule adds a prefix rule, or a script when r.OutTradeNo is set (replacing
// an earlier one for the same prefix or out_trade_no).
func (s *Sandbox) AddRule(r Rule) error {
	if err := r.validate(); err != nil {
		return err
	}
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	old := s.rules.Load()
	rs := &ruleSet{scripts: make(map[string]*Behavior, len(old.scripts)+1), prefixes: slices.Clone(old.prefixes)}
	for k, v := range old.scripts {
		rs.scripts[k] = v
	}
	if r.OutTradeNo != "" {
		b := r.Behavior
		rs.scripts[r.OutTradeNo] = &b
	} else {
		rs.prefixes = slices.DeleteFunc(rs.prefixes, func(x Rule) bool { return x.Prefix == r.Prefix })
		rs.prefixes = append(rs.prefixes, r)
		slices.SortStableFunc(rs.prefixes, func(a, b Rule) int { return len(b.Prefix) - len(a.Prefix) })
	}
	s.rules.Store(rs)
	return nil
}

// Script sets the behaviour of one out_trade_no (for any mchid). It beats rules.
func (s *Sandbox) Script(outTradeNo string, b Behavior) error {
	if outTradeNo == "" {
		return errors.New("script: out_trade_no is required")
	}
	return s.AddRule(Rule{OutTradeNo: outTradeNo, Behavior: b})
}

// Rules returns the rules and scripts in force.
func (s *Sandbox) Rules() []Rule {
	rs := s.rules.Load()
	out := slices.Clone(rs.prefixes)
	for otn, b := range rs.scripts {
		out = append(out, Rule{OutTradeNo: otn, Behavior: *b})
	}
	return out
}

func (t *Txn) validate() error {
	switch {
	case t.OutTradeNo == "":
		return errors.New("txn: out_trade_no is required")
	case !t.State.valid():
		return fmt.Errorf("txn %s: state %q is not a state", t.OutTradeNo, t.State)
	case t.Behavior != nil:
		if err := t.Behavior.validate(); err != nil {
			return fmt.Errorf("txn %s: %w", t.OutTradeNo, err)
		}
	}
	return nil
}

// Put seeds or replaces a transaction, keyed by (MchID, OutTradeNo). Empty
// Syssn, PayType, TxCurrCd, TxDtm and SysDtm are filled in. A Behavior on the
// Txn becomes a script for its out_trade_no.
func (s *Sandbox) Put(t Txn) error {
	if err := t.validate(); err != nil {
		return err
	}
	if t.Behavior != nil {
		if err := s.Script(t.OutTradeNo, *t.Behavior); err != nil {
			return err
		}
		t.Behavior = nil
	}
	if t.State == "" {
		t.State = StateUnknown
	}
	now := s.now()
	s.fill(&t, now)
	if t.TxDtm == "" {
		t.TxDtm = now.Format(dtmLayout)
	}
	k := tkey{t.MchID, t.OutTradeNo}
	sh := s.shard(t.OutTradeNo)
	sh.mu.Lock()
	sh.m[k] = &entry{txn: t, n: s.entrySeq.Add(1)}
	sh.mu.Unlock()
	s.syssnIdx.Store(t.Syssn, k)
	if t.CancelSyssn != "" {
		s.syssnIdx.Store(t.CancelSyssn, k)
	}
	return nil
}

func (s *Sandbox) fill(t *Txn, now time.Time) {
	if t.Syssn == "" {
		t.Syssn = s.newSyssn(now)
	}
	if t.PayType == "" {
		t.PayType = defaultPayType
	}
	if t.TxCurrCd == "" {
		t.TxCurrCd = defaultCurr
	}
	if t.SysDtm == "" {
		t.SysDtm = now.Format(dtmLayout)
	}
}

// Get returns the transaction kept for (mchid, outTradeNo).
func (s *Sandbox) Get(mchid, outTradeNo string) (Txn, bool) {
	sh := s.shard(outTradeNo)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[tkey{mchid, outTradeNo}]
	if !ok {
		return Txn{}, false
	}
	return e.txn, true
}

// Txns returns every transaction kept.
func (s *Sandbox) Txns() []Txn {
	var out []Txn
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			out = append(out, e.txn)
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Txn) int { return strings.Compare(a.MchID+"\x00"+a.OutTradeNo, b.MchID+"\x00"+b.OutTradeNo) })
	return out
}

func (s *Sandbox) newSyssn(now time.Time) string {
	return now.Format("20060102") + fmt.Sprintf("%018d", s.seq.Add(1))
}

func (s *Sandbox) shard(otn string) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(otn); i++ {
		h ^= uint32(otn[i])
		h *= 16777619
	}
	return &s.shards[h%nShards]
}

func (s *Sandbox) behavior(otn string) *Behavior { return s.rules.Load().lookup(otn) }

// entryLocked returns the entry for k, creating it when a rule or script
// covers the out_trade_no (the first time the sandbox sees it). sh is locked.
func (s *Sandbox) entryLocked(sh *shard, k tkey, b *Behavior, fields map[string]string, now time.Time) *entry {
	if e, ok := sh.m[k]; ok {
		return e
	}
	if b == nil {
		return nil
	}
	t := Txn{MchID: k.mchid, OutTradeNo: k.otn, State: b.InitialState, PayType: b.PayType, TxDtm: fields["txdtm"]}
	switch t.State {
	case "":
		t.State = StateUnknown
	case StateInFlight:
		t.Respcd = b.Respcd
	case StateFailed:
		t.Respcd = b.FailRespcd
	default: // the other states need no respcd
	}
	t.TxAmt, _ = strconv.ParseInt(fields["txamt"], 10, 64)
	s.fill(&t, now)
	e := &entry{txn: t, n: s.entrySeq.Add(1)}
	sh.m[k] = e
	s.syssnIdx.Store(t.Syssn, k)
	return e
}

// ServeHTTP answers /trade/v1/{query,reversal,close} like QFPay, and the admin
// surface under /_sandbox/.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/trade/v1/query":
		s.serveAPI(w, r, epQuery)
	case p == "/trade/v1/reversal":
		s.serveAPI(w, r, epReversal)
	case p == "/trade/v1/close":
		s.serveAPI(w, r, epClose)
	case strings.HasPrefix(p, "/_sandbox/"):
		s.serveAdmin(w, r)
	default:
		http.NotFound(w, r)
	}
}

var messages = map[string]string{
	"1104": "parameter error",
	"1108": "signature error",
	"1142": "order already closed",
	"1143": "transaction in progress, query later",
	"1147": "payment failed",
	"1260": "order already paid",
	"1262": "order already refunded",
	"1263": "order already reversed",
	"1264": "order already cancelled",
	"1268": "transaction does not exist",
}

type flat struct {
	Respcd     string `json:"respcd"`
	Resperr    string `json:"resperr"`
	Respmsg    string `json:"respmsg"`
	OrigSyssn  string `json:"orig_syssn,omitempty"`
	Syssn      string `json:"syssn,omitempty"`
	OutTradeNo string `json:"out_trade_no,omitempty"`
	TxAmt      any    `json:"txamt,omitempty"`
	TxCurrCd   string `json:"txcurrcd,omitempty"`
	TxDtm      string `json:"txdtm,omitempty"`
	SysDtm     string `json:"sysdtm,omitempty"`
	Chnlsn     string `json:"chnlsn,omitempty"`
	Udid       string `json:"udid,omitempty"`
	Cardcd     string `json:"cardcd,omitempty"`
}

func codeAnswer(respcd, detail string) flat {
	msg := messages[respcd]
	if detail != "" {
		msg = detail
	}
	return flat{Respcd: respcd, Resperr: msg, Respmsg: msg}
}

type queryAnswer struct {
	Respcd   string   `json:"respcd"`
	Resperr  string   `json:"resperr"`
	Respmsg  string   `json:"respmsg"`
	Page     int      `json:"page"`
	PageSize int      `json:"page_size"`
	Data     []record `json:"data"`
}

type record struct {
	Respcd     string `json:"respcd"`
	Cancel     string `json:"cancel"`
	Syssn      string `json:"syssn"`
	OutTradeNo string `json:"out_trade_no"`
	PayType    string `json:"pay_type"`
	OrderType  string `json:"order_type"`
	TxAmt      any    `json:"txamt"`
	TxCurrCd   string `json:"txcurrcd"`
	TxDtm      string `json:"txdtm"`
	SysDtm     string `json:"sysdtm"`
	ErrMsg     string `json:"errmsg"`
	Chnlsn     string `json:"chnlsn"`
}

// amount alternates between a JSON string and a number, per transaction, so
// clients must decode both (QFPay does both).
func amount(e *entry) any {
	if e.n%2 == 0 {
		return strconv.FormatInt(e.txn.TxAmt, 10)
	}
	return e.txn.TxAmt
}

func (s *Sandbox) serveAPI(w http.ResponseWriter, r *http.Request, endpoint string) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	now := s.now()
	ent := Entry{Time: now, Endpoint: endpoint}
	if err := r.ParseForm(); err != nil {
		ent.Respcd, ent.Fault = "1104", "invalid"
		s.answer(w, &ent, codeAnswer("1104", "unreadable form body"))
		return
	}
	fields := make(map[string]string, len(r.Form))
	for k, v := range r.Form {
		if len(v) > 0 && v[0] != "" {
			fields[k] = v[0]
		}
	}
	ent.Fields, ent.MchID, ent.OutTradeNo, ent.Syssn = fields, fields["mchid"], fields["out_trade_no"], fields["syssn"]

	if s.rateOn.Load() {
		who := ent.MchID
		if who == "" {
			who = "appcode:" + r.Header.Get("X-QF-APPCODE")
		}
		if !s.limiter.allow(who, now) {
			ent.HTTPStatus, ent.Fault = http.StatusTooManyRequests, "rate_limit"
			s.ledger.add(ent)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
			return
		}
	}
	st := r.Header.Get("X-QF-SIGNTYPE")
	if r.Header.Get("X-QF-APPCODE") != s.cfg.AppCode ||
		(st != "" && st != "MD5" && st != "SHA256") ||
		!signatureOK(fields, s.key, st == "SHA256", r.Header.Get("X-QF-SIGN")) {
		ent.Respcd, ent.Fault = "1108", "bad_sign"
		s.answer(w, &ent, codeAnswer("1108", ""))
		return
	}
	if field, reason := validate(endpoint, fields); field != "" {
		ent.Respcd, ent.Fault = "1104", "invalid"
		s.answer(w, &ent, codeAnswer("1104", "invalid "+field+": "+reason))
		return
	}

	// Find the transaction the call is about, for faults and effects.
	k, single := tkey{ent.MchID, ent.OutTradeNo}, true
	if endpoint == epQuery {
		single = ent.OutTradeNo != "" && ent.Syssn == "" && !strings.Contains(ent.OutTradeNo, ",")
	} else if ent.OutTradeNo == "" {
		if v, ok := s.syssnIdx.Load(ent.Syssn); ok && v.(tkey).mchid == ent.MchID {
			k = v.(tkey)
			ent.OutTradeNo = k.otn
		} else {
			single = false
		}
	}
	if single {
		b := s.behavior(k.otn)
		if b != nil && b.covers(endpoint) {
			sh := s.shard(k.otn)
			sh.mu.Lock()
			e := s.entryLocked(sh, k, b, fields, now)
			e.calls++
			n := e.calls
			sh.mu.Unlock()
			if !s.sleep(b.Latency.sample()) {
				ent.HTTPStatus, ent.Fault = http.StatusServiceUnavailable, "shutdown"
				s.ledger.add(ent)
				http.Error(w, "sandbox closed", http.StatusServiceUnavailable)
				return
			}
			switch {
			case n <= b.Drop:
				ent.Fault = "drop"
				s.ledger.add(ent)
				drop(w)
				return
			case n <= b.Drop+b.HTTP429:
				ent.HTTPStatus, ent.Fault = http.StatusTooManyRequests, "429"
				s.ledger.add(ent)
				http.Error(w, "too many requests", http.StatusTooManyRequests)
				return
			case n <= b.Drop+b.HTTP429+b.HTTP5xx:
				code := b.Status5xx
				if code == 0 {
					code = http.StatusServiceUnavailable
				}
				ent.HTTPStatus, ent.Fault = code, "5xx"
				s.ledger.add(ent)
				http.Error(w, http.StatusText(code), code)
				return
			case n <= b.Drop+b.HTTP429+b.HTTP5xx+b.DropAfter:
				ent.Fault = "drop_after"
			}
		}
	}

	var body any
	switch {
	case endpoint == epQuery:
		body = s.query(&ent, fields, now)
	case single:
		body = s.cancel(&ent, k, fields, endpoint, now)
	default:
		ent.Respcd = "1268"
		body = codeAnswer("1268", "")
	}
	if ent.Fault == "drop_after" {
		ent.HTTPStatus = 0
		s.ledger.add(ent)
		drop(w)
		return
	}
	s.answer(w, &ent, body)
}

// answer writes body as JSON (HTTP 200), signs it if configured, and records
// the call in the ledger.
func (s *Sandbox) answer(w http.ResponseWriter, ent *Entry, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		ent.HTTPStatus = http.StatusInternalServerError
		s.ledger.add(*ent)
		http.Error(w, "encode answer", http.StatusInternalServerError)
		return
	}
	ent.HTTPStatus = http.StatusOK
	s.ledger.add(*ent)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if s.cfg.SignResponses {
		h.Set("X-QF-SIGN", responseSignature(b, s.key))
	}
	_, _ = w.Write(b)
}

// sleep waits d, or less if the sandbox is closed (then it reports false).
func (s *Sandbox) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// drop closes the connection without an answer, with a TCP reset when it can.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (s *Sandbox) query(ent *Entry, fields map[string]string, now time.Time) any {
	from, to := fields["start_time"], fields["end_time"]
	if from == "" && to == "" && !s.cfg.AnyMonth {
		first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, now.Location())
		from, to = first.Format(dtmLayout), first.AddDate(0, 1, 0).Add(-time.Second).Format(dtmLayout)
	}
	mchid := fields["mchid"]
	ans := queryAnswer{Respcd: "0000", Page: 1, PageSize: 10, Data: []record{}}
	if otn := fields["out_trade_no"]; otn != "" && fields["syssn"] == "" && !strings.Contains(otn, ",") {
		if b := s.behavior(otn); b != nil && len(b.QueryCodes) > 0 {
			sh := s.shard(otn)
			sh.mu.Lock()
			e := s.entryLocked(sh, tkey{mchid, otn}, b, fields, now)
			e.queries++
			n := e.queries
			sh.mu.Unlock()
			if n <= len(b.QueryCodes) && b.QueryCodes[n-1] != "0000" {
				code := b.QueryCodes[n-1]
				ent.Respcd = code
				return codeAnswer(code, "")
			}
		}
	}
	seen := map[tkey]bool{}
	add := func(e *entry, k tkey) {
		if seen[k] || !e.txn.State.known() || s.hidden(e, k.otn) {
			return
		}
		seen[k] = true
		dtm := e.txn.TxDtm
		if dtm != "" && ((from != "" && dtm < from) || (to != "" && dtm > to)) {
			return
		}
		ans.Data = append(ans.Data, s.record(e))
	}
	visit := func(k tkey) {
		sh := s.shard(k.otn)
		sh.mu.Lock()
		if e := s.entryLocked(sh, k, s.behavior(k.otn), fields, now); e != nil {
			add(e, k)
		}
		sh.mu.Unlock()
	}
	if v := fields["out_trade_no"]; v != "" {
		for otn := range strings.SplitSeq(v, ",") {
			visit(tkey{mchid, otn})
		}
	}
	if v := fields["syssn"]; v != "" {
		for ssn := range strings.SplitSeq(v, ",") {
			if kv, ok := s.syssnIdx.Load(ssn); ok && kv.(tkey).mchid == mchid {
				visit(kv.(tkey))
			}
		}
	}
	if fields["out_trade_no"] == "" && fields["syssn"] == "" {
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			for k, e := range sh.m {
				if k.mchid == mchid && len(ans.Data) < ans.PageSize {
					add(e, k)
				}
			}
			sh.mu.Unlock()
		}
	}
	ent.Respcd = "0000"
	if ent.OutTradeNo != "" && !strings.Contains(ent.OutTradeNo, ",") {
		ent.State = StateUnknown
		for _, r := range ans.Data {
			if r.OutTradeNo == ent.OutTradeNo {
				ent.State = s.stateOf(tkey{mchid, r.OutTradeNo})
			}
		}
	}
	return ans
}

// hidden reports whether QFPay has "not seen" the transaction yet: the first
// Behavior.UnknownFor calls about it find no record. The entry's shard is locked.
func (s *Sandbox) hidden(e *entry, otn string) bool {
	b := s.behavior(otn)
	if b == nil || b.UnknownFor == 0 {
		return false
	}
	e.looks++
	return e.looks <= b.UnknownFor
}

func (s *Sandbox) stateOf(k tkey) State {
	t, ok := s.Get(k.mchid, k.otn)
	if !ok {
		return StateUnknown
	}
	return t.State
}

func (s *Sandbox) record(e *entry) record {
	t := &e.txn
	r := record{
		Respcd: "0000", Cancel: "0", Syssn: t.Syssn, OutTradeNo: t.OutTradeNo, PayType: t.PayType,
		OrderType: "payment", TxAmt: amount(e), TxCurrCd: t.TxCurrCd, TxDtm: t.TxDtm, SysDtm: t.SysDtm,
	}
	if r.TxDtm == "" {
		r.TxDtm = t.SysDtm
	}
	switch t.State {
	case StateInFlight:
		r.Respcd = orDefault(t.Respcd, "1143")
		r.ErrMsg = messages[r.Respcd]
	case StateFailed:
		r.Respcd = orDefault(t.Respcd, "1147")
		r.ErrMsg = orDefault(messages[r.Respcd], "payment failed")
	case StateReversed:
		r.Cancel = "1"
	case StateClosed:
		r.Cancel = "2"
	case StateRefunded:
		r.Cancel = "3"
	default: // paid: respcd 0000, cancel 0
	}
	return r
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// cancel applies a reversal or close to the transaction k.
func (s *Sandbox) cancel(ent *Entry, k tkey, fields map[string]string, endpoint string, now time.Time) any {
	b := s.behavior(k.otn)
	sh := s.shard(k.otn)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := s.entryLocked(sh, k, b, fields, now)
	if e == nil || !e.txn.State.known() || s.hidden(e, k.otn) {
		ent.Respcd, ent.State = "1268", StateUnknown
		return codeAnswer("1268", "")
	}
	t := &e.txn
	if t.TxAmt == 0 {
		t.TxAmt, _ = strconv.ParseInt(fields["txamt"], 10, 64)
	}
	if t.TxDtm == "" {
		t.TxDtm = fields["txdtm"]
	}
	defer func() { ent.State = t.State }()
	if b != nil {
		e.cancels++
		if n := e.cancels; n <= len(b.CancelCodes) {
			code := b.CancelCodes[n-1]
			ent.Respcd = code
			a := codeAnswer(code, "")
			a.OutTradeNo = t.OutTradeNo
			return a
		} else if n <= len(b.CancelCodes)+b.InProgress {
			ent.Respcd = "1143"
			return codeAnswer("1143", "")
		}
		if st := b.settleTo(); st != "" && t.State == StateInFlight {
			t.State = st
			t.Respcd = ""
			if st == StateFailed {
				t.Respcd = b.FailRespcd
			}
		}
	}
	var code string
	switch t.State {
	case StateInFlight:
		t.State = StateReversed
		if endpoint == epClose {
			t.State = StateClosed
		}
		t.CancelSyssn = s.newSyssn(now)
		s.syssnIdx.Store(t.CancelSyssn, k)
		ent.Respcd, ent.Accepted = "0000", true
		return flat{
			Respcd: "0000", OrigSyssn: t.Syssn, Syssn: t.CancelSyssn, OutTradeNo: t.OutTradeNo,
			TxAmt: amount(e), TxCurrCd: t.TxCurrCd, TxDtm: fields["txdtm"], SysDtm: now.Format(dtmLayout),
			Udid: fields["udid"], Chnlsn: "",
		}
	case StatePaid:
		code = "1260"
	case StateFailed:
		code = orDefault(t.Respcd, "1147")
	case StateRefunded:
		code = "1262"
	case StateReversed, StateClosed:
		code = "1264"
		switch {
		case b != nil && b.RepeatCancelRespcd != "":
			code = b.RepeatCancelRespcd
		case t.State == StateReversed && endpoint == epReversal:
			code = "1263"
		case t.State == StateClosed && endpoint == epClose:
			code = "1142"
		}
		if code == "0000" {
			ent.Respcd = code
			return flat{Respcd: code, OrigSyssn: t.Syssn, Syssn: t.CancelSyssn, OutTradeNo: t.OutTradeNo,
				TxAmt: amount(e), TxCurrCd: t.TxCurrCd, TxDtm: fields["txdtm"], SysDtm: now.Format(dtmLayout)}
		}
	default: // unknown: answered before this switch
	}
	ent.Respcd = code
	a := codeAnswer(code, "")
	a.OutTradeNo = t.OutTradeNo
	return a
}

// validate checks the fields as QFPay would and returns the first bad one.
func validate(endpoint string, f map[string]string) (field, reason string) {
	if v := f["mchid"]; len(v) > 16 {
		return "mchid", "longer than 16"
	}
	if endpoint == epQuery {
		for _, name := range []string{"out_trade_no", "syssn"} {
			max := 128
			if name == "syssn" {
				max = 40
			}
			if v := f[name]; v != "" {
				for x := range strings.SplitSeq(v, ",") {
					if x == "" || len(x) > max {
						return name, "empty or longer than " + strconv.Itoa(max)
					}
				}
			}
		}
		for _, name := range []string{"start_time", "end_time"} {
			if v := f[name]; v != "" && !isDtm(v) {
				return name, "want YYYY-MM-DD hh:mm:ss"
			}
		}
		return "", ""
	}
	if f["syssn"] == "" && f["out_trade_no"] == "" {
		return "out_trade_no", "syssn or out_trade_no is required"
	}
	if len(f["syssn"]) > 40 {
		return "syssn", "longer than 40"
	}
	if len(f["out_trade_no"]) > 128 {
		return "out_trade_no", "longer than 128"
	}
	if v := f["txamt"]; v == "" || len(v) > 11 || !isDigits(v, len(v)) || strings.Trim(v, "0") == "" {
		return "txamt", "want a positive integer of at most 11 digits"
	}
	if !isDtm(f["txdtm"]) {
		return "txdtm", "want YYYY-MM-DD hh:mm:ss"
	}
	if len(f["udid"]) > 40 {
		return "udid", "longer than 40"
	}
	return "", ""
}

func isDtm(s string) bool {
	if len(s) != len(dtmLayout) {
		return false
	}
	_, err := time.Parse(dtmLayout, s)
	return err == nil
}
