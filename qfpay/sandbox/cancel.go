package sandbox

// This file answers /trade/v1/reversal and /trade/v1/close.

import (
	"strconv"
	"time"
)

// cancel plays a reversal or close of the transaction k, after the faults, in
// this order: unknown_for (1268), cancel_codes (no effect), in_progress (1143,
// no effect), settle_to, then the effect, answered with the next
// cancel_effect_codes entry if there is one, else with the normal answer.
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
	defer func() {
		ent.State = t.State
		e.acked = e.acked || ent.Accepted || ent.Respcd == "0000"
	}()
	var effectCode string
	if b != nil {
		e.cancels++
		n := e.cancels
		if n <= len(b.CancelCodes) {
			code := b.CancelCodes[n-1]
			ent.Respcd = code
			a := codeAnswer(code, "")
			a.OutTradeNo = t.OutTradeNo
			return a
		} else if n <= len(b.CancelCodes)+b.InProgress {
			ent.Respcd = "1143"
			return codeAnswer("1143", "")
		}
		if m := n - len(b.CancelCodes) - b.InProgress; m <= len(b.CancelEffectCodes) {
			effectCode = b.CancelEffectCodes[m-1]
		}
		if st := b.settleTo(); st != "" && t.State == StateInFlight {
			t.State = st
			t.Respcd = ""
			if st == StateFailed {
				t.Respcd = b.FailRespcd
			}
		}
	}
	body := s.effect(ent, e, k, b, fields, endpoint, now)
	if effectCode != "" && effectCode != ent.Respcd {
		body = s.coded(ent, e, effectCode, fields, now)
	}
	return body
}

// effect applies the cancel to the transaction as it stands and returns the
// normal answer: an in-flight payment is reversed or closed (0000), anything
// else refuses with its code and stays as it is.
func (s *Sandbox) effect(ent *Entry, e *entry, k tkey, b *Behavior, fields map[string]string, endpoint string, now time.Time) any {
	t := &e.txn
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
		a := success(e, fields, now)
		a.Udid = fields["udid"]
		return a
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
	default: // unknown: answered before the effect
	}
	return s.coded(ent, e, code, fields, now)
}

// coded answers the cancel with code, without touching the transaction: a
// success shape for 0000, else the code and the out_trade_no.
func (s *Sandbox) coded(ent *Entry, e *entry, code string, fields map[string]string, now time.Time) any {
	ent.Respcd = code
	if code == "0000" {
		return success(e, fields, now)
	}
	a := codeAnswer(code, "")
	a.OutTradeNo = e.txn.OutTradeNo
	return a
}

// success is a 0000 cancel answer about e: the original and the cancel's syssn.
func success(e *entry, fields map[string]string, now time.Time) flat {
	t := &e.txn
	return flat{Respcd: "0000", OrigSyssn: t.Syssn, Syssn: t.CancelSyssn, OutTradeNo: t.OutTradeNo,
		TxAmt: amount(e), TxCurrCd: t.TxCurrCd, TxDtm: fields["txdtm"], SysDtm: sysdtm(now)}
}
