package sandbox

// This file keeps the transactions: one entry per (mchid, out_trade_no), in
// shards with their own locks, and an index from syssn to entry.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tkey is what QFPay keys a payment by: the merchant and its order number.
type tkey struct{ mchid, otn string }

// entry is one transaction and the counters its Behavior plays against.
type entry struct {
	txn     Txn
	calls   int    // calls covered by the behaviour's faults
	cancels int    // cancels that got past the faults
	queries int    // single-order queries that got past the faults
	looks   int    // calls that got past the faults, for Behavior.UnknownFor
	n       uint64 // creation order: odd and even amounts are sent differently
	acked   bool   // a cancel was accepted (0000, or applied), for Behavior.HideAfterCancel
}

// shard holds the entries whose out_trade_no hashes to it.
type shard struct {
	mu sync.Mutex
	m  map[tkey]*entry
}

// validate checks a Txn given to Put or the admin API.
func (t *Txn) validate() error {
	switch {
	case t.OutTradeNo == "":
		return errors.New("txn: out_trade_no is required")
	case !t.State.valid():
		return fmt.Errorf("txn %s: state %q is not a state", t.OutTradeNo, t.State)
	case t.SysDtm != "" && !isDtm(t.SysDtm):
		return fmt.Errorf("txn %s: sysdtm %q: want YYYY-MM-DD hh:mm:ss", t.OutTradeNo, t.SysDtm)
	case t.Respcd != "" && !isDigits(t.Respcd, 4):
		return fmt.Errorf("txn %s: respcd %q: want 4 digits", t.OutTradeNo, t.Respcd)
	case validRecord(t.RecordTxAmt, t.RecordTxCurrCd) != nil:
		return fmt.Errorf("txn %s: %w", t.OutTradeNo, validRecord(t.RecordTxAmt, t.RecordTxCurrCd))
	case t.Behavior != nil:
		if err := t.Behavior.validate(); err != nil {
			return fmt.Errorf("txn %s: %w", t.OutTradeNo, err)
		}
	}
	return nil
}

// Put seeds or replaces a transaction, keyed by (MchID, OutTradeNo). Empty
// Syssn, PayType, TxCurrCd, TxDtm and SysDtm are filled in: SysDtm is TxDtm
// when that is given (the payment reached QFPay when it was made), else now
// in UTC+8; TxDtm is now. A Behavior on the
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
	if t.SysDtm == "" && isDtm(t.TxDtm) {
		t.SysDtm = t.TxDtm
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

// fill sets the defaults of empty Syssn, PayType, TxCurrCd and SysDtm (now,
// in UTC+8).
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
		t.SysDtm = sysdtm(now)
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

// newSyssn numbers a transaction like QFPay: the date, then 18 digits.
func (s *Sandbox) newSyssn(now time.Time) string {
	return now.Format("20060102") + fmt.Sprintf("%018d", s.seq.Add(1))
}

// shard returns the shard of otn (FNV-1a).
func (s *Sandbox) shard(otn string) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(otn); i++ {
		h ^= uint32(otn[i])
		h *= 16777619
	}
	return &s.shards[h%nShards]
}

// entryLocked returns the entry for k, creating it when a rule or script
// covers the out_trade_no (the first time the sandbox sees it). sh is locked.
func (s *Sandbox) entryLocked(sh *shard, k tkey, b *Behavior, fields map[string]string, now time.Time) *entry {
	if e, ok := sh.m[k]; ok {
		return e
	}
	if b == nil {
		return nil
	}
	t := Txn{MchID: k.mchid, OutTradeNo: k.otn, State: b.InitialState, PayType: b.PayType, TxCurrCd: fields["txcurrcd"], TxDtm: fields["txdtm"]}
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

// stateOf returns the state of k now (unknown when the sandbox has no entry).
func (s *Sandbox) stateOf(k tkey) State {
	t, ok := s.Get(k.mchid, k.otn)
	if !ok {
		return StateUnknown
	}
	return t.State
}
