package sandbox

// This file answers /trade/v1/query.

import (
	"cmp"
	"strconv"
	"strings"
	"time"
)

// queryAnswer is the shape of a query answer: a top-level respcd that only says
// the call worked, and the records.
type queryAnswer struct {
	Respcd   string   `json:"respcd"`
	Resperr  string   `json:"resperr"`
	Respmsg  string   `json:"respmsg"`
	Page     int      `json:"page"`
	PageSize int      `json:"page_size"`
	Data     []record `json:"data"`
}

// record is one payment in a query answer.
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

// amount is the transaction's txamt as an answer shows it (see amountOf).
func amount(e *entry) any { return amountOf(e, e.txn.TxAmt) }

// amountOf alternates between a JSON string and a number, per transaction, so
// clients must decode both (QFPay does both).
func amountOf(e *entry, v int64) any {
	if e.n%2 == 0 {
		return strconv.FormatInt(v, 10)
	}
	return v
}

// query answers a query: the records of the listed out_trade_nos and syssns (or
// of every transaction of the merchant) whose sysdtm is within the range (see
// window), or 1150 for a range QFPay refuses.
func (s *Sandbox) query(ent *Entry, fields map[string]string, now time.Time) any {
	w, bad := s.window(fields, now)
	if bad != "" {
		ent.Respcd, ent.Fault = "1150", "bad_range"
		return codeAnswer("1150", bad)
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
		if seen[k] || !e.txn.State.known() || s.hidden(e, k.otn) || s.hiddenAfterCancel(e, k.otn) {
			return
		}
		seen[k] = true
		if !w.holds(e.txn.SysDtm) {
			return
		}
		ans.Data = append(ans.Data, s.record(e, s.behavior(k.otn)))
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

// hiddenAfterCancel reports whether a query must not see the transaction
// because a cancel was accepted and its Behavior.HideAfterCancel is set. The
// entry's shard is locked.
func (s *Sandbox) hiddenAfterCancel(e *entry, otn string) bool {
	if !e.acked {
		return false
	}
	b := s.behavior(otn)
	return b != nil && b.HideAfterCancel
}

// record is how a query shows the entry e, scripted by b (may be nil).
func (s *Sandbox) record(e *entry, b *Behavior) record {
	t := &e.txn
	amt, curr := t.TxAmt, t.TxCurrCd
	if b != nil {
		amt, curr = cmp.Or(b.RecordTxAmt, amt), cmp.Or(b.RecordTxCurrCd, curr)
	}
	amt, curr = cmp.Or(t.RecordTxAmt, amt), cmp.Or(t.RecordTxCurrCd, curr)
	r := record{
		Respcd: "0000", Cancel: "0", Syssn: t.Syssn, OutTradeNo: t.OutTradeNo, PayType: t.PayType,
		OrderType: "payment", TxAmt: amountOf(e, amt), TxCurrCd: curr, TxDtm: t.TxDtm, SysDtm: t.SysDtm,
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
	case StatePartiallyRefunded:
		r.Cancel = "5"
	default: // paid: respcd 0000, cancel 0
	}
	return r
}

// orDefault returns s, or d when s is empty.
func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
