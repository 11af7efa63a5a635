package reversal

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// checkRanges holds queryRequests' answer for txdtm to QFPay's range rule
// (QFPAY.md §3): each range inside one calendar month, the month of txdtm
// first, and together, without gap or overlap, exactly txdtm-24h..txdtm+48h
// (when txdtm+48h is 00:00:00 on a 1st, that last second is a range of its
// own).
func checkRanges(t *testing.T, txdtm string, got []qfpay.QueryRequest) {
	t.Helper()
	at, err := time.Parse(qfpay.TxDtmLayout, txdtm)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(qfpay.TxDtmLayout, s)
		if err != nil {
			t.Fatalf("%s: range bound %q: %v", txdtm, s, err)
		}
		return v
	}
	if len(got) == 0 {
		t.Fatalf("%s: no query", txdtm)
	}
	if first := got[0]; first.StartTime > txdtm || txdtm > first.EndTime {
		t.Errorf("%s: the first range %s..%s does not hold txdtm", txdtm, first.StartTime, first.EndTime)
	}
	sorted := slices.Clone(got)
	slices.SortFunc(sorted, func(a, b qfpay.QueryRequest) int { return parse(a.StartTime).Compare(parse(b.StartTime)) })
	want := at.Add(-24 * time.Hour)
	for _, q := range sorted {
		from, to := parse(q.StartTime), parse(q.EndTime)
		if !from.Equal(want) {
			t.Errorf("%s: a range starts at %s, want %s (no gap, no overlap)", txdtm, q.StartTime, want.Format(qfpay.TxDtmLayout))
		}
		if to.Before(from) {
			t.Errorf("%s: range %s..%s ends before it starts", txdtm, q.StartTime, q.EndTime)
		}
		if from.Year() != to.Year() || from.Month() != to.Month() {
			t.Errorf("%s: range %s..%s crosses a calendar month", txdtm, q.StartTime, q.EndTime)
		}
		if err := q.Validate(); err != nil {
			t.Errorf("%s: %+v: %v", txdtm, q, err)
		}
		want = to.Add(time.Second)
	}
	to := at.Add(48 * time.Hour)
	if end := want.Add(-time.Second); !end.Equal(to) {
		t.Errorf("%s: the ranges end at %s, want txdtm+48h", txdtm, end.Format(qfpay.TxDtmLayout))
	}
}

func TestQueryRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		txdtm string
		want  [][2]string // start_time, end_time per query, in order
	}{
		{"mid-month: one range", "2026-11-15 12:00:00", [][2]string{
			{"2026-11-14 12:00:00", "2026-11-17 12:00:00"},
		}},
		{"end of November: November, then December", "2026-11-30 23:30:00", [][2]string{
			{"2026-11-29 23:30:00", "2026-11-30 23:59:59"},
			{"2026-12-01 00:00:00", "2026-12-02 23:30:00"},
		}},
		{"New Year's Eve: December, then January", "2026-12-31 23:00:00", [][2]string{
			{"2026-12-30 23:00:00", "2026-12-31 23:59:59"},
			{"2027-01-01 00:00:00", "2027-01-02 23:00:00"},
		}},
		{"ten to midnight on 31 October: October first", "2026-10-31 23:50:00", [][2]string{
			{"2026-10-30 23:50:00", "2026-10-31 23:59:59"},
			{"2026-11-01 00:00:00", "2026-11-02 23:50:00"},
		}},
		{"just after midnight on the 1st: its month first, then the month before", "2026-11-01 00:10:00", [][2]string{
			{"2026-11-01 00:00:00", "2026-11-03 00:10:00"},
			{"2026-10-31 00:10:00", "2026-10-31 23:59:59"},
		}},
		{"the last second of a month", "2026-11-30 23:59:59", [][2]string{
			{"2026-11-29 23:59:59", "2026-11-30 23:59:59"},
			{"2026-12-01 00:00:00", "2026-12-02 23:59:59"},
		}},
		{"leap day", "2028-02-28 12:00:00", [][2]string{
			{"2028-02-27 12:00:00", "2028-02-29 23:59:59"},
			{"2028-03-01 00:00:00", "2028-03-01 12:00:00"},
		}},
		{"the day before the 1st ends exactly at midnight", "2026-11-28 23:59:59", [][2]string{
			{"2026-11-27 23:59:59", "2026-11-30 23:59:59"},
		}},
	}
	for _, tt := range tests {
		a := reversald.Attempt{MchID: "MNxMp11FV35qQN", OutTradeNo: "O-1", TxDtm: tt.txdtm}
		got := queryRequests(a, "-0500")
		var ranges [][2]string
		for _, q := range got {
			ranges = append(ranges, [2]string{q.StartTime, q.EndTime})
			if q.MchID != a.MchID || q.OutTradeNo != a.OutTradeNo || q.TxZone != "-0500" || q.Syssn != "" {
				t.Errorf("%s: %+v does not ask for the attempt's payment in its txzone", tt.name, q)
			}
		}
		if !slices.Equal(ranges, tt.want) {
			t.Errorf("%s: ranges %v, want %v", tt.name, ranges, tt.want)
		}
		checkRanges(t, tt.txdtm, got)
	}
	// A txdtm intake let through but that does not parse: QFPay's default range.
	if got := queryRequests(reversald.Attempt{OutTradeNo: "O-2", TxDtm: "2026-11-30"}, ""); len(got) != 1 || got[0].StartTime != "" || got[0].EndTime != "" || got[0].OutTradeNo != "O-2" {
		t.Errorf("unparsable txdtm: %+v, want one query without a range", got)
	}
}

// TestQueryRequestsEveryHour checks the range rule for every hour (and the
// seconds around each midnight) from 2026 to the end of 2028.
func TestQueryRequestsEveryHour(t *testing.T) {
	t.Parallel()
	end := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	for at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); at.Before(end); at = at.Add(time.Hour) {
		for _, d := range []time.Duration{-time.Second, 0, time.Second} {
			txdtm := at.Add(d).Format(qfpay.TxDtmLayout)
			got := queryRequests(reversald.Attempt{OutTradeNo: "O-3", TxDtm: txdtm}, "")
			checkRanges(t, txdtm, got)
			if t.Failed() {
				t.Fatalf("stopped at %s: %s", txdtm, fmt.Sprint(got))
			}
		}
	}
}
