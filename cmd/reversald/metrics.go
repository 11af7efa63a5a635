package main

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/reversal"
	"github.com/reversald/reversald/store"
)

// metrics counts what intake, executor and publisher report through their hooks, and asks
// PostgreSQL for the backlogs at scrape time. It only counts; no part of the daemon depends
// on it (the publisher's wake-up is wired in daemon).
type metrics struct {
	reg *prometheus.Registry

	calls    *prometheus.CounterVec
	callTime *prometheus.HistogramVec
	steps    *prometheus.HistogramVec
	claims   prometheus.Histogram
	finals   *prometheus.CounterVec
	paceWait *prometheus.HistogramVec
	pauses   prometheus.Counter

	eventsIn                                     *prometheus.CounterVec
	dlq, batches, retries, commitErrs, fetchErrs prometheus.Counter

	published, publishErrs prometheus.Counter

	credReloads, credReloadErrs prometheus.Counter

	purged, purgeErrs prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, st *store.Store) *metrics {
	m := &metrics{
		reg: reg,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reversald_gateway_calls_total", Help: "QFPay calls by endpoint and result class.",
		}, []string{"endpoint", "class"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reversald_gateway_call_seconds", Help: "QFPay call latency by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"endpoint"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reversald_step_seconds", Help: "Executor step duration (gateway call and decision) by step.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"step"}),
		claims: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "reversald_claim_seconds", Help: "Time to claim a batch of attempts.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}),
		finals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reversald_attempts_final_total", Help: "Attempts decided by this instance, by outcome status.",
		}, []string{"status"}),

		paceWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reversald_pacing_wait_seconds", Help: "Time a gateway call waited for its merchant's slot, by whether it got one.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"result"}),
		pauses: counter("reversald_merchant_pauses_total", "Merchants held back for every instance after QFPay answered 429 or Retry-After."),

		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reversald_events_in_total", Help: "Input events recorded, by what intake did with them.",
		}, []string{"result"}),
		dlq:        counter("reversald_dlq_total", "Invalid events written to the dead-letter topic."),
		batches:    counter("reversald_intake_batches_total", "Intake batches recorded and committed."),
		retries:    counter("reversald_intake_retries_total", "Intake batch writes that failed and were retried."),
		commitErrs: counter("reversald_intake_commit_errors_total", "Offset commits that failed (the batch is durable and will be redelivered)."),
		fetchErrs:  counter("reversald_intake_fetch_errors_total", "Errors from the consumer-group reader (broker unreachable, rebalances)."),

		published:   counter("reversald_outcomes_published_total", "Outcome messages acknowledged by Kafka."),
		publishErrs: counter("reversald_publish_errors_total", "Publisher rounds that failed and were retried."),

		credReloads:    counter("reversald_credentials_reloads_total", "QFPay credential sets reloaded (SIGHUP or a changed file) and in use."),
		credReloadErrs: counter("reversald_credentials_reload_errors_total", "QFPay credential reloads refused (the set in use was kept)."),

		purged:    counter("reversald_purged_attempts_total", "Final attempts this instance's periodic purge deleted (PURGE_OLDER_THAN)."),
		purgeErrs: counter("reversald_purge_errors_total", "Periodic purges that failed (tried again at the next PURGE_INTERVAL)."),
	}
	for _, r := range []string{"new", "attached", "duplicate", "conflict", "invalid"} {
		m.eventsIn.WithLabelValues(r) // every result is exported from the start, at 0
	}
	reg.MustRegister(m.calls, m.callTime, m.steps, m.claims, m.finals, m.paceWait, m.pauses,
		m.eventsIn, m.dlq, m.batches, m.retries, m.commitErrs, m.fetchErrs, m.published, m.publishErrs,
		m.credReloads, m.credReloadErrs, m.purged, m.purgeErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reversald_build_info", Help: "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": versionString(), "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	if st != nil { // nil only in tests of the hooks alone
		reg.MustRegister(newDatabaseCollector(st))
	}
	return m
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func (m *metrics) executorHooks() reversal.ExecutorHooks {
	return reversal.ExecutorHooks{
		Call: func(endpoint string, class qfpay.Class, d time.Duration) {
			m.calls.WithLabelValues(endpoint, class.String()).Inc()
			m.callTime.WithLabelValues(endpoint).Observe(d.Seconds())
		},
		Step:    func(step reversald.Step, d time.Duration) { m.steps.WithLabelValues(string(step)).Observe(d.Seconds()) },
		Claimed: func(_ int, d time.Duration) { m.claims.Observe(d.Seconds()) },
		Final:   func(status reversald.Status) { m.finals.WithLabelValues(string(status)).Inc() },
		PaceWait: func(d time.Duration, ok bool) {
			result := "slot"
			if !ok {
				result = "none"
			}
			m.paceWait.WithLabelValues(result).Observe(d.Seconds())
		},
		Paused: func(string, time.Duration) { m.pauses.Inc() },
	}
}

func (m *metrics) intakeHooks() consumer.IntakeHooks {
	// store.EventRejected is not among them: it is counted as invalid once dead-lettered.
	results := map[store.EventStatus]prometheus.Counter{
		store.EventNew:       m.eventsIn.WithLabelValues("new"),
		store.EventAttached:  m.eventsIn.WithLabelValues("attached"),
		store.EventDuplicate: m.eventsIn.WithLabelValues("duplicate"),
		store.EventConflict:  m.eventsIn.WithLabelValues("conflict"),
	}
	invalid := m.eventsIn.WithLabelValues("invalid")
	return consumer.IntakeHooks{
		Batch: func(int) { m.batches.Inc() },
		Recorded: func(st store.EventStatus) {
			if c, ok := results[st]; ok {
				c.Inc()
			}
		},
		DeadLettered: func(n int) { invalid.Add(float64(n)); m.dlq.Add(float64(n)) },
		Retry:        m.retries.Inc,
		CommitError:  m.commitErrs.Inc,
		FetchError:   m.fetchErrs.Inc,
	}
}

func (m *metrics) publisherHooks() consumer.PublisherHooks {
	return consumer.PublisherHooks{
		Published: func(n int) { m.published.Add(float64(n)) },
		Error:     m.publishErrs.Inc,
	}
}

func (m *metrics) reloadHooks() reloadHooks {
	return reloadHooks{Reloaded: m.credReloads.Inc, Refused: m.credReloadErrs.Inc}
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// databaseCollector asks PostgreSQL for the backlog at scrape time. A
// database that does not answer never fails the scrape: the collector says
// so in reversald_collector_up{collector="database"} and the rest of
// /metrics is still served.
type databaseCollector struct {
	st                                               *store.Store
	up, pending, outbox, oldestPending, oldestOutbox *prometheus.Desc
	byStatus                                         *prometheus.Desc
}

func newDatabaseCollector(st *store.Store) databaseCollector {
	return databaseCollector{st: st,
		up: prometheus.NewDesc("reversald_collector_up", "1 when the collector could read its source at this scrape, else 0.",
			nil, prometheus.Labels{"collector": "database"}),
		pending: prometheus.NewDesc("reversald_attempts_pending", "Attempts not yet final (all instances).", nil, nil),
		outbox:  prometheus.NewDesc("reversald_outbox_backlog", "Outcomes not yet published (all instances).", nil, nil),
		oldestPending: prometheus.NewDesc("reversald_oldest_pending_attempt_age_seconds",
			"Age of the oldest attempt not yet final, since its first event (0 when none).", nil, nil),
		oldestOutbox: prometheus.NewDesc("reversald_oldest_unpublished_outcome_age_seconds",
			"Age of the oldest outcome not yet published (0 when none).", nil, nil),
		byStatus: prometheus.NewDesc("reversald_attempts", "Attempts by status (all instances, all time).", []string{"status"}, nil),
	}
}

func (c databaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.pending, c.outbox, c.oldestPending, c.oldestOutbox, c.byStatus} {
		ch <- d
	}
}

func (c databaseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.st.Backlog(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(b.Pending))
	ch <- prometheus.MustNewConstMetric(c.outbox, prometheus.GaugeValue, float64(b.Outbox))
	ch <- prometheus.MustNewConstMetric(c.oldestPending, prometheus.GaugeValue, b.OldestPending.Seconds())
	ch <- prometheus.MustNewConstMetric(c.oldestOutbox, prometheus.GaugeValue, b.OldestOutbox.Seconds())
	for st, n := range b.ByStatus {
		ch <- prometheus.MustNewConstMetric(c.byStatus, prometheus.GaugeValue, float64(n), string(st))
	}
}

// kafkaCollector asks the brokers for the group's lag on the input topic at
// scrape time. Brokers that do not answer never fail the scrape:
// reversald_collector_up{collector="kafka"} says so.
type kafkaCollector struct {
	lr           *consumer.LagReader
	group, topic string
	up, lag      *prometheus.Desc
}

// watchKafka serves the group's lag on topic; the returned func closes the
// collector's connections.
func (m *metrics) watchKafka(brokers []string, sec consumer.Security, group, topic string) (func(), error) {
	lr, err := consumer.NewLagReader(brokers, sec)
	if err != nil {
		return nil, err
	}
	m.reg.MustRegister(kafkaCollector{lr: lr, group: group, topic: topic,
		up: prometheus.NewDesc("reversald_collector_up", "1 when the collector could read its source at this scrape, else 0.",
			nil, prometheus.Labels{"collector": "kafka"}),
		lag: prometheus.NewDesc("reversald_consumer_lag", "Input messages not yet committed by the consumer group, by partition.",
			[]string{"partition"}, nil),
	})
	return lr.Close, nil
}

func (c kafkaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up; ch <- c.lag }

func (c kafkaCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	lag, err := c.lr.Lag(ctx, c.group, c.topic)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for p, n := range lag {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(n), strconv.Itoa(p))
	}
}
