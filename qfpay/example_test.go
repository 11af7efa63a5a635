package qfpay_test

import (
	"context"
	"fmt"
	"time"

	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// Query first, then cancel by pay type, then confirm: the executor's path,
// against an in-process sandbox.
func Example() {
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: "APP", Key: "key"})
	if err != nil {
		panic(err)
	}
	defer stop()
	now := time.Now().Format(qfpay.TxDtmLayout)
	_ = sb.Put(sandbox.Txn{MchID: "M1", OutTradeNo: "ORDER-1", State: sandbox.StateInFlight, TxAmt: 2500, TxDtm: now})

	c, err := qfpay.New(qfpay.Config{BaseURL: url, AppCode: "APP", ClientKey: qfpay.NewKey("key"), MchID: "M1"})
	if err != nil {
		panic(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()

	q, err := c.Query(ctx, qfpay.QueryRequest{OutTradeNo: "ORDER-1"})
	rec, _ := q.Payment("ORDER-1")
	fmt.Println("query:", qfpay.Classify(err), rec.State())

	res, err := c.Cancel(ctx, rec.PayType, qfpay.CancelRequest{OutTradeNo: "ORDER-1", TxAmt: 2500, TxDtm: now})
	fmt.Println("cancel:", res.Method, qfpay.Classify(err))

	_, err = c.Cancel(ctx, rec.PayType, qfpay.CancelRequest{OutTradeNo: "ORDER-1", TxAmt: 2500, TxDtm: now})
	fmt.Println("again:", qfpay.Classify(err))

	q, _ = c.Query(ctx, qfpay.QueryRequest{OutTradeNo: "ORDER-1"})
	rec, _ = q.Payment("ORDER-1")
	fmt.Println("confirm:", rec.State(), "accepted cancels:", sb.AcceptedCancels("ORDER-1"))

	_, err = c.Cancel(ctx, "801501", qfpay.CancelRequest{OutTradeNo: "ORDER-2", TxAmt: 1, TxDtm: now})
	fmt.Println("hong kong wallet:", qfpay.Classify(err))
	// Output:
	// query: success in_flight
	// cancel: reversal success
	// again: already_cancelled
	// confirm: reversed accepted cancels: 1
	// hong kong wallet: unsupported
}
