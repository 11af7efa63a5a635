package reversal

import (
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// queryRequest asks QFPay for the attempt's payment.
func queryRequest(a reversald.Attempt) qfpay.QueryRequest {
	q := qfpay.QueryRequest{MchID: a.MchID, OutTradeNo: a.OutTradeNo}
	// The query range defaults to the current month; look around txdtm so an
	// attempt that crosses a month boundary still finds its payment.
	if t, err := time.Parse(time.DateTime, a.TxDtm); err == nil {
		q.StartTime = t.Add(-24 * time.Hour).Format(time.DateTime)
		q.EndTime = t.Add(48 * time.Hour).Format(time.DateTime)
	}
	return q
}

// cancelRequest reverses or closes the attempt's payment.
func cancelRequest(a reversald.Attempt) qfpay.CancelRequest {
	return qfpay.CancelRequest{MchID: a.MchID, Syssn: a.Syssn, OutTradeNo: a.OutTradeNo, TxAmt: a.TxAmt, TxDtm: a.TxDtm, Udid: a.Udid}
}
