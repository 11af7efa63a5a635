package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// BenchmarkPacingProof is issue 9's proof of pacing shared by a group, run
// on its own (make pacing-proof: it takes as long as QFPay's limits make it
// take, about hot payments × 3 calls ÷ 380 a minute). Several daemons as
// processes share one sandbox that enforces QFPay's per-merchant limits
// (100/s, 400/min); hot merchants have a backlog, cold merchants a few
// payments each, produced after the hot ones; one daemon is SIGKILLed a
// third of the way in. It prints, per hot merchant, its calls per minute
// while backlogged, and the cold merchants' event-to-outcome latency, and
// fails on any 429, any lost outcome, or a broken ledger invariant.
//
// Sizes: PROOF_HOT (5), PROOF_HOT_PAYMENTS (2000), PROOF_COLD (200),
// PROOF_COLD_PAYMENTS (5), PROOF_INSTANCES (3).
func BenchmarkPacingProof(b *testing.B) {
	hot, hotN := proofInt("PROOF_HOT", 5), proofInt("PROOF_HOT_PAYMENTS", 2000)
	cold, coldN := proofInt("PROOF_COLD", 200), proofInt("PROOF_COLD_PAYMENTS", 5)
	instances := proofInt("PROOF_INSTANCES", 3)
	for range b.N {
		s := newStack(b, 12)
		s.sb.SetRateLimit(true)
		if err := s.sb.AddRule(sandbox.Rule{Prefix: "P", Behavior: sandbox.Behavior{InitialState: sandbox.StateInFlight}}); err != nil {
			b.Fatal(err)
		}
		out := s.collect(s.results)
		var procs []*proc
		for i := range instances {
			procs = append(procs, s.start(map[string]string{
				"INSTANCE_ID": fmt.Sprintf("i%d", i), "EXECUTOR_WORKERS": "32", "LOG_LEVEL": "warn",
				"MERCHANT_RATE_PER_MIN": "400", "PACING": "cluster", "EXECUTOR_BACKOFF_MAX": "5s",
				"ATTEMPT_DEADLINE": "24h", "CONFIRM_RECHECKS": "5",
			}))
		}
		s.waitGroupShared(instances)

		var hotMsgs, coldMsgs []kafka.Message
		for h := range hot {
			for i := range hotN {
				hotMsgs = append(hotMsgs, ev{id: fmt.Sprintf("e-PH%d-%05d", h, i), otn: fmt.Sprintf("PH%d-%05d", h, i), mchid: fmt.Sprintf("HOT%d", h)}.message())
			}
		}
		for c := range cold {
			for i := range coldN {
				coldMsgs = append(coldMsgs, ev{id: fmt.Sprintf("e-PC%03d-%d", c, i), otn: fmt.Sprintf("PC%03d-%d", c, i), mchid: fmt.Sprintf("COLD%03d", c)}.message())
			}
		}
		start := time.Now()
		s.produce(s.in, hotMsgs...)
		// The cold merchants come while the hot ones are backlogged.
		kafkatest.WaitFor(b, 5*time.Minute, func() bool { return out.Len() >= min(100, len(hotMsgs)/10) }, "the hot backlog to start draining")
		sent := make(map[string]time.Time, len(coldMsgs))
		for lo := 0; lo < len(coldMsgs); lo += 50 {
			hi := min(lo+50, len(coldMsgs))
			at := time.Now()
			s.produce(s.in, coldMsgs[lo:hi]...)
			for _, m := range coldMsgs[lo:hi] {
				sent[string(m.Key)] = at
			}
		}
		total := len(hotMsgs) + len(coldMsgs)
		expect := time.Duration(float64(hotN*3)/380*float64(time.Minute)) + 5*time.Minute
		killed := false
		kafkatest.WaitFor(b, expect, func() bool {
			if !killed && instances > 1 && out.Len() >= total/3 {
				procs[0].stop(b, syscall.SIGKILL) // the budget must hold without it
				killed = true
			}
			got, _ := out.outcomes(b)
			return len(got) >= total
		}, "an outcome per event")
		elapsed := time.Since(start)
		got, _ := out.outcomes(b)

		entries := s.sb.Entries()
		tooMany := 0
		calls := map[string][]time.Time{}
		for _, e := range entries {
			if e.HTTPStatus == 429 {
				tooMany++
			}
			calls[e.MchID] = append(calls[e.MchID], e.Time)
		}
		arrivals := out.Arrivals()
		var coldLat []time.Duration
		for key, at := range sent {
			if a, ok := arrivals[key]; ok {
				coldLat = append(coldLat, a.Sub(at))
			}
		}
		slices.Sort(coldLat)
		var table strings.Builder
		fmt.Fprintf(&table, "\n%-8s %8s %14s %12s\n", "merchant", "calls", "backlog", "calls/min")
		worst := 1e9
		for h := range hot {
			ts := calls[fmt.Sprintf("HOT%d", h)]
			slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
			if len(ts) < 2 {
				continue
			}
			span := ts[len(ts)-1].Sub(ts[0])
			perMin := float64(len(ts)-1) / span.Minutes()
			worst = min(worst, perMin)
			fmt.Fprintf(&table, "%-8s %8d %14s %12.1f\n", fmt.Sprintf("HOT%d", h), len(ts), span.Round(time.Second), perMin)
		}
		p99 := time.Duration(0)
		if len(coldLat) > 0 {
			p99 = coldLat[len(coldLat)*99/100]
			fmt.Fprintf(&table, "cold: %d payments, event-to-outcome p50 %s, p99 %s\n", len(coldLat), coldLat[len(coldLat)/2].Round(time.Millisecond), p99.Round(time.Millisecond))
		}
		fmt.Fprintf(&table, "429s: %d; outcomes %d of %d; %d instances, one SIGKILLed: %v; %s in all\n", tooMany, len(got), total, instances, killed, elapsed.Round(time.Second))
		b.Log(table.String())
		b.ReportMetric(worst, "hot_calls/min")
		b.ReportMetric(float64(p99.Milliseconds()), "cold_p99_ms")
		b.ReportMetric(float64(tooMany), "429s")
		if tooMany > 0 {
			b.Errorf("QFPay answered 429 %d times", tooMany)
		}
		if len(got) != total {
			b.Errorf("%d outcomes for %d events", len(got), total)
		}
		if err := s.sb.CheckInvariants(); err != nil {
			b.Error(err)
		}
	}
}

func proofInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
