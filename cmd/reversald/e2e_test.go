package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/qfpay/sandbox"
	"github.com/reversald/reversald/reversal"
	"github.com/reversald/reversald/store/storetest"
)

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
	id := randomID()
	s := &stack{
		t: t, brokers: brokers, dbURL: storetest.URL(t), sb: sb, sbURL: url,
		in: "in-" + id, dlq: "dlq-" + id, results: "out-" + id, group: "g-" + id,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = consumer.EnsureTopics(ctx, s.brokers, consumer.Security{}, []consumer.TopicSpec{
		{Name: s.in, Partitions: partitions, ReplicationFactor: 1},
		{Name: s.dlq, Partitions: 1, ReplicationFactor: 1},
		{Name: s.results, Partitions: partitions, ReplicationFactor: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Topic metadata reaches the broker's caches a moment after creation.
	for _, tp := range []struct {
		name string
		n    int
	}{{s.in, partitions}, {s.dlq, 1}, {s.results, partitions}} {
		waitFor(t, 30*time.Second, "topic "+tp.name+" to be ready", func() bool { return s.partitionsReady(tp.name) == tp.n })
	}
	return s
}

// partitionsReady counts the topic's partitions that have a leader.
func (s *stack) partitionsReady(topic string) int {
	conn, err := kafka.Dial("tcp", s.brokers[0])
	if err != nil {
		return 0
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		return 0
	}
	n := 0
	for _, p := range parts {
		if p.Leader.Port != 0 {
			n++
		}
	}
	return n
}

// waitGroupShared waits until the test's consumer group has n members that
// each hold a partition of the input topic.
func (s *stack) waitGroupShared(n int) {
	s.t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Timeout: 5 * time.Second}
	waitFor(s.t, 60*time.Second, fmt.Sprintf("%d group members with partitions", n), func() bool {
		resp, err := client.DescribeGroups(context.Background(), &kafka.DescribeGroupsRequest{GroupIDs: []string{s.group}})
		if err != nil || len(resp.Groups) != 1 || resp.Groups[0].GroupState != "Stable" {
			return false
		}
		holding := 0
		for _, m := range resp.Groups[0].Members {
			for _, tp := range m.MemberAssignments.Topics {
				if tp.Topic == s.in && len(tp.Partitions) > 0 {
					holding++
					break
				}
			}
		}
		return holding == n
	})
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
}

func (e ev) message() kafka.Message {
	pt := e.payType
	if pt == "" {
		pt = "800101"
	}
	amt := e.amt
	if amt == 0 {
		amt = 2500
	}
	v, _ := json.Marshal(map[string]any{
		"event_id": e.id, "out_trade_no": e.otn, "mchid": e2eMchID, "txamt": amt, "txcurrcd": "HKD",
		"txdtm": time.Now().Add(-time.Minute).Format(time.DateTime), "pay_type": pt, "reason": "timeout",
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
	// A transport of its own: the shared default caches metadata across
	// tests, from before this test's topics existed.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	// kafka-go's default BatchTimeout (1s) would hold every partial batch a
	// second: the producer, not the daemon, would set the pace.
	w := &kafka.Writer{Addr: kafka.TCP(s.brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchBytes: 4 << 20, BatchSize: 1000, BatchTimeout: 2 * time.Millisecond, Transport: tr}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil {
			return
		}
		if !errors.Is(err, kafka.UnknownTopicOrPartition) || ctx.Err() != nil {
			s.t.Fatalf("produce to %s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// collector reads every partition of a topic from the start, in the
// background, until the test ends.
type collector struct {
	mu   sync.Mutex
	msgs []kafka.Message
	at   []time.Time   // when each message was read
	next map[int]int64 // per partition, the offset after the last one read
}

func (s *stack) collect(topic string) *collector {
	s.t.Helper()
	conn, err := kafka.Dial("tcp", s.brokers[0])
	if err != nil {
		s.t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		s.t.Fatal(err)
	}
	c := &collector{next: map[int]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond, MaxBytes: 8 << 20})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				c.mu.Lock()
				c.msgs = append(c.msgs, m)
				c.at = append(c.at, time.Now())
				c.next[m.Partition] = m.Offset + 1
				c.mu.Unlock()
			}
		}()
	}
	s.t.Cleanup(func() { cancel(); wg.Wait() })
	return c
}

func (c *collector) snapshot() []kafka.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]kafka.Message(nil), c.msgs...)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// arrivals returns when each key was first read.
func (c *collector) arrivals() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := make(map[string]time.Time, len(c.msgs))
	for i, m := range c.msgs {
		if _, ok := first[string(m.Key)]; !ok {
			first[string(m.Key)] = c.at[i]
		}
	}
	return first
}

// quiet reports whether nothing more can arrive: the group has committed the
// whole input topic, the outbox is empty, and each collector has read its
// topic to the end. Counting after it is exact, with no sleep.
func (s *stack) quiet(collectors map[string]*collector) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Transport: tr}
	ends := func(topic string) map[int]int64 {
		n := s.partitionsReady(topic)
		req := make([]kafka.OffsetRequest, n)
		for p := range n {
			req[p] = kafka.LastOffsetOf(p)
		}
		resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
		if err != nil {
			return nil
		}
		end := map[int]int64{}
		for _, po := range resp.Topics[topic] {
			if po.Error != nil {
				return nil
			}
			end[po.Partition] = po.LastOffset
		}
		return end
	}
	inEnd := ends(s.in)
	if inEnd == nil {
		return false
	}
	parts := make([]int, 0, len(inEnd))
	for p := range inEnd {
		parts = append(parts, p)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.group, Topics: map[string][]int{s.in: parts}})
	if err != nil {
		return false
	}
	for _, op := range committed.Topics[s.in] {
		if inEnd[op.Partition] > 0 && op.CommittedOffset != inEnd[op.Partition] {
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
	for topic, c := range collectors {
		end := ends(topic)
		if end == nil {
			return false
		}
		c.mu.Lock()
		for p, last := range end {
			if last > 0 && c.next[p] != last {
				c.mu.Unlock()
				return false
			}
		}
		c.mu.Unlock()
	}
	return true
}

// outcomes returns the outcomes so far by event_id (the last one wins:
// delivery is at-least-once) and how many messages there were.
func (c *collector) outcomes(t testing.TB) (map[string]reversald.Outcome, int) {
	t.Helper()
	msgs := c.snapshot()
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

// waitFor polls cond until it holds, failing after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runInProcess starts the daemon through run, as main would, and stops it
// with a cancelled context (SIGTERM) when the test ends.
func (s *stack) runInProcess(extra map[string]string) {
	s.t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run"}, envconfig.MapLookuper(s.env(extra)), io.Discard, logs) }()
	s.t.Cleanup(func() {
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

// TestDaemonMixedEvents: every outcome kind, duplicates and invalid events in;
// exactly one outcome per valid event with the right status, one dead letter
// per invalid one, and duplicates cost no gateway calls.
func TestDaemonMixedEvents(t *testing.T) {
	t.Parallel()
	s := newStack(t, 4)
	s.seed("R1", sandbox.StateInFlight, "800101")
	s.seed("C1", sandbox.StateInFlight, "800201")
	s.seed("P1", sandbox.StatePaid, "800101")
	s.seed("F1", sandbox.StateRefunded, "800101")
	s.seed("N1", sandbox.StateFailed, "800101")
	s.seed("H1", sandbox.StateInFlight, "801501")
	s.seed("D1", sandbox.StateInFlight, "800101")
	want := map[string]string{
		"e-R1": "reversed", "e-C1": "closed", "e-P1": "paid", "e-F1": "refunded", "e-N1": "not_paid",
		"e-U1": "not_found", "e-H1": "unsupported", "e-D1a": "reversed", "e-D1b": "reversed", "e-X1": "needs_review",
	}
	// Keyed like P1's event so that it is read after it.
	reused := ev{id: "e-P1", otn: "Z9"}.message()
	reused.Key = []byte("P1")
	msgs := []kafka.Message{
		ev{id: "e-R1", otn: "R1"}.message(),
		ev{id: "e-C1", otn: "C1", payType: "800201"}.message(),
		ev{id: "e-P1", otn: "P1"}.message(),
		ev{id: "e-F1", otn: "F1"}.message(),
		ev{id: "e-N1", otn: "N1"}.message(),
		ev{id: "e-U1", otn: "U1"}.message(),
		ev{id: "e-H1", otn: "H1", payType: "801501"}.message(),
		ev{id: "e-D1a", otn: "D1"}.message(),
		ev{id: "e-D1b", otn: "D1"}.message(),           // a second POS event for the same payment
		ev{id: "e-D1a", otn: "D1"}.message(),           // the first one redelivered
		ev{id: "e-X1", otn: "R1", amt: 9900}.message(), // same key, another amount
		reused, // an event_id reused for another payment
	}
	invalid := []kafka.Message{
		{Key: []byte("bad-1"), Value: []byte("not json at all")},
		{Key: []byte("bad-2"), Value: []byte(`{"txamt":2500,"txdtm":"2026-11-22 10:00:00"}`)},
		{Key: []byte("bad-3"), Value: []byte(`{"out_trade_no":"B3","txamt":2500,"txdtm":"22/11/2026"}`), Headers: []kafka.Header{{Key: "trace", Value: []byte("t-3")}}},
	}
	out := s.collect(s.results)
	dlq := s.collect(s.dlq)
	s.runInProcess(nil)
	s.produce(s.in, append(msgs, invalid...)...)

	wantLetters := len(invalid) + 1 // and the reused event_id
	waitFor(t, 60*time.Second, "10 outcomes and 4 dead letters", func() bool {
		got, _ := out.outcomes(t)
		return len(got) >= len(want) && len(dlq.snapshot()) >= wantLetters
	})
	waitFor(t, 60*time.Second, "the pipeline to go quiet", func() bool {
		return s.quiet(map[string]*collector{s.results: out, s.dlq: dlq})
	})
	got, n := out.outcomes(t)
	if n != len(want) {
		t.Errorf("%d outcome messages, want exactly %d (one per valid event)", n, len(want))
	}
	for id, status := range want {
		o, ok := got[id]
		if !ok {
			t.Errorf("no outcome for %s", id)
			continue
		}
		if string(o.Status) != status {
			t.Errorf("%s: status %s (%s), want %s", id, o.Status, o.Reason, status)
		}
		if o.SchemaVersion != reversald.SchemaVersion || o.Reason == "" || o.DecidedAt.IsZero() {
			t.Errorf("%s: incomplete outcome %+v", id, o)
		}
	}
	if got["e-R1"].CancelSyssn == "" || got["e-R1"].Method != "reversal" || got["e-C1"].Method != "close" {
		t.Errorf("cancel details missing: R1 %+v C1 %+v", got["e-R1"], got["e-C1"])
	}
	// Duplicates: D1 cost what R1 cost, no more.
	if d, r := s.sb.Calls("D1", ""), s.sb.Calls("R1", ""); d != r || d == 0 {
		t.Errorf("D1 (three events) made %d gateway calls, R1 (one) made %d", d, r)
	}
	if s.sb.Calls("H1", "reversal")+s.sb.Calls("H1", "close") != 0 {
		t.Error("an unsupported pay type was cancelled")
	}
	letters := dlq.snapshot()
	if len(letters) != wantLetters {
		t.Fatalf("%d dead letters, want %d", len(letters), wantLetters)
	}
	for _, l := range letters {
		h := headers(l)
		if h["x-dlq-error"] == "" || h["x-dlq-topic"] != s.in || h["x-dlq-partition"] == "" || h["x-dlq-offset"] == "" {
			t.Errorf("dead letter %q lacks its provenance: %v", l.Key, h)
		}
		if strings.Contains(string(l.Value), `"Z9"`) && !strings.Contains(h["x-dlq-error"], "already recorded for another payment") {
			t.Errorf("reused event_id: dead letter reason %q", h["x-dlq-error"])
		}
		if string(l.Key) == "bad-3" && (h["trace"] != "t-3" || !strings.Contains(h["x-dlq-error"], "txdtm")) {
			t.Errorf("bad-3: headers %v; want the original header kept and the txdtm problem named", h)
		}
	}
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// TestDaemonMalformedValues: a table of malformed values and the decoder's
// fuzz corpus never stop the daemon; every invalid one reaches the DLQ.
func TestDaemonMalformedValues(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	values := [][]byte{
		nil, []byte(""), []byte("null"), []byte("[]"), []byte(`"a string"`), []byte("{"), []byte("\xff\xfe\x00"),
		[]byte(`{"out_trade_no":123,"txamt":2500,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":"abc","txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":-5,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":25.5,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":123456789012,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500,"txdtm":"2026-02-30 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500}`),
		[]byte(`{"out_trade_no":"` + strings.Repeat("x", 200) + `","txamt":2500,"txdtm":"2026-11-22 10:00:00"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500,"txdtm":"2026-11-22 10:00:00","pay_type":"80010"}`),
		[]byte(`{"out_trade_no":"M1","txamt":2500,"txdtm":"2026-11-22 10:00:00","mchid":"` + strings.Repeat("m", 17) + `"}`),
		append([]byte(`{"out_trade_no":"HUGE","txamt":2500,"txdtm":"2026-11-22 10:00:00","pad":"`), append(bytes.Repeat([]byte("p"), 900<<10), []byte(`"}`)...)...),
	}
	corpus, err := filepath.Glob("../../reversal/testdata/fuzz/FuzzDecodeEvent/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range corpus {
		values = append(values, readCorpusValue(t, f))
	}
	var msgs []kafka.Message
	wantDLQ := 0
	for i, v := range values {
		if _, err := reversal.DecodeEvent(v, "t/0/0"); err != nil {
			wantDLQ++
		}
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("m-%d", i)), Value: v})
	}
	if wantDLQ < 17 {
		t.Fatalf("only %d of the table's values are invalid: the table is wrong", wantDLQ)
	}
	dlq := s.collect(s.dlq)
	s.runInProcess(nil)
	s.produce(s.in, msgs...)
	waitFor(t, 60*time.Second, fmt.Sprintf("%d dead letters", wantDLQ), func() bool { return len(dlq.snapshot()) >= wantDLQ })
	waitFor(t, 60*time.Second, "the pipeline to go quiet", func() bool {
		return s.quiet(map[string]*collector{s.dlq: dlq})
	})
	if n := len(dlq.snapshot()); n != wantDLQ {
		t.Errorf("%d dead letters, want %d", n, wantDLQ)
	}
	// Still alive and consuming: a valid event after all that is recorded.
	s.seed("AFTER", sandbox.StatePaid, "800101")
	out := s.collect(s.results)
	s.produce(s.in, ev{id: "e-AFTER", otn: "AFTER"}.message())
	waitFor(t, 30*time.Second, "the outcome of a valid event after the malformed ones", func() bool {
		got, _ := out.outcomes(t)
		return got["e-AFTER"].Status == "paid"
	})
}

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
	waitFor(s.t, 30*time.Second, "the daemon's /readyz", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
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
func (s *stack) checkAll(out *collector, want map[string]string) {
	s.t.Helper()
	waitFor(s.t, 90*time.Second, fmt.Sprintf("%d outcomes", len(want)), func() bool {
		got, _ := out.outcomes(s.t)
		return len(got) >= len(want)
	})
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

// TestDaemonSurvivesStop stops the daemon process in the middle of a run,
// with SIGTERM and, separately, SIGKILL, then starts it again: nothing is
// lost and no out_trade_no is cancelled twice.
func TestDaemonSurvivesStop(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := newStack(t, 4)
			out := s.collect(s.results)
			want := s.loadEvents(400)
			first := s.start(map[string]string{"EXECUTOR_WORKERS": "8"})
			waitFor(t, 60*time.Second, "the first outcomes", func() bool {
				got, _ := out.outcomes(t)
				return len(got) >= 40
			})
			first.stop(t, sig)
			got, _ := out.outcomes(t)
			if len(got) >= len(want) {
				t.Fatalf("the run finished before the %v: the test proves nothing", sig)
			}
			t.Logf("stopped with %v after %d of %d outcomes", sig, len(got), len(want))
			second := s.start(map[string]string{"EXECUTOR_WORKERS": "8"})
			s.checkAll(out, want)
			second.stop(t, syscall.SIGTERM)
		})
	}
}

// TestTwoDaemonsShareTheWork runs two processes in one consumer group.
func TestTwoDaemonsShareTheWork(t *testing.T) {
	t.Parallel()
	s := newStack(t, 4)
	out := s.collect(s.results)
	a := s.start(map[string]string{"EXECUTOR_WORKERS": "8", "INSTANCE_ID": "a"})
	b := s.start(map[string]string{"EXECUTOR_WORKERS": "8", "INSTANCE_ID": "b"})
	s.waitGroupShared(2)
	want := s.loadEvents(400)
	s.checkAll(out, want)
	ina, inb := a.metric(t, "reversald_events_in_total"), b.metric(t, "reversald_events_in_total")
	fa, fb := a.metric(t, "reversald_attempts_final_total"), b.metric(t, "reversald_attempts_final_total")
	t.Logf("events in: a %v, b %v; attempts decided: a %v, b %v", ina, inb, fa, fb)
	if ina == 0 || inb == 0 || ina+inb < float64(len(want)) {
		t.Errorf("intake not shared: a %v, b %v of %d", ina, inb, len(want))
	}
	if fa == 0 || fb == 0 {
		t.Errorf("executor work not shared: a %v, b %v", fa, fb)
	}
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
}
