package qfpay

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/reversald/reversald/qfpay/sandbox"
)

func BenchmarkSign(b *testing.B) {
	p := map[string]string{"mchid": testMchID, "out_trade_no": seedOTN, "txamt": "2500", "txdtm": seedTxDtm}
	k := NewKey(testKey)
	for _, st := range []SignType{SignMD5, SignSHA256} {
		b.Run(string(st), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Sign(p, k, st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQueryRoundTrip drives signed queries through an in-process sandbox
// over loopback HTTP, many distinct out_trade_nos, from parallel goroutines.
func BenchmarkQueryRoundTrip(b *testing.B) {
	sb, u := startSandbox(b, nil)
	if err := sb.AddRule(sandbox.Rule{Prefix: "B-", Behavior: sandbox.Behavior{InitialState: sandbox.StateInFlight}}); err != nil {
		b.Fatal(err)
	}
	c := testClient(b, u, nil)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			otn := "B-" + strconv.FormatInt(n.Add(1), 10)
			res, err := c.Query(context.Background(), QueryRequest{OutTradeNo: otn})
			if err != nil || len(res.Data) != 1 {
				b.Errorf("%s: %v", otn, err)
				return
			}
		}
	})
}

// BenchmarkAttemptRoundTrip is what one attempt costs the gateway side: query,
// reversal, confirming query, each on a distinct in-flight out_trade_no.
func BenchmarkAttemptRoundTrip(b *testing.B) {
	sb, u := startSandbox(b, nil)
	if err := sb.AddRule(sandbox.Rule{Prefix: "A-", Behavior: sandbox.Behavior{InitialState: sandbox.StateInFlight}}); err != nil {
		b.Fatal(err)
	}
	c := testClient(b, u, nil)
	var n atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			otn := "A-" + strconv.FormatInt(n.Add(1), 10)
			if _, err := c.Query(ctx, QueryRequest{OutTradeNo: otn}); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Reverse(ctx, cancelReq(otn)); err != nil {
				b.Error(err)
				return
			}
			q, err := c.Query(ctx, QueryRequest{OutTradeNo: otn})
			if err != nil || len(q.Data) != 1 || q.Data[0].State() != StateReversed {
				b.Errorf("%s: confirm %v", otn, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attempts/s")
}
