package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// TestProducerSeedsAndSends: every valid event names a payment the sandbox holds (or none,
// for the not-found scenario), and -count ends the run.
func TestProducerSeedsAndSends(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	topic := kafkatest.NewTopic(t, brokers, "pos", 2)
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: "A", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	got := kafkatest.Collect(t, brokers, topic)
	const n = 40
	env := map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "SANDBOX_URL": url, "KAFKA_INPUT_TOPIC": topic}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-rate", "200", "-count", "40"}, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return len(got.Messages()) >= n }, "40 events")
	seeded, valid := 0, 0
	for _, m := range got.Messages() {
		var ev struct {
			OutTradeNo string `json:"out_trade_no"`
			MchID      string `json:"mchid"`
			TxAmt      any    `json:"txamt"`
			EventID    string `json:"event_id"`
		}
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatalf("event is not JSON: %s", m.Value)
		}
		if string(m.Key) != ev.OutTradeNo {
			t.Errorf("key %q, out_trade_no %q", m.Key, ev.OutTradeNo)
		}
		if ev.EventID == "" {
			continue // the invalid kind
		}
		valid++
		if _, ok := sb.Get(ev.MchID, ev.OutTradeNo); ok {
			seeded++
		}
	}
	if len(got.Messages()) != n || valid == 0 || seeded == 0 || seeded > valid {
		t.Errorf("%d events, %d valid, %d seeded in the sandbox", len(got.Messages()), valid, seeded)
	}
}

// TestProducerConfig: missing settings are named, all at once.
func TestProducerConfig(t *testing.T) {
	t.Parallel()
	_, err := parseConfig([]string{"-rate", "0"}, func(string) string { return "" })
	for _, want := range []string{"KAFKA_BROKERS", "SANDBOX_URL", "-rate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if _, err := parseConfig([]string{"-bogus"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("an unknown flag: %v", err)
	}
}
