// Command demo runs reversald end to end on the local stack, for `make demo`:
// it starts the QFPay sandbox and the daemon as real processes, produces a
// handful of realistic POS events (one of each outcome, a duplicate, a
// conflicting duplicate and an invalid one), prints the outcomes and the dead
// letter as tables, and stops everything. It exits non-zero if an outcome is
// not the one expected, so the demo is also a check.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay"
)

const (
	appCode = "DEMOAPPCODE"
	mchid   = "MNxMp11FV35qQN"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type posEvent struct {
	EventID    string `json:"event_id"`
	OutTradeNo string `json:"out_trade_no"`
	MchID      string `json:"mchid"`
	TxAmt      int64  `json:"txamt"`
	TxCurrCd   string `json:"txcurrcd"`
	TxDtm      string `json:"txdtm"`
	PayType    string `json:"pay_type"`
	Udid       string `json:"udid"`
	Reason     string `json:"reason"`
	OccurredAt string `json:"occurred_at"`
}

func run(ctx context.Context) error {
	dbURL, brokers := os.Getenv("DATABASE_URL"), os.Getenv("KAFKA_BROKERS")
	if dbURL == "" || brokers == "" {
		return errors.New("DATABASE_URL and KAFKA_BROKERS must be set: run `make demo` (it starts the stack), or `make up && . .stack/env`")
	}
	id := time.Now().Format("20060102150405")
	work := filepath.Join(".stack", "demo-"+id)
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	say("building reversald and qfpay-sandbox")
	for _, c := range []string{"reversald", "qfpay-sandbox"} {
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(work, c), "./cmd/"+c).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", c, err, out)
		}
	}
	keyFile := filepath.Join(work, "client-key")
	if err := os.WriteFile(keyFile, []byte("demo-client-key-"+id+"\n"), 0o600); err != nil {
		return err
	}

	// A database of its own, dropped at the end.
	db := "demo_" + id
	if err := adminSQL(ctx, dbURL, "CREATE DATABASE "+db); err != nil {
		return err
	}
	defer adminSQL(context.WithoutCancel(ctx), dbURL, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") //nolint:errcheck // best effort
	demoDB, err := withDatabase(dbURL, db)
	if err != nil {
		return err
	}

	sbAddr, httpAddr := freeAddr(), freeAddr()
	say("starting the QFPay sandbox on " + sbAddr)
	sb, err := start(filepath.Join(work, "qfpay-sandbox"), filepath.Join(work, "sandbox.log"),
		[]string{"-addr", sbAddr, "-appcode", appCode}, []string{"QFPAY_SANDBOX_KEY_FILE=" + keyFile})
	if err != nil {
		return err
	}
	defer func() { _ = sb.stop() }()
	if err := waitHTTP(ctx, "http://"+sbAddr+"/_sandbox/txns"); err != nil {
		return err
	}

	now := time.Now()
	txdtm := now.Add(-2 * time.Minute).Format(qfpay.TxDtmLayout)
	mk := func(otn, payType string, amt int64) posEvent {
		return posEvent{EventID: "pos-" + otn, OutTradeNo: otn, MchID: mchid, TxAmt: amt, TxCurrCd: "HKD", TxDtm: txdtm,
			PayType: payType, Udid: "POS-TERM-07", Reason: "timeout", OccurredAt: now.UTC().Format(time.RFC3339)}
	}
	type scenario struct {
		ev     posEvent
		state  string // sandbox state; "" = QFPay never saw it
		want   string
		what   string
		noSeed bool
	}
	scenarios := []scenario{
		{ev: mk("ORD-1001", "800108", 2500), state: "in_flight", want: "reversed", what: "Alipay CPM still in flight: reversed"},
		{ev: mk("ORD-1002", "800201", 4800), state: "in_flight", want: "closed", what: "WeChat MPM still in flight: closed"},
		{ev: mk("ORD-1003", "800208", 1200), state: "paid", want: "paid", what: "paid before we got there: refund it"},
		{ev: mk("ORD-1004", "800101", 990), state: "refunded", want: "refunded", what: "already refunded"},
		{ev: mk("ORD-1005", "800101", 15000), state: "failed", want: "not_paid", what: "the payment failed: nothing charged"},
		{ev: mk("ORD-1006", "800101", 3300), want: "not_found", what: "QFPay never saw it", noSeed: true},
		{ev: mk("ORD-1007", "801501", 7000), state: "in_flight", want: "unsupported", what: "Hong Kong-only pay type: cannot be cancelled by API"},
	}
	var txns []map[string]any
	for _, s := range scenarios {
		if s.noSeed {
			continue
		}
		txns = append(txns, map[string]any{"mchid": mchid, "out_trade_no": s.ev.OutTradeNo, "state": s.state,
			"pay_type": s.ev.PayType, "txamt": s.ev.TxAmt, "txdtm": s.ev.TxDtm})
	}
	if err := postJSON(ctx, "http://"+sbAddr+"/_sandbox/txns", txns); err != nil {
		return fmt.Errorf("seed the sandbox: %w", err)
	}

	topics := map[string]string{
		"KAFKA_INPUT_TOPIC": "demo-" + id + ".payment-uncertain", "KAFKA_DLQ_TOPIC": "demo-" + id + ".payment-uncertain.dlq",
		"KAFKA_RESULTS_TOPIC": "demo-" + id + ".payment-reversal-results",
	}
	env := []string{
		"DATABASE_URL=" + demoDB, "KAFKA_BROKERS=" + brokers, "KAFKA_GROUP_ID=demo-" + id,
		"KAFKA_CREATE_TOPICS=true", "KAFKA_TOPIC_PARTITIONS=3", "KAFKA_TOPIC_REPLICATION=1",
		"QFPAY_BASE_URL=http://" + sbAddr, "QFPAY_APP_CODE=" + appCode, "QFPAY_CLIENT_KEY_FILE=" + keyFile,
		"HTTP_ADDR=" + httpAddr, "EXECUTOR_BACKOFF_BASE=200ms", "EXECUTOR_BACKOFF_MAX=1s", "EXECUTOR_POLL_INTERVAL=200ms",
		"NOT_FOUND_RECHECKS=1", "LOG_LEVEL=info",
	}
	for k, v := range topics {
		env = append(env, k+"="+v)
	}
	say("starting reversald (health and metrics on http://" + httpAddr + ", logs in " + filepath.Join(work, "reversald.log") + ")")
	d, err := start(filepath.Join(work, "reversald"), filepath.Join(work, "reversald.log"), []string{"run"}, env)
	if err != nil {
		return err
	}
	defer func() { _ = d.stop() }() // the explicit stop below reports its error
	if err := waitHTTP(ctx, "http://"+httpAddr+"/readyz"); err != nil {
		return fmt.Errorf("%w\n%s", err, d.tail())
	}

	var msgs []kafka.Message
	for _, s := range scenarios {
		msgs = append(msgs, message(s.ev))
	}
	conflict := mk("ORD-1001", "800108", 2600)
	conflict.EventID = "pos-ORD-1001-b"
	msgs = append(msgs,
		message(scenarios[0].ev), // the same event again: a duplicate, no second outcome
		message(conflict),        // same order, another amount: a person must look
		kafka.Message{Key: []byte("ORD-1008"), Value: []byte(`{"event_id":"pos-ORD-1008","out_trade_no":"ORD-1008","txamt":"12.50","txdtm":"` + txdtm + `"}`)},
	)
	wantStatus := map[string]string{"pos-ORD-1001-b": "needs_review"}
	whatOf := map[string]string{"pos-ORD-1001-b": "same order, another amount: conflicting duplicate"}
	for _, s := range scenarios {
		wantStatus[s.ev.EventID], whatOf[s.ev.EventID] = s.want, s.what
	}
	say(fmt.Sprintf("producing %d POS events (one of each outcome, a duplicate, a conflicting duplicate, an invalid one)", len(msgs)))
	kc := kafkatest.Cluster{Brokers: strings.Split(brokers, ",")}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kc.Write(wctx, topics["KAFKA_INPUT_TOPIC"], msgs...)
	cancel()
	if err != nil {
		return err
	}

	say("waiting for the outcomes")
	outcomes, letters, err := collect(ctx, kc, topics["KAFKA_RESULTS_TOPIC"], topics["KAFKA_DLQ_TOPIC"], len(wantStatus), 1)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, d.tail())
	}
	fmt.Println()
	fmt.Println("Outcomes on " + topics["KAFKA_RESULTS_TOPIC"] + ":")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT_ID\tOUT_TRADE_NO\tTXAMT\tSTATUS\tMETHOD\tRESPCD\tCALLS\tSCENARIO")
	var bad []string
	sort.Slice(outcomes, func(i, j int) bool { return outcomes[i].EventID < outcomes[j].EventID })
	for _, o := range outcomes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", o.EventID, o.OutTradeNo, o.TxAmt, o.Status, o.Method, o.Respcd, o.GatewayCalls, whatOf[o.EventID])
		if wantStatus[o.EventID] != o.Status {
			bad = append(bad, fmt.Sprintf("%s: %s (%s), expected %s", o.EventID, o.Status, o.Reason, wantStatus[o.EventID]))
		}
	}
	tw.Flush()
	fmt.Println()
	fmt.Println("Dead letters on " + topics["KAFKA_DLQ_TOPIC"] + ":")
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tFROM\tERROR")
	for _, l := range letters {
		h := kafkatest.Headers(l)
		fmt.Fprintf(tw, "%s\t%s[%s]@%s\t%s\n", l.Key, h["x-dlq-topic"], h["x-dlq-partition"], h["x-dlq-offset"], h["x-dlq-error"])
	}
	tw.Flush()
	fmt.Println()
	fmt.Println("Gateway calls per order (from the sandbox's ledger; the duplicate and the conflict made none):")
	calls, err := ledger(ctx, "http://"+sbAddr)
	if err != nil {
		return err
	}
	fmt.Println("  " + calls)
	fmt.Println()

	say("stopping reversald (SIGTERM) and the sandbox")
	if err := d.stop(); err != nil {
		return fmt.Errorf("reversald did not stop cleanly: %w\n%s", err, d.tail())
	}
	if len(outcomes) != len(wantStatus) || len(letters) != 1 {
		bad = append(bad, fmt.Sprintf("%d outcomes and %d dead letters, expected %d and 1", len(outcomes), len(letters), len(wantStatus)))
	}
	if len(bad) > 0 {
		return fmt.Errorf("unexpected results:\n  %s", strings.Join(bad, "\n  "))
	}
	say("done: every event has its expected outcome")
	return nil
}

func say(s string) { fmt.Printf("== %s\n", s) }

func message(e posEvent) kafka.Message {
	v, _ := json.Marshal(e)
	return kafka.Message{Key: []byte(e.OutTradeNo), Value: v, Headers: []kafka.Header{{Key: "source", Value: []byte(e.Udid)}}}
}

type outcome struct {
	EventID      string `json:"event_id"`
	OutTradeNo   string `json:"out_trade_no"`
	Status       string `json:"status"`
	Method       string `json:"method"`
	Respcd       string `json:"respcd"`
	TxAmt        int64  `json:"txamt"`
	GatewayCalls int    `json:"gateway_calls"`
	Reason       string `json:"reason"`
}

// collect reads the results and DLQ topics until it has the expected counts,
// for at most a minute.
func collect(ctx context.Context, kc kafkatest.Cluster, results, dlq string, nOut, nDLQ int) ([]outcome, []kafka.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	outCol, err := kc.Collect(ctx, results)
	if err != nil {
		return nil, nil, err
	}
	defer outCol.Close()
	dlqCol, err := kc.Collect(ctx, dlq)
	if err != nil {
		return nil, nil, err
	}
	defer dlqCol.Close()
	// By event_id: an outcome delivered twice counts once.
	outcomes := func() map[string]outcome {
		outs := map[string]outcome{}
		for _, m := range outCol.Messages() {
			var o outcome
			if json.Unmarshal(m.Value, &o) == nil {
				outs[o.EventID] = o
			}
		}
		return outs
	}
	// A deadline leaves short counts, reported below.
	_ = kafkatest.Poll(ctx, func() bool { return len(outcomes()) >= nOut && dlqCol.Len() >= nDLQ })
	time.Sleep(300 * time.Millisecond) // anything unexpected shows up too
	outCol.Close()
	dlqCol.Close()
	var list []outcome
	for _, o := range outcomes() {
		list = append(list, o)
	}
	letters := dlqCol.Messages()
	if len(list) < nOut || len(letters) < nDLQ {
		return list, letters, fmt.Errorf("got %d outcomes and %d dead letters within a minute, expected %d and %d", len(list), len(letters), nOut, nDLQ)
	}
	return list, letters, nil
}

func ledger(ctx context.Context, base string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_sandbox/ledger", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("read the sandbox ledger: %w", err)
	}
	defer resp.Body.Close()
	var entries []struct {
		Endpoint   string `json:"endpoint"`
		OutTradeNo string `json:"out_trade_no"`
		Accepted   bool   `json:"accepted"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		return "", fmt.Errorf("decode the sandbox ledger: %w", err)
	}
	per := map[string][]string{}
	for _, e := range entries {
		s := e.Endpoint
		if e.Accepted {
			s += "(accepted)"
		}
		per[e.OutTradeNo] = append(per[e.OutTradeNo], s)
	}
	var keys []string
	for k := range per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s: %s", k, strings.Join(per[k], " -> ")))
	}
	return strings.Join(lines, "\n  "), nil
}

type process struct {
	cmd  *exec.Cmd
	log  string
	done chan error
	once sync.Once
	err  error
}

func start(bin, logPath string, args, env []string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...) //nolint:noctx // stopped with SIGTERM by stop, not killed by a context
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); _ = f.Close() }()
	return p, nil
}

// stop sends SIGTERM, waits up to 30s, then kills.
func (p *process) stop() error {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.err = <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			p.err = errors.New("did not stop within 30s of SIGTERM; killed")
			<-p.done //nolint:errcheck // killed: the error above says what happened
		}
	})
	return p.err
}

func (p *process) tail() string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 20 {
			lines = lines[1:]
		}
	}
	return "last lines of " + p.log + ":\n" + strings.Join(lines, "\n")
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not answer 200 within 60s", url)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func postJSON(ctx context.Context, url string, v any) error {
	b, _ := json.Marshal(v)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func adminSQL(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(sql)[0], err)
	}
	return nil
}

func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", errors.New("DATABASE_URL is not a URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}
