package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/store/storetest"
)

// The end-to-end tests' harness: a stack per test (database, topics, group, sandbox), the
// daemon in process (run) or as a process (the built binary), and what the tests read back.

const (
	e2eAppCode = "E2EAPPCODE"
	e2eMchID   = "MNxMp11FV35qQN"
)

// stack is one test's world: its own database, topics and group on the real
// PostgreSQL and Kafka, and an in-process QFPay sandbox.
type stack struct {
	t                       testing.TB
	brokers                 []string
	dbURL                   string
	sb                      *sandbox.Sandbox
	sbURL                   string
	in, dlq, results, group string
}

func newStack(t testing.TB, partitions int) *stack {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	sb, url, stop, err := sandbox.Start(sandbox.Config{AppCode: e2eAppCode, Key: secretKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	s := &stack{
		t: t, brokers: brokers, dbURL: storetest.URL(t), sb: sb, sbURL: url,
		in: kafkatest.RandomName("in"), dlq: kafkatest.RandomName("dlq"), results: kafkatest.RandomName("out"),
		group: kafkatest.RandomName("g"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Cluster.CreateTopic rather than kafkatest.NewTopic: these topics are not deleted when the
	// test ends.
	c := kafkatest.Cluster{Brokers: brokers}
	for _, tp := range []struct {
		name string
		n    int
	}{{s.in, partitions}, {s.dlq, 1}, {s.results, partitions}} {
		if err := c.CreateTopic(ctx, tp.name, tp.n); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// waitGroupShared waits until the test's consumer group has n members that
// each hold a partition of the input topic.
func (s *stack) waitGroupShared(n int) {
	s.t.Helper()
	kafkatest.WaitMembers(s.t, s.brokers, s.group, s.in, n)
}

func (s *stack) env(extra map[string]string) map[string]string {
	env := map[string]string{
		"DATABASE_URL": s.dbURL, "KAFKA_BROKERS": strings.Join(s.brokers, ","),
		"KAFKA_INPUT_TOPIC": s.in, "KAFKA_DLQ_TOPIC": s.dlq, "KAFKA_RESULTS_TOPIC": s.results, "KAFKA_GROUP_ID": s.group,
		"QFPAY_BASE_URL": s.sbURL, "QFPAY_APP_CODE": e2eAppCode, "QFPAY_CLIENT_KEY": secretKey, "QFPAY_TIMEOUT": "2s",
		"HTTP_ADDR": "127.0.0.1:0", "EXECUTOR_LEASE": "10s", "EXECUTOR_POLL_INTERVAL": "50ms",
		"EXECUTOR_BACKOFF_BASE": "50ms", "EXECUTOR_BACKOFF_MAX": "400ms", "NOT_FOUND_RECHECKS": "1",
		"CONFIRM_RECHECKS": "2", "MERCHANT_RATE_PER_MIN": "-1", "PUBLISH_INTERVAL": "50ms", "SHUTDOWN_TIMEOUT": "15s",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

type ev struct {
	id, otn, payType string
	amt              int64
	txdtm            string // default: defaultTxDtm
	mchid            string // default: e2eMchID
}

// defaultTxDtm is the txdtm of every event that names none: one value for
// the whole run, so that two events for one payment built a second apart are
// not a conflicting duplicate by accident.
var defaultTxDtm = time.Now().Add(-time.Minute).Format(qfpay.TxDtmLayout)

func (e ev) message() kafka.Message {
	pt := e.payType
	if pt == "" {
		pt = "800101"
	}
	amt := e.amt
	if amt == 0 {
		amt = 2500
	}
	txdtm := e.txdtm
	if txdtm == "" {
		txdtm = defaultTxDtm
	}
	v, _ := json.Marshal(map[string]any{
		"event_id": e.id, "out_trade_no": e.otn, "mchid": cmp.Or(e.mchid, e2eMchID), "txamt": amt, "txcurrcd": "HKD",
		"txdtm": txdtm, "pay_type": pt, "reason": "timeout",
		"occurred_at": time.Now().UTC().Format(time.RFC3339),
	})
	return kafka.Message{Key: []byte(e.otn), Value: v, Headers: []kafka.Header{{Key: "source", Value: []byte("pos-7")}}}
}

func (s *stack) seed(otn string, state sandbox.State, payType string) {
	s.t.Helper()
	if err := s.sb.Put(sandbox.Txn{MchID: e2eMchID, OutTradeNo: otn, State: state, PayType: payType, TxAmt: 2500}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) produce(topic string, msgs ...kafka.Message) {
	s.t.Helper()
	kafkatest.Produce(s.t, s.brokers, topic, msgs...)
}

// collector reads every partition of a topic from the start, in the
// background, until the test ends. When the test ends, what it read of the
// results or the dead-letter topic is validated against the published
// schemas (schema_check_test.go).
type collector struct{ *kafkatest.Collector }

func (s *stack) collect(topic string) collector {
	s.t.Helper()
	c := collector{kafkatest.Collect(s.t, s.brokers, topic)}
	switch topic {
	case s.results:
		s.t.Cleanup(func() { checkOutcomes(s.t, c.Messages()) })
	case s.dlq:
		s.t.Cleanup(func() { checkDeadLetters(s.t, c.Messages()) })
	}
	return c
}

// quiet reports whether nothing more can arrive: the group has committed the
// whole input topic, the outbox is empty, and each collector has read its
// topic to the end. Counting after it is exact, with no sleep.
func (s *stack) quiet(collectors ...collector) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := kafkatest.Cluster{Brokers: s.brokers}
	inEnd, err := c.HighWatermarks(ctx, s.in)
	if err != nil {
		return false
	}
	committed, err := c.CommittedOffsets(ctx, s.group, s.in)
	if err != nil {
		return false
	}
	for p, end := range inEnd {
		if end > 0 && committed[p] != end {
			return false
		}
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var backlog int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&backlog); err != nil || backlog != 0 {
		return false
	}
	for _, col := range collectors {
		if done, err := col.CaughtUp(ctx); err != nil || !done {
			return false
		}
	}
	return true
}

// outcomes returns the outcomes so far by event_id (the last one wins:
// delivery is at-least-once) and how many messages there were.
func (c collector) outcomes(t testing.TB) (map[string]reversald.Outcome, int) {
	t.Helper()
	msgs := c.Messages()
	byID := map[string]reversald.Outcome{}
	for _, m := range msgs {
		var o reversald.Outcome
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatalf("outcome is not JSON: %v: %s", err, m.Value)
		}
		if string(m.Key) != o.OutTradeNo {
			t.Errorf("outcome key %q, want out_trade_no %q", m.Key, o.OutTradeNo)
		}
		byID[o.EventID] = o
	}
	return byID, len(msgs)
}

// waitOutcomes waits up to timeout for outcomes of at least n events and
// returns them by event_id.
func (c collector) waitOutcomes(t testing.TB, n int, timeout time.Duration) map[string]reversald.Outcome {
	t.Helper()
	kafkatest.WaitFor(t, timeout, func() bool {
		got, _ := c.outcomes(t)
		return len(got) >= n
	}, fmt.Sprintf("outcomes of %d events", n))
	got, _ := c.outcomes(t)
	return got
}

// runInProcess starts the daemon through run, as main would, and stops it
// with a cancelled context (SIGTERM) when the test ends.
func (s *stack) runInProcess(extra map[string]string) {
	s.t.Helper()
	s.inProcess(func(ctx context.Context, logs io.Writer) error {
		return run(ctx, []string{"run"}, envconfig.MapLookuper(s.env(extra)), io.Discard, logs)
	})
}

// inProcess runs fn (a daemon) in a goroutine with its logs captured, and returns
// a stop (also run at cleanup, once) that cancels it as SIGTERM would,
// waits up to 30s for it to return without error, and checks that the
// client key is not in its logs.
func (s *stack) inProcess(fn func(ctx context.Context, logs io.Writer) error) (stop func()) {
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx, logs) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					s.t.Errorf("daemon stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				s.t.Errorf("daemon did not stop within 30s of SIGTERM")
			}
			if strings.Contains(logs.String(), secretKey) {
				s.t.Errorf("the client key is in the logs")
			}
		})
	}
	s.t.Cleanup(stop)
	return stop
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// readCorpusValue returns the value of a `go test fuzz v1` corpus file holding one []byte.
func readCorpusValue(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("%s: not a []byte corpus entry", path)
	}
	q := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(lines[1]), "[]byte("), ")")
	v, err := strconv.Unquote(q)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(v)
}

var (
	buildOnce sync.Once
	binPath   string
	errBuild  error
)

// daemonBinary builds reversald once for the tests that run it as a process.
func daemonBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "reversald-bin-")
		if err != nil {
			errBuild = err
			return
		}
		binPath = filepath.Join(dir, "reversald")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			errBuild = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if errBuild != nil {
		t.Fatal(errBuild)
	}
	return binPath
}

// proc is the daemon as a separate process.
type proc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	addr string
	done chan error
}

func (s *stack) start(extra map[string]string) *proc {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := s.env(extra)
	env["HTTP_ADDR"] = addr
	cmd := exec.Command(daemonBinary(s.t), "run")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, logs: &syncBuffer{}, addr: addr, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done //nolint:errcheck // killed: its exit status says nothing
		}
		if strings.Contains(p.logs.String(), secretKey) {
			s.t.Errorf("the client key is in the daemon's logs")
		}
		if s.t.Failed() {
			s.t.Logf("daemon %s logs (tail):\n%s", addr, tail(p.logs.String(), 30))
		}
	})
	kafkatest.WaitFor(s.t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "the daemon's /readyz")
	return p
}

// stop sends sig and waits for the exit; SIGTERM must exit 0.
func (p *proc) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if sig == syscall.SIGTERM && err != nil {
			t.Errorf("after SIGTERM the daemon exited with %v; want 0", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("the daemon did not exit within 40s of %v", sig)
	}
}

func (p *proc) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// loadEvents produces n events: four in five in flight (to be reversed), one
// in five paid. The sandbox answers each call after 20ms.
func (s *stack) loadEvents(n int) map[string]string {
	s.t.Helper()
	for _, r := range []sandbox.Rule{
		{Prefix: "KR", Behavior: sandbox.Behavior{InitialState: sandbox.StateInFlight, Latency: sandbox.Latency{Fixed: sandbox.Duration(20 * time.Millisecond)}}},
		{Prefix: "KP", Behavior: sandbox.Behavior{InitialState: sandbox.StatePaid, Latency: sandbox.Latency{Fixed: sandbox.Duration(20 * time.Millisecond)}}},
	} {
		if err := s.sb.AddRule(r); err != nil {
			s.t.Fatal(err)
		}
	}
	want := map[string]string{}
	var msgs []kafka.Message
	for i := range n {
		otn, status := fmt.Sprintf("KR%05d", i), "reversed"
		if i%5 == 0 {
			otn, status = fmt.Sprintf("KP%05d", i), "paid"
		}
		id := "e-" + otn
		want[id] = status
		msgs = append(msgs, ev{id: id, otn: otn}.message())
	}
	s.produce(s.in, msgs...)
	return want
}

// checkAll asserts one right outcome per event and at most one cancel per
// out_trade_no, every cancel preceded by a query.
func (s *stack) checkAll(out collector, want map[string]string) {
	s.t.Helper()
	kafkatest.WaitFor(s.t, 90*time.Second, func() bool {
		got, _ := out.outcomes(s.t)
		return len(got) >= len(want)
	}, fmt.Sprintf("%d outcomes", len(want)))
	got, n := out.outcomes(s.t)
	for id, status := range want {
		if o, ok := got[id]; !ok || string(o.Status) != status {
			s.t.Errorf("%s: outcome %+v, want %s", id, o, status)
		}
	}
	s.t.Logf("%d events, %d outcome messages (duplicates are allowed after a kill: at-least-once)", len(want), n)
	if err := s.sb.CheckInvariants(); err != nil {
		s.t.Error(err)
	}
}
