package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// State is where a transaction stands in the sandbox.
type State string

// States. StateUnknown means QFPay has not seen the transaction: a query finds
// no record and a cancel answers 1268. The query record shows cancel=1 for
// reversed, 2 for closed, 3 for refunded and 5 for partially_refunded (part of
// the money is still captured; the record's txamt stays the original amount);
// a refunded or partially refunded payment answers a cancel with 1262 and
// stays as it is.
const (
	StateUnknown           State = "unknown"
	StateInFlight          State = "in_flight"
	StatePaid              State = "paid"
	StateFailed            State = "failed"
	StateReversed          State = "reversed"
	StateClosed            State = "closed"
	StateRefunded          State = "refunded"
	StatePartiallyRefunded State = "partially_refunded"
)

func (s State) valid() bool {
	switch s {
	case "", StateUnknown, StateInFlight, StatePaid, StateFailed, StateReversed, StateClosed, StateRefunded, StatePartiallyRefunded:
		return true
	}
	return false
}

func (s State) known() bool { return s != "" && s != StateUnknown }

// Duration is a time.Duration that reads and writes JSON as "250ms" (a bare
// number is nanoseconds).
type Duration time.Duration

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "250ms" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string like \"250ms\" or nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// Latency delays an answer: Fixed, or uniform between Min and Max.
type Latency struct {
	Fixed Duration `json:"fixed,omitempty"`
	Min   Duration `json:"min,omitempty"`
	Max   Duration `json:"max,omitempty"`
}

func (l Latency) sample() time.Duration {
	d := time.Duration(l.Fixed)
	if l.Max > l.Min {
		d += time.Duration(l.Min) + time.Duration(rand.Int64N(int64(l.Max-l.Min)+1))
	} else {
		d += time.Duration(l.Min)
	}
	return d
}

// Behavior scripts how the sandbox treats one out_trade_no. Faults count the
// calls of the listed Endpoints (all when empty) and come in this order: the
// first Drop calls are dropped before anything happens, the next HTTP429 get
// HTTP 429, the next HTTP5xx get Status5xx, the next DropAfter are processed
// and then dropped (the answer is lost, the effect stays). Calls after that are
// answered normally, except that the first UnknownFor calls find no record,
// and the first queries answer QueryCodes.
//
// A reversal or close goes through, in this order:
//  1. the faults above: latency, drop, http_429, http_5xx (each ends the
//     call); drop_after lets the call go through the steps below and loses
//     the answer;
//  2. unknown_for: no record, answer 1268, no effect;
//  3. cancel_codes: the next entry is the answer, no effect;
//  4. in_progress: answer 1143, no effect;
//  5. the effect: an in-flight payment first settles to SettleTo (if set),
//     then the cancel is applied to the state it is in (in_flight becomes
//     reversed or closed; any other state stays); the answer is the next
//     cancel_effect_codes entry if there is one, else the normal answer
//     (0000, 1260, 1262, 1263, ...).
//
// With HideAfterCancel, once a cancel has been accepted (answered 0000 at any
// step, or applied in step 5 whatever its answer), every later query finds no
// record.
type Behavior struct {
	// InitialState is the state of a transaction the sandbox sees first through a
	// call (not seeded with Put): "" or unknown means no record.
	InitialState State `json:"initial_state,omitempty"`
	// PayType of a transaction created by the rule (default 800101).
	PayType string `json:"pay_type,omitempty"`
	// Respcd of the query record of an in_flight transaction (default 1143).
	// Any 4 digits: 1145, 1298, 1161, 1295-1297, 1100, 1205, 1252, 1254, 2999,
	// 1102, or a code QFPay does not document, like 7777. The record's respcd
	// is what the daemon reads; the record's cancel flag stays 0.
	Respcd string `json:"respcd,omitempty"`
	// FailRespcd of the query record of a failed transaction (default 1147;
	// any 4 digits, e.g. 1181, 1201-1204, 1212, 2005); a failed payment also
	// answers a cancel with it.
	FailRespcd string `json:"fail_respcd,omitempty"`
	// RecordTxAmt and RecordTxCurrCd, when set, are the txamt and txcurrcd the
	// query record shows instead of the transaction's own (for amount or
	// currency mismatch tests). They are read at each query, so a script
	// added later applies to a known transaction; the cancel answers keep the
	// transaction's own amount. A Txn's own record_txamt/record_txcurrcd beat
	// these.
	RecordTxAmt    int64  `json:"record_txamt,omitempty"`
	RecordTxCurrCd string `json:"record_txcurrcd,omitempty"`
	// Latency before each answer.
	Latency Latency `json:"latency,omitzero"`
	// Endpoints the faults and latency apply to: "query", "reversal", "close"; empty means all.
	Endpoints []string `json:"endpoints,omitempty"`

	Drop      int `json:"drop,omitempty"`
	HTTP429   int `json:"http_429,omitempty"`
	HTTP5xx   int `json:"http_5xx,omitempty"`
	Status5xx int `json:"status_5xx,omitempty"` // default 503
	DropAfter int `json:"drop_after,omitempty"`
	// RetryAfter, when set, is sent as a Retry-After header (in seconds) with
	// the scripted HTTP 429 and 5xx answers, e.g. "720h" to ask for 30 days.
	// A whole number of seconds, as the header has no finer unit.
	RetryAfter Duration `json:"retry_after,omitempty"`

	// UnknownFor: the first N calls that get past the faults find no record
	// (query: no data; cancel: 1268), as if QFPay had not seen the payment yet.
	UnknownFor int `json:"unknown_for,omitempty"`
	// QueryCodes answers the first single-order queries with these top-level
	// respcds (no data), one per query, e.g. ["1100","1205"]; "0000" means an
	// ordinary answer at that position.
	QueryCodes []string `json:"query_codes,omitempty"`
	// CancelCodes answers the first reversal/close calls with these respcds,
	// without effect, e.g. ["1102"] or ["1294"]; the InProgress answers follow.
	CancelCodes []string `json:"cancel_codes,omitempty"`
	// InProgress is how many reversal/close calls answer 1143 before one settles.
	InProgress int `json:"in_progress,omitempty"`
	// CancelEffectCodes answers the reversal/close calls that get past
	// InProgress with these respcds, one per call, AFTER the cancel has been
	// applied: the effect stays, the answer says the code. E.g. ["9999"]: an
	// unknown answer while the payment was in fact reversed; ["1260"]: "paid,
	// please confirm" while the cancel landed; ["0000"]: a success shape even
	// when nothing changed. Calls past the list get the normal answer; a
	// drop_after call uses its entry although its answer is lost.
	CancelEffectCodes []string `json:"cancel_effect_codes,omitempty"`
	// HideAfterCancel: once a cancel of this out_trade_no has been accepted
	// (answered 0000, or applied whatever the answer), every later query finds
	// no record (data empty), as when QFPay acknowledged the cancel but our
	// query cannot see it (wrong range, mchid or credential). Cancels still
	// find the transaction.
	HideAfterCancel bool `json:"hide_after_cancel,omitempty"`
	// SettleTo is what an in-flight payment becomes when a cancel settles, before
	// the cancel is applied: paid (the payment completed first: the cancel
	// answers 1260 and a query shows paid), failed, or "" (the cancel wins).
	SettleTo State `json:"settle_to,omitempty"`
	// CompleteDuringCancel is SettleTo "paid": the payment completes while the
	// cancel is in flight.
	CompleteDuringCancel bool `json:"complete_during_cancel,omitempty"`
	// RepeatCancelRespcd answers a cancel of a transaction already reversed or
	// closed. Default: 1263 for reversal after reversal, 1142 for close after
	// close, 1264 otherwise. "0000" makes a repeat look like a success.
	RepeatCancelRespcd string `json:"repeat_cancel_respcd,omitempty"`
}

func (b *Behavior) validate() error {
	var errs []error
	if !b.InitialState.valid() {
		errs = append(errs, fmt.Errorf("initial_state %q is not a state", b.InitialState))
	}
	if !b.SettleTo.valid() {
		errs = append(errs, fmt.Errorf("settle_to %q is not a state", b.SettleTo))
	}
	if b.PayType != "" && !isDigits(b.PayType, 6) {
		errs = append(errs, fmt.Errorf("pay_type %q: want 6 digits", b.PayType))
	}
	if b.Respcd != "" && !isDigits(b.Respcd, 4) {
		errs = append(errs, fmt.Errorf("respcd %q: want 4 digits", b.Respcd))
	}
	if b.FailRespcd != "" && !isDigits(b.FailRespcd, 4) {
		errs = append(errs, fmt.Errorf("fail_respcd %q: want 4 digits", b.FailRespcd))
	}
	if err := validRecord(b.RecordTxAmt, b.RecordTxCurrCd); err != nil {
		errs = append(errs, err)
	}
	if b.RepeatCancelRespcd != "" && !isDigits(b.RepeatCancelRespcd, 4) {
		errs = append(errs, fmt.Errorf("repeat_cancel_respcd %q: want 4 digits", b.RepeatCancelRespcd))
	}
	if b.RetryAfter < 0 || time.Duration(b.RetryAfter)%time.Second != 0 {
		errs = append(errs, fmt.Errorf("retry_after %s: want a whole number of seconds, not negative", time.Duration(b.RetryAfter)))
	}
	if b.Status5xx != 0 && (b.Status5xx < 500 || b.Status5xx > 599) {
		errs = append(errs, fmt.Errorf("status_5xx %d: want 500..599", b.Status5xx))
	}
	for _, c := range slices.Concat(b.QueryCodes, b.CancelCodes, b.CancelEffectCodes) {
		if !isDigits(c, 4) {
			errs = append(errs, fmt.Errorf("scripted respcd %q: want 4 digits", c))
		}
	}
	if b.Drop < 0 || b.HTTP429 < 0 || b.HTTP5xx < 0 || b.DropAfter < 0 || b.InProgress < 0 || b.UnknownFor < 0 {
		errs = append(errs, errors.New("counts must not be negative"))
	}
	if b.Latency.Fixed < 0 || b.Latency.Min < 0 || b.Latency.Max < 0 || (b.Latency.Max != 0 && b.Latency.Max < b.Latency.Min) {
		errs = append(errs, errors.New("latency: want fixed >= 0 and 0 <= min <= max"))
	}
	for _, e := range b.Endpoints {
		if e != epQuery && e != epReversal && e != epClose {
			errs = append(errs, fmt.Errorf("endpoint %q: want query, reversal or close", e))
		}
	}
	return errors.Join(errs...)
}

func (b *Behavior) covers(endpoint string) bool {
	if len(b.Endpoints) == 0 {
		return true
	}
	for _, e := range b.Endpoints {
		if e == endpoint {
			return true
		}
	}
	return false
}

func (b *Behavior) settleTo() State {
	if b.SettleTo.known() {
		return b.SettleTo
	}
	if b.CompleteDuringCancel {
		return StatePaid
	}
	return ""
}

// Rule applies a Behavior to every out_trade_no that starts with Prefix (the
// longest matching prefix wins), or, when OutTradeNo is set, to that one
// out_trade_no only (a script, which beats every rule).
type Rule struct {
	Prefix     string `json:"prefix,omitempty"`
	OutTradeNo string `json:"out_trade_no,omitempty"`
	Behavior
}

func (r *Rule) validate() error {
	if r.Prefix != "" && r.OutTradeNo != "" {
		return errors.New("rule: set prefix or out_trade_no, not both")
	}
	if err := r.Behavior.validate(); err != nil {
		return fmt.Errorf("rule %q: %w", r.Prefix+r.OutTradeNo, err)
	}
	return nil
}

// Txn is a transaction as the sandbox keeps it. A transaction the sandbox
// creates on a first call (through a rule or script) takes txamt, txcurrcd
// and txdtm from that call's fields when they are there: a cancel carries
// txamt and txdtm, a query none of them (txamt stays 0 until a cancel brings
// one; txcurrcd defaults to HKD).
type Txn struct {
	MchID      string `json:"mchid,omitempty"`
	OutTradeNo string `json:"out_trade_no"`
	Syssn      string `json:"syssn,omitempty"` // generated when empty
	State      State  `json:"state"`
	PayType    string `json:"pay_type,omitempty"` // default 800101
	TxAmt      int64  `json:"txamt,omitempty"`
	TxCurrCd   string `json:"txcurrcd,omitempty"` // default HKD
	TxDtm      string `json:"txdtm,omitempty"`    // default: now
	// SysDtm is when QFPay recorded the transaction, YYYY-MM-DD hh:mm:ss in
	// UTC+8: queries filter on it. Default: TxDtm if given to Put, else now.
	SysDtm      string `json:"sysdtm,omitempty"`
	Respcd      string `json:"respcd,omitempty"` // query record respcd of an in_flight (default 1143) or failed (default 1147) txn; any 4 digits
	CancelSyssn string `json:"cancel_syssn,omitempty"`
	// RecordTxAmt and RecordTxCurrCd, when set, are what the query record shows
	// as txamt and txcurrcd instead of TxAmt and TxCurrCd (see Behavior).
	RecordTxAmt    int64  `json:"record_txamt,omitempty"`
	RecordTxCurrCd string `json:"record_txcurrcd,omitempty"`
	// Behavior, if set, scripts this transaction (as Sandbox.Script would).
	Behavior *Behavior `json:"behavior,omitempty"`
}

// validRecord checks a record_txamt and record_txcurrcd override.
func validRecord(amt int64, curr string) error {
	var errs []error
	if amt < 0 || amt > 99999999999 {
		errs = append(errs, fmt.Errorf("record_txamt %d: want 0 (not set) or a positive amount of at most 11 digits", amt))
	}
	if curr != "" && !isUpper(curr, 3) {
		errs = append(errs, fmt.Errorf("record_txcurrcd %q: want 3 upper-case letters", curr))
	}
	return errors.Join(errs...)
}

// isUpper reports whether s is n upper-case ASCII letters.
func isUpper(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// isDigits reports whether s is n ASCII digits.
func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ruleSet is the rules and scripts in force, replaced whole on each change.
type ruleSet struct {
	scripts  map[string]*Behavior
	prefixes []Rule // longest prefix first
}

// lookup returns the script for otn, else the longest matching prefix rule,
// else nil.
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

// behavior returns the script or rule for otn, or nil.
func (s *Sandbox) behavior(otn string) *Behavior { return s.rules.Load().lookup(otn) }
