package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Entry is one call in the ledger. Fields are the received form fields; the
// signature travels in a header and is not kept.
type Entry struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Endpoint string    `json:"endpoint"` // "query", "reversal" or "close"
	// AppCode is the X-QF-APPCODE the call came with. Its key signed the
	// call if the call passed authentication: not a bad_sign, nor stopped
	// before (rate_limit, an unreadable body); KeyLabel then names the key.
	AppCode string `json:"app_code,omitempty"`
	// KeyLabel is the Credential.Label of the key that verified the call.
	KeyLabel   string            `json:"key_label,omitempty"`
	MchID      string            `json:"mchid,omitempty"`
	OutTradeNo string            `json:"out_trade_no,omitempty"` // as sent (a query may list several); filled from syssn for a cancel by syssn
	Syssn      string            `json:"syssn,omitempty"`
	Fields     map[string]string `json:"fields"`
	HTTPStatus int               `json:"http_status"` // 0: the connection was dropped
	Respcd     string            `json:"respcd,omitempty"`
	// Accepted: this cancel changed the transaction to reversed or closed.
	Accepted bool `json:"accepted"`
	// Fault names a scripted or protocol failure: drop, drop_after, 429, 5xx,
	// rate_limit, bad_sign, invalid, bad_range (a query answered 1150),
	// shutdown.
	Fault string `json:"fault,omitempty"`
	// State of the transaction after the call ("unknown": no record).
	State State `json:"state,omitempty"`
	// StateBefore is, for a reversal or close that got past validation, the
	// state of the transaction when the call arrived (before any scripted
	// latency); empty when the sandbox did not know the transaction.
	StateBefore State `json:"state_before,omitempty"`
}

func (e *Entry) isCancel() bool { return e.Endpoint == epReversal || e.Endpoint == epClose }

type ledger struct {
	mu      sync.Mutex
	limit   int // 0: unbounded
	seq     int64
	dropped int64
	entries []Entry
	byOTN   map[string][]int
}

func (l *ledger) reset() {
	l.mu.Lock()
	l.entries, l.byOTN, l.seq, l.dropped = nil, map[string][]int{}, 0, 0
	l.mu.Unlock()
}

func (l *ledger) add(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit > 0 && len(l.entries) >= l.limit {
		l.trimLocked()
	}
	l.seq++
	e.Seq = l.seq
	l.index(e.OutTradeNo, len(l.entries))
	l.entries = append(l.entries, e)
}

func (l *ledger) index(otns string, i int) {
	if strings.Contains(otns, ",") {
		for otn := range strings.SplitSeq(otns, ",") {
			l.byOTN[otn] = append(l.byOTN[otn], i)
		}
	} else if otns != "" {
		l.byOTN[otns] = append(l.byOTN[otns], i)
	}
}

// trimLocked forgets the older half of the entries (amortised O(1) per add).
func (l *ledger) trimLocked() {
	keep := len(l.entries) / 2
	drop := len(l.entries) - keep
	l.dropped += int64(drop)
	l.entries = slices.Clone(l.entries[drop:])
	l.byOTN = make(map[string][]int, len(l.byOTN)/2)
	for i := range l.entries {
		l.index(l.entries[i].OutTradeNo, i)
	}
}

// LedgerDropped counts the entries forgotten because of Config.LedgerLimit.
// While it is above zero, CheckInvariants can only speak for what is kept.
func (s *Sandbox) LedgerDropped() int64 {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	return s.ledger.dropped
}

// Entries returns every call so far, in order.
func (s *Sandbox) Entries() []Entry {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	return slices.Clone(s.ledger.entries)
}

// Ledger returns the calls about outTradeNo, in order.
func (s *Sandbox) Ledger(outTradeNo string) []Entry {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	idx := s.ledger.byOTN[outTradeNo]
	out := make([]Entry, len(idx))
	for i, j := range idx {
		out[i] = s.ledger.entries[j]
	}
	return out
}

// InFlight counts the calls about outTradeNo (as sent: a cancel by syssn
// alone is not counted) that have arrived and are not answered yet: a test
// can tell that a call is under way, signed and sent, before its answer.
func (s *Sandbox) InFlight(outTradeNo string) int {
	s.inFlightMu.Lock()
	defer s.inFlightMu.Unlock()
	return s.inFlight[outTradeNo]
}

// arrived counts a call about otn in (+1) or answered (-1).
func (s *Sandbox) arrived(otn string, d int) {
	s.inFlightMu.Lock()
	defer s.inFlightMu.Unlock()
	if s.inFlight == nil {
		s.inFlight = map[string]int{}
	}
	if s.inFlight[otn] += d; s.inFlight[otn] <= 0 {
		delete(s.inFlight, otn)
	}
}

// Calls counts the calls about outTradeNo to endpoint ("" for all).
func (s *Sandbox) Calls(outTradeNo, endpoint string) int {
	n := 0
	for _, e := range s.Ledger(outTradeNo) {
		if endpoint == "" || e.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// CancelCalls counts the reversal and close calls about outTradeNo that got
// past authentication (app code and signature), whatever happened to them
// next: refused fields, scripted faults (drop, 429, 5xx, drop_after) and
// every answer count; rate-limited calls and bad signatures do not.
func (s *Sandbox) CancelCalls(outTradeNo string) int {
	n := 0
	for _, e := range s.Ledger(outTradeNo) {
		if e.isCancel() && e.Fault != "rate_limit" && e.Fault != "bad_sign" {
			n++
		}
	}
	return n
}

// AcceptedCancels counts the reversals and closes that changed outTradeNo to
// reversed or closed. More than one is a bug in the caller... or here.
func (s *Sandbox) AcceptedCancels(outTradeNo string) int {
	n := 0
	for _, e := range s.Ledger(outTradeNo) {
		if e.Accepted {
			n++
		}
	}
	return n
}

// CheckInvariants checks the ledger for what the daemon promises, per
// out_trade_no: at most one accepted cancel (a cancel applied twice is a
// violation, whatever the answers said), every cancel preceded by an answered
// query (HTTP 200, respcd 0000), and no cancel sent to a payment that was
// already reversed or closed when the call arrived. It names every violation
// with its out_trade_no.
func (s *Sandbox) CheckInvariants() error {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	var errs []error
	otns := make([]string, 0, len(s.ledger.byOTN))
	for otn := range s.ledger.byOTN {
		otns = append(otns, otn)
	}
	slices.Sort(otns)
	for _, otn := range otns {
		accepted, queried := 0, false
		for _, i := range s.ledger.byOTN[otn] {
			e := &s.ledger.entries[i]
			switch {
			case e.Endpoint == epQuery && e.HTTPStatus == 200 && e.Respcd == "0000":
				queried = true
			case e.isCancel():
				if !queried {
					errs = append(errs, fmt.Errorf("%s: %s (seq %d) not preceded by an answered query", otn, e.Endpoint, e.Seq))
				}
				if e.Accepted {
					accepted++
				}
				if e.StateBefore == StateReversed || e.StateBefore == StateClosed {
					errs = append(errs, fmt.Errorf("%s: %s (seq %d) sent to a payment already %s", otn, e.Endpoint, e.Seq, e.StateBefore))
				}
			}
		}
		if accepted > 1 {
			errs = append(errs, fmt.Errorf("%s: %d accepted cancels", otn, accepted))
		}
	}
	return errors.Join(errs...)
}

type limiter struct {
	mu             sync.Mutex
	perSec, perMin int
	m              map[string]*window
}

type window struct {
	sec, min   int64
	nSec, nMin int
}

func (l *limiter) reset() {
	l.mu.Lock()
	l.m = map[string]*window{}
	l.mu.Unlock()
}

// allow counts a call in fixed one-second and one-minute windows per merchant.
func (l *limiter) allow(who string, now time.Time) bool {
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.m[who]
	if !ok {
		w = &window{sec: sec, min: sec / 60}
		l.m[who] = w
	}
	if w.sec != sec {
		w.sec, w.nSec = sec, 0
	}
	if w.min != sec/60 {
		w.min, w.nMin = sec/60, 0
	}
	if w.nSec >= l.perSec || w.nMin >= l.perMin {
		return false
	}
	w.nSec++
	w.nMin++
	return true
}
