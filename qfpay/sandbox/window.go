package sandbox

// This file is QFPay's query range rule: records are filtered by sysdtm, the
// range defaults to the current calendar month in the query's txzone (UTC+8
// without one), and start_time..end_time must stay inside one calendar month.

import (
	"strconv"
	"time"
)

// qfpayZone is QFPay's time zone (UTC+8): sysdtm is written in it, and a query
// without txzone reads its range in it.
var qfpayZone = time.FixedZone("UTC+8", 8*60*60)

// sysdtm is QFPay's time stamp of now: the wall clock in UTC+8.
func sysdtm(now time.Time) string { return now.In(qfpayZone).Format(dtmLayout) }

// parseZone reads a txzone such as "+0800" or "-0500".
func parseZone(z string) (*time.Location, bool) {
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') || !isDigits(z[1:], 4) {
		return nil, false
	}
	hh, _ := strconv.Atoi(z[1:3])
	mm, _ := strconv.Atoi(z[3:5])
	if hh > 14 || mm > 59 {
		return nil, false
	}
	off := (hh*60 + mm) * 60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone("UTC"+z, off), true
}

// span is the sysdtm range of a query, both ends included; a zero end is
// open.
type span struct{ from, to time.Time }

// window returns the range a query asks for, or, unless Config.LooseRange,
// why QFPay would refuse it (answered 1150): start_time after end_time, or
// the two in different calendar months of the txzone. A query without
// start_time and end_time gets the current month (every month with
// Config.AnyMonth); one with a single bound is open on the other side.
func (s *Sandbox) window(fields map[string]string, now time.Time) (span, string) {
	loc := qfpayZone
	if z, ok := parseZone(fields["txzone"]); ok {
		loc = z
	}
	var w span
	from, to := fields["start_time"], fields["end_time"]
	if from == "" && to == "" {
		if s.cfg.AnyMonth {
			return w, ""
		}
		n := now.In(loc)
		w.from = time.Date(n.Year(), n.Month(), 1, 0, 0, 0, 0, loc)
		w.to = w.from.AddDate(0, 1, 0).Add(-time.Second)
		return w, ""
	}
	if from != "" {
		w.from, _ = time.ParseInLocation(dtmLayout, from, loc)
	}
	if to != "" {
		w.to, _ = time.ParseInLocation(dtmLayout, to, loc)
	}
	if from == "" || to == "" || !s.strictRange.Load() {
		return w, ""
	}
	switch {
	case w.from.After(w.to):
		return w, "query range: start_time is after end_time"
	case w.from.Year() != w.to.Year() || w.from.Month() != w.to.Month():
		return w, "query range: start_time and end_time must be within one calendar month"
	}
	return w, ""
}

// holds reports whether a record stamped sysdtm (UTC+8) is inside w. A sysdtm
// the sandbox cannot read is inside every range.
func (w span) holds(sysdtm string) bool {
	t, err := time.ParseInLocation(dtmLayout, sysdtm, qfpayZone)
	if err != nil {
		return true
	}
	return (w.from.IsZero() || !t.Before(w.from)) && (w.to.IsZero() || !t.After(w.to))
}
