package sandbox

// This file answers /trade/v1/reversal and /trade/v1/close.

import (
	"strconv"
	"time"
)

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
	case StateRefunded, StatePartiallyRefunded:
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
