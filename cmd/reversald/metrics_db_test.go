package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// TestMetricsLagAndBrokersDown: the consumer lag is served per partition,
// and brokers that do not answer never fail the scrape.
func TestMetricsLagAndBrokersDown(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "lagm", 2)
	kafkatest.Produce(t, brokers, topic, kafka.Message{Key: []byte("a"), Value: []byte("v")}, kafka.Message{Key: []byte("b"), Value: []byte("v")})
	m := newMetrics(prometheus.NewRegistry(), nil)
	watchKafka(t, m, brokers, kafkatest.RandomName("g"), topic)
	// A second registry whose brokers are gone (a closed port).
	down := newMetrics(prometheus.NewRegistry(), nil)
	watchKafka(t, down, []string{"127.0.0.1:1"}, "g", topic)
	// A fresh broker answers a new group's offsets only once its offsets
	// topic exists: until then the collector says 0, as it should.
	var up string
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		up = scrapeMetrics(t, m)
		return strings.Contains(up, `reversald_collector_up{collector="kafka"} 1`)
	}, "the brokers to answer the group's offsets")
	if !strings.Contains(up, `reversald_collector_up{collector="kafka"} 1`) || !strings.Contains(up, `reversald_consumer_lag{partition="0"}`) || !strings.Contains(up, `reversald_consumer_lag{partition="1"}`) {
		t.Errorf("with brokers up, /metrics lacks the lag:\n%s", grepLines(up, "reversald_c"))
	}
	gone := scrapeMetrics(t, down)
	if !strings.Contains(gone, `reversald_collector_up{collector="kafka"} 0`) || strings.Contains(gone, "reversald_consumer_lag{") || !strings.Contains(gone, "reversald_build_info") {
		t.Errorf("with brokers gone:\n%s", grepLines(gone, "reversald_c"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsSurviveTheDatabase: /metrics answers 200 with every series of
// its own whether PostgreSQL answers or not; the database gauges come and go,
// and reversald_collector_up says which.
func TestMetricsSurviveTheDatabase(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), storetest.URL(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev := reversald.Event{EventID: "m-1", MchID: "M1", OutTradeNo: "O1", TxAmt: 2500, TxCurrCd: "HKD", TxDtm: "2026-11-29 10:00:00", PayType: "800101"}
	if _, err := st.Intake(context.Background(), []reversald.Event{ev}); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry(), st)
	up := scrapeMetrics(t, m)
	for _, want := range []string{
		`reversald_collector_up{collector="database"} 1`,
		`reversald_attempts{status="pending"} 1`,
		`reversald_attempts{status="needs_review"} 0`,
		`reversald_attempts_pending 1`,
		`reversald_outbox_backlog 0`,
		`reversald_oldest_unpublished_outcome_age_seconds 0`,
		`reversald_build_info{goversion="go`,
	} {
		if !strings.Contains(up, want) {
			t.Errorf("with the database up, /metrics lacks %q", want)
		}
	}
	if !strings.Contains(up, "reversald_oldest_pending_attempt_age_seconds ") {
		t.Error("no oldest pending age")
	}

	st.Close() // the database is gone for this process
	done := make(chan error, 1)
	var down string
	go func() {
		var err error
		down, err = getMetrics(m)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err) // a scrape must answer 200 with the database gone
		}
	case <-time.After(10 * time.Second):
		t.Fatal("/metrics hung with the database gone")
	}
	if !strings.Contains(down, `reversald_collector_up{collector="database"} 0`) {
		t.Error("with the database gone, reversald_collector_up is not 0")
	}
	for _, want := range []string{"reversald_dlq_total", "reversald_claim_seconds", "reversald_build_info", "go_goroutines", "reversald_events_in_total"} {
		if !strings.Contains(down, want) {
			t.Errorf("with the database gone, /metrics lacks %s", want)
		}
	}
	if strings.Contains(down, "reversald_attempts_pending ") {
		t.Error("a database gauge was served without the database")
	}
}

// watchKafka adds the lag collector to m until the test ends.
func watchKafka(t *testing.T, m *metrics, brokers []string, group, topic string) {
	t.Helper()
	closeLag, err := m.watchKafka(brokers, consumer.Security{}, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeLag)
}

// scrapeMetrics reads m's /metrics, which must answer 200.
func scrapeMetrics(t *testing.T, m *metrics) string {
	t.Helper()
	body, err := getMetrics(m)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func getMetrics(m *metrics) (string, error) {
	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("/metrics answered %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}
