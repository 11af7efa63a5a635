// Command pos-producer plays a fleet of POS terminals for docker-compose.yml: it seeds
// payments in the QFPay sandbox (its unsigned admin surface) and emits a payment-uncertain
// event for each to Kafka at a steady rate, so that `docker compose up` shows the flow on the
// dashboard. A mix: most payments still in flight (reversed or closed), some paid, some
// unknown to QFPay, and now and then an invalid event for the dead-letter topic.
//
// For demos only: it talks to the sandbox, never to QFPay.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/qfpay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pos-producer: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	brokers    []string
	topic      string
	sandboxURL string
	mchid      string
	rate       float64
	count      int
}

func parseConfig(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("pos-producer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := config{}
	brokers := fs.String("brokers", getenv("KAFKA_BROKERS"), "Kafka brokers, host:port,... (KAFKA_BROKERS)")
	fs.StringVar(&c.topic, "topic", cmpOr(getenv("KAFKA_INPUT_TOPIC"), "payment-uncertain"), "input topic (KAFKA_INPUT_TOPIC)")
	fs.StringVar(&c.sandboxURL, "sandbox", getenv("SANDBOX_URL"), "the QFPay sandbox's base URL (SANDBOX_URL)")
	fs.StringVar(&c.mchid, "mchid", cmpOr(getenv("QFPAY_MCHID"), "MNxMp11FV35qQN"), "merchant of the payments")
	fs.Float64Var(&c.rate, "rate", 2, "events per second")
	fs.IntVar(&c.count, "count", 0, "events to send, then exit (0: until stopped)")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w\nusage: pos-producer [-brokers B] [-topic T] [-sandbox URL] [-rate N] [-count N]", err)
	}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	var errs []error
	if len(c.brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS (or -brokers) is required"))
	}
	if c.sandboxURL == "" {
		errs = append(errs, errors.New("SANDBOX_URL (or -sandbox) is required"))
	}
	if c.rate <= 0 || c.rate > 1000 {
		errs = append(errs, fmt.Errorf("-rate must be in (0, 1000], got %v", c.rate))
	}
	if c.count < 0 {
		errs = append(errs, fmt.Errorf("-count must be at least 0, got %d", c.count))
	}
	return c, errors.Join(errs...)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// scenario is what the sandbox holds for a payment before its event.
type scenario struct {
	state   string // "" leaves the sandbox without the payment (not_found)
	payType string
}

var scenarios = []struct {
	weight int
	s      scenario
}{
	{60, scenario{"in_flight", "800101"}}, // reversed
	{15, scenario{"in_flight", "800201"}}, // closed
	{15, scenario{"paid", "800101"}},      // paid: refund it
	{8, scenario{"", "800101"}},           // not_found after the re-checks
}

func run(ctx context.Context, args []string, getenv func(string) string, logw io.Writer) error {
	c, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(logw, nil))
	w := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Topic: c.topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, AllowAutoTopicCreation: true, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	hc := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
	defer tick.Stop()
	run := time.Now().UTC().Format("150405")
	for i := 1; c.count == 0 || i <= c.count; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		msg, err := c.next(ctx, hc, fmt.Sprintf("POS%s%06d", run, i))
		if err != nil {
			log.Warn("payment not seeded; retrying at the next tick", "error", err.Error())
			continue
		}
		if err := w.WriteMessages(ctx, msg); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("event not written; retrying at the next tick", "error", err.Error())
			continue
		}
		if i%50 == 0 {
			log.Info("events sent", "count", i)
		}
	}
	return nil
}

// next seeds one payment (or none) and returns its event; one in fifty is invalid.
func (c config) next(ctx context.Context, hc *http.Client, otn string) (kafka.Message, error) {
	if rand.IntN(50) == 0 {
		return kafka.Message{Key: []byte(otn), Value: []byte(`{"out_trade_no":"` + otn + `","txamt":"lots"}`)}, nil
	}
	s := pick()
	amt := int64(100 + rand.IntN(50_000))
	txdtm := time.Now().In(time.FixedZone("+0800", 8*3600)).Add(-30 * time.Second).Format(qfpay.TxDtmLayout)
	if s.state != "" {
		seed, _ := json.Marshal(map[string]any{"mchid": c.mchid, "out_trade_no": otn, "state": s.state,
			"pay_type": s.payType, "txamt": amt, "txdtm": txdtm})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.sandboxURL, "/")+"/_sandbox/txns", bytes.NewReader(seed))
		if err != nil {
			return kafka.Message{}, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return kafka.Message{}, fmt.Errorf("seed %s: %w", otn, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close() // the body was read to the end; nothing to report
		if resp.StatusCode/100 != 2 {
			return kafka.Message{}, fmt.Errorf("seed %s: sandbox answered %s", otn, resp.Status)
		}
	}
	v, _ := json.Marshal(map[string]any{"event_id": "ev-" + otn, "out_trade_no": otn, "mchid": c.mchid,
		"txamt": amt, "txcurrcd": "HKD", "txdtm": txdtm, "pay_type": s.payType, "reason": "timeout",
		"occurred_at": time.Now().UTC().Format(time.RFC3339)})
	return kafka.Message{Key: []byte(otn), Value: v}, nil
}

func pick() scenario {
	total := 0
	for _, s := range scenarios {
		total += s.weight
	}
	n := rand.IntN(total)
	for _, s := range scenarios {
		if n < s.weight {
			return s.s
		}
		n -= s.weight
	}
	return scenarios[0].s
}
