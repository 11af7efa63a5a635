package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/store"
)

// TestMetricsCountWhatTheHooksReport feeds every hook once or twice and reads
// the series it must move.
func TestMetricsCountWhatTheHooksReport(t *testing.T) {
	t.Parallel()
	m := newMetrics(prometheus.NewRegistry(), nil) // the store is only asked at scrape time

	in := m.intakeHooks()
	in.Batch(3)
	in.Batch(2)
	for _, s := range []store.EventStatus{store.EventNew, store.EventNew, store.EventAttached, store.EventDuplicate, store.EventConflict, store.EventRejected} {
		in.Recorded(s)
	}
	in.DeadLettered(2)
	in.Retry()
	in.CommitError()
	in.FetchError()
	pub := m.publisherHooks()
	pub.Published(4)
	pub.Error()
	ex := m.executorHooks()
	ex.Call("/trade/v1/query", qfpay.ClassSuccess, time.Millisecond)
	ex.Final(reversald.StatusReversed)
	rl := m.reloadHooks()
	rl.Reloaded()
	rl.Refused()
	rl.Refused()

	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"batches", m.batches, 2},
		{"events in: new", m.eventsIn.WithLabelValues("new"), 2},
		{"events in: attached", m.eventsIn.WithLabelValues("attached"), 1},
		{"events in: duplicate", m.eventsIn.WithLabelValues("duplicate"), 1},
		{"events in: conflict", m.eventsIn.WithLabelValues("conflict"), 1},
		{"events in: invalid (rejected ones once dead-lettered)", m.eventsIn.WithLabelValues("invalid"), 2},
		{"dlq", m.dlq, 2},
		{"retries", m.retries, 1},
		{"commit errors", m.commitErrs, 1},
		{"fetch errors", m.fetchErrs, 1},
		{"published", m.published, 4},
		{"publish errors", m.publishErrs, 1},
		{"gateway calls", m.calls, 1},
		{"finals", m.finals, 1},
		{"credential reloads", m.credReloads, 1},
		{"credential reloads refused", m.credReloadErrs, 2},
	} {
		if got := counterValue(t, c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
}

// counterValue is the sum of the counters c collects.
func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
