package reversal

import (
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// queryRequests asks QFPay for the attempt's payment. QFPay filters by its
// own system time, defaults to the current month, and requires a range to
// stay inside one calendar month (QFPAY.md §3): the window around txdtm
// (a day before to two days after) is cut at month boundaries, one query per
// month, the month holding txdtm first. txdtm is wall-clock time in txZone
// (QFPay's default, UTC+8, when empty), so month boundaries are read on it
// as it is.
func queryRequests(a reversald.Attempt, txZone string) []qfpay.QueryRequest {
	base := qfpay.QueryRequest{MchID: a.MchID, OutTradeNo: a.OutTradeNo, TxZone: txZone}
	t, err := time.Parse(qfpay.TxDtmLayout, a.TxDtm)
	if err != nil {
		return []qfpay.QueryRequest{base} // validated at intake; QFPay's default range
	}
	from, to := t.Add(-24*time.Hour), t.Add(48*time.Hour)
	var out []qfpay.QueryRequest
	for start := from; !start.After(to); {
		monthEnd := time.Date(start.Year(), start.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
		end := to
		if monthEnd.Before(to) {
			end = monthEnd
		}
		q := base
		q.StartTime, q.EndTime = start.Format(qfpay.TxDtmLayout), end.Format(qfpay.TxDtmLayout)
		out = append(out, q)
		start = monthEnd.Add(time.Second)
	}
	// The month of txdtm first: that is where the payment almost always is.
	for i, q := range out {
		if q.StartTime <= a.TxDtm && a.TxDtm <= q.EndTime {
			out[0], out[i] = out[i], out[0]
			break
		}
	}
	return out
}

// cancelRequest reverses or closes the attempt's payment.
func cancelRequest(a reversald.Attempt) qfpay.CancelRequest {
	return qfpay.CancelRequest{MchID: a.MchID, Syssn: a.Syssn, OutTradeNo: a.OutTradeNo, TxAmt: a.TxAmt, TxDtm: a.TxDtm, Udid: a.Udid}
}
