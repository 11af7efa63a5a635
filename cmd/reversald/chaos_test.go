package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// The chaos suite (issue 14): reversald as several processes against a
// PostgreSQL and a broker of the run's own and the QFPay sandbox, while a
// schedule drawn from a seed breaks things and events flow: daemons
// SIGKILLed and restarted every 1-3 s, PostgreSQL's postmaster SIGKILLed and
// restarted, the database's filesystem full for a while, the broker
// SIGKILLed and restarted, one daemon cut off from PostgreSQL for longer
// than its lease, and an operator's `attempts retry` mid-flight. The
// gateway's faults are per payment (a seeded draw): 5xx, a cancel applied
// and its connection dropped, 429 with Retry-After, slow answers. At the end
// every check below runs against independent sources and the run prints a
// table; a failed check fails the run.
//
// TestChaosSmoke is the short run `make test` includes; BenchmarkChaos is
// `make chaos` (CHAOS_EVENTS, CHAOS_INSTANCES, CHAOS_DURATION, CHAOS_SEED;
// CHAOS_BIN runs another build of the daemon, CHAOS_EXPECT=red expects a
// failed check: `make chaos-mutant`).

type chaosConfig struct {
	events    int
	instances int
	duration  time.Duration // the fault schedule, during which events flow
	seed      uint64
	bin       string // the daemon; "" builds this tree's
	expectRed bool
	lease     time.Duration
	diskMiB   int
	drain     time.Duration // how long the pipeline may take to go quiet after the faults
}

func chaosFromEnv(def chaosConfig) chaosConfig {
	c := def
	if v, err := strconv.Atoi(os.Getenv("CHAOS_EVENTS")); err == nil && v > 0 {
		c.events = v
	}
	if v, err := strconv.Atoi(os.Getenv("CHAOS_INSTANCES")); err == nil && v > 0 {
		c.instances = v
	}
	if v, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil && v > 0 {
		c.duration = v
	}
	if v, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil && v > 0 {
		c.seed = v
	}
	if v := os.Getenv("CHAOS_BIN"); v != "" {
		c.bin = v
	}
	if v, err := time.ParseDuration(os.Getenv("CHAOS_DRAIN")); err == nil && v > 0 {
		c.drain = v
	}
	c.expectRed = os.Getenv("CHAOS_EXPECT") == "red"
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	return c
}

// TestChaosSmoke is a short chaos run, every fault kind at least once, in
// `make test` (under two minutes on an idle machine).
func TestChaosSmoke(t *testing.T) {
	runChaos(t, chaosFromEnv(chaosConfig{events: 2000, instances: 3, duration: 30 * time.Second, seed: 14, lease: 9 * time.Second, diskMiB: 256, drain: 3 * time.Minute}))
}

// BenchmarkChaos is `make chaos`: the long run, sized by the CHAOS_*
// variables (default 20,000 events, 5 instances, 5 minutes of faults).
func BenchmarkChaos(b *testing.B) {
	c := chaosFromEnv(chaosConfig{events: 20000, instances: 5, duration: 5 * time.Minute, lease: 9 * time.Second, diskMiB: 1024, drain: 15 * time.Minute})
	for range b.N {
		runChaos(b, c)
	}
}

// faultKind names what the schedule breaks.
type faultKind string

const (
	faultKill          faultKind = "kill"           // SIGKILL a daemon; restart it after For
	faultPGCrash       faultKind = "pg-crash"       // SIGKILL the postmaster; restart after For
	faultDiskFull      faultKind = "disk-full"      // fill the database's filesystem for For
	faultBrokerKill    faultKind = "broker-kill"    // SIGKILL the broker; restart after For
	faultSeverPG       faultKind = "sever-pg"       // cut one daemon off from PostgreSQL for For (> its lease)
	faultOperatorRetry faultKind = "operator-retry" // attempts retry of the needs_review amount mismatches, their record corrected first
)

type fault struct {
	At   time.Duration
	Kind faultKind
	Inst int // kill, sever-pg
	For  time.Duration
}

func (f fault) String() string {
	s := fmt.Sprintf("%7.2fs %-14s", f.At.Seconds(), f.Kind)
	if f.Kind == faultKill || f.Kind == faultSeverPG {
		s += fmt.Sprintf(" i%d", f.Inst)
	} else {
		s += "   "
	}
	if f.For > 0 {
		s += fmt.Sprintf(" for %.2fs", f.For.Seconds())
	}
	return s
}

// chaosSchedule draws the faults from the seed: the same seed, duration,
// instances and lease give the same schedule.
func chaosSchedule(seed uint64, d time.Duration, instances int, lease time.Duration) []fault {
	r := rand.New(rand.NewPCG(seed, 0x14c4a05))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	var fs []fault
	// The big faults land in the middle 10%-80% of the run, each kind at
	// least once, more in longer runs.
	big := func(kind faultKind, per time.Duration, lo, hi time.Duration) {
		n := max(1, int(d/per))
		for range n {
			f := fault{At: between(d/10, d*8/10), Kind: kind, For: between(lo, hi)}
			if kind == faultSeverPG {
				f.Inst = r.IntN(instances)
			}
			fs = append(fs, f)
		}
	}
	big(faultPGCrash, 3*time.Minute, 2*time.Second, 5*time.Second)
	big(faultDiskFull, 3*time.Minute, 5*time.Second, 10*time.Second)
	big(faultBrokerKill, 90*time.Second, time.Second, 3*time.Second)
	big(faultSeverPG, 4*time.Minute, lease+lease/2, 2*lease)
	big(faultOperatorRetry, 3*time.Minute, 0, 0)
	for at := between(time.Second, 3*time.Second); at < d; at += between(time.Second, 3*time.Second) {
		fs = append(fs, fault{At: at, Kind: faultKill, Inst: r.IntN(instances), For: between(300*time.Millisecond, 2*time.Second)})
	}
	slices.SortStableFunc(fs, func(a, b fault) int { return int(a.At - b.At) })
	return fs
}

// Payment classes: the first two letters of out_trade_no. Each has a
// sandbox rule (the gateway fault it meets) and the money status the
// sandbox's final state must agree with.
type payClass struct {
	prefix string
	weight int
	rule   sandbox.Behavior
}

var chaosClasses = []payClass{
	{"CR", 40, sandbox.Behavior{InitialState: sandbox.StateInFlight, Latency: sandbox.Latency{Max: sandbox.Duration(20 * time.Millisecond)}}},
	{"CP", 10, sandbox.Behavior{InitialState: sandbox.StatePaid}},
	// Slow answers: the cancel takes 0.5-2.5 s (QFPAY_TIMEOUT is 2 s: some
	// answers are lost), so kills land during it; the sandbox applies it
	// whether the caller is still there or not, as QFPay would.
	{"CS", 12, sandbox.Behavior{InitialState: sandbox.StateInFlight, Endpoints: []string{"reversal"}, Latency: sandbox.Latency{Min: sandbox.Duration(500 * time.Millisecond), Max: sandbox.Duration(2500 * time.Millisecond)}}},
	{"CX", 10, sandbox.Behavior{InitialState: sandbox.StateInFlight, HTTP5xx: 2, Status5xx: 503}},
	// The cancel is applied, then its connection dropped without an answer.
	{"CD", 12, sandbox.Behavior{InitialState: sandbox.StateInFlight, Endpoints: []string{"reversal"}, DropAfter: 1}},
	{"CT", 8, sandbox.Behavior{InitialState: sandbox.StateInFlight, HTTP429: 1, RetryAfter: sandbox.Duration(time.Second)}},
	{"CF", 4, sandbox.Behavior{InitialState: sandbox.StateFailed}},
	{"CU", 2, sandbox.Behavior{}}, // QFPay never heard of it: not_found
}

const (
	chaosAmtMchID = "CHAMT"       // amount mismatches, for the operator's retry
	chaosAmount   = int64(2500)   // every valid event's txamt
	chaosBadAmt   = int64(999)    // the record's amount of a mismatch, until corrected
	classAmt      = "CA"          // out_trade_no prefix of the mismatches
	classInvalid  = "CI"          // invalid events (no txamt): the DLQ
	chaosMerchant = "CHM%02d"     // 40 ordinary merchants
	chaosEvPrefix = "ev-chaos-%s" // event_id of an out_trade_no's first event
)

// chaosEvent is one event the producer sends, decided from the seed.
type chaosEvent struct {
	id, otn, mchid string
	invalid        bool
	redeliver      bool // produced twice (same event_id)
	second         bool // a second event (another event_id) for the same payment
}

func chaosEvents(seed uint64, n int) []chaosEvent {
	r := rand.New(rand.NewPCG(seed, 0xe7e47))
	total := 0
	for _, c := range chaosClasses {
		total += c.weight
	}
	evs := make([]chaosEvent, 0, n)
	for i := range n {
		e := chaosEvent{mchid: fmt.Sprintf(chaosMerchant, r.IntN(40))}
		switch x := r.IntN(1000); {
		case x < 30:
			e.otn, e.invalid = fmt.Sprintf("%s%07d", classInvalid, i), true
		case x < 50:
			e.otn, e.mchid = fmt.Sprintf("%s%07d", classAmt, i), chaosAmtMchID
		default:
			w := r.IntN(total)
			for _, c := range chaosClasses {
				if w < c.weight {
					e.otn = fmt.Sprintf("%s%07d", c.prefix, i)
					break
				}
				w -= c.weight
			}
		}
		e.id = fmt.Sprintf(chaosEvPrefix, e.otn)
		y := r.IntN(100)
		e.redeliver = y < 5
		e.second = !e.invalid && y >= 5 && y < 8
		evs = append(evs, e)
	}
	return evs
}

func (e chaosEvent) messages() []kafka.Message {
	m := map[string]any{
		"event_id": e.id, "out_trade_no": e.otn, "mchid": e.mchid, "txamt": chaosAmount, "txcurrcd": "HKD",
		"txdtm": defaultTxDtm, "pay_type": "800101", "reason": "timeout",
	}
	if e.invalid {
		delete(m, "txamt")
	}
	v, _ := json.Marshal(m)
	msgs := []kafka.Message{{Key: []byte(e.otn), Value: v}}
	if e.redeliver {
		msgs = append(msgs, msgs[0])
	}
	if e.second {
		m["event_id"] = e.id + "-2"
		v2, _ := json.Marshal(m)
		msgs = append(msgs, kafka.Message{Key: []byte(e.otn), Value: v2})
	}
	return msgs
}

// chaosInstance is one daemon process, restarted after each kill.
type chaosInstance struct {
	i       int
	addr    string // HTTP, the same across restarts
	proxy   *severProxy
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	gen      int // incremented at each start
	done     chan struct{}
	killed   bool // by the schedule (not an exit of its own)
	starts   int
	selfExit []string // exits nobody asked for
}

type chaosRun struct {
	tb    testing.TB
	cfg   chaosConfig
	inf   *chaosInfra
	s     *stack
	bin   string
	insts []*chaosInstance
	out   io.Writer
	t0    time.Time // the daemons' first start: the notes' times count from it
	// sched0 is when the schedule started (after the warm-up): its faults'
	// times count from it. Only the schedule's goroutine reads it.
	sched0 time.Time
	ended  atomic.Bool // no more restarts

	pgMu, brokerMu sync.Mutex // one crash and restart of each server at a time

	amtMu        sync.Mutex
	amtCorrected bool
	amtOTNs      []string

	// the fault log and counters
	logMu       sync.Mutex
	faultLog    []string
	faultErrors []string
	retried     atomic.Int64
	scrapes     atomic.Int64
	scrapeFails atomic.Int64
	scrapeNotes []string
}

func (c *chaosRun) note(format string, args ...any) {
	line := fmt.Sprintf("%8.2fs ", time.Since(c.t0).Seconds()) + fmt.Sprintf(format, args...)
	c.logMu.Lock()
	c.faultLog = append(c.faultLog, line)
	c.logMu.Unlock()
	fmt.Fprintln(c.out, "chaos:", line)
}

func (c *chaosRun) faultError(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.logMu.Lock()
	c.faultErrors = append(c.faultErrors, msg)
	c.logMu.Unlock()
	c.note("ERROR %s", msg)
}

func runChaos(tb testing.TB, cfg chaosConfig) {
	tb.Helper()
	out := io.Writer(os.Stdout)
	sched := chaosSchedule(cfg.seed, cfg.duration, cfg.instances, cfg.lease)
	fmt.Fprintf(out, "chaos: seed %d, %d events, %d instances, %s of faults, lease %s; the schedule (%d faults):\n",
		cfg.seed, cfg.events, cfg.instances, cfg.duration, cfg.lease, len(sched))
	for _, f := range sched {
		fmt.Fprintln(out, "  "+f.String())
	}
	c := &chaosRun{tb: tb, cfg: cfg, out: out}
	c.bin = cfg.bin
	if c.bin == "" {
		c.bin = daemonBinary(tb)
	}
	// The daemons' and devstack.sh's logs: CHAOS_LOGDIR keeps them after the run.
	logDir := os.Getenv("CHAOS_LOGDIR")
	if logDir == "" {
		logDir = tb.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	dslog, err := os.Create(logDir + "/devstack.log")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dslog.Close() })
	c.inf = startChaosInfra(tb, dslog, cfg.diskMiB)
	fmt.Fprintf(out, "chaos: own PostgreSQL %s (database in a tablespace on a %d MiB loop-mounted ext4, %s), own broker %s, stack in %s\n",
		c.inf.pgPort, cfg.diskMiB, c.inf.diskUse(), strings.Join(c.inf.brokers, ","), c.inf.dir)

	sb, sbURL, stop, err := sandbox.Start(sandbox.Config{AppCode: e2eAppCode, Key: secretKey})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	for _, cl := range chaosClasses {
		if err := sb.AddRule(sandbox.Rule{Prefix: cl.prefix, Behavior: cl.rule}); err != nil {
			tb.Fatal(err)
		}
	}
	c.s = &stack{
		t: tb, brokers: c.inf.brokers, dbURL: c.inf.dbURL, sb: sb, sbURL: sbURL,
		in: "chaos-in", dlq: "chaos-dlq", results: "chaos-out", group: "chaos",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kafkatest.Cluster{Brokers: c.inf.brokers}
	for _, tp := range []struct {
		name string
		n    int
	}{{c.s.in, 12}, {c.s.dlq, 1}, {c.s.results, 12}} {
		if err := cl.CreateTopic(ctx, tp.name, tp.n); err != nil {
			tb.Fatal(err)
		}
	}
	// The schema once, before any daemon: five migrating at once is not the
	// fault under test.
	mig := exec.Command(c.bin, "migrate")
	mig.Env = []string{"DATABASE_URL=" + c.inf.dbURL}
	if o, err := mig.CombinedOutput(); err != nil {
		tb.Fatalf("reversald migrate: %v\n%s", err, o)
	}
	results := c.s.collect(c.s.results)
	dlq := c.s.collect(c.s.dlq)
	pgAddr := "127.0.0.1:" + c.inf.pgPort
	for i := range cfg.instances {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c.insts = append(c.insts, &chaosInstance{i: i, addr: addr, proxy: newSeverProxy(tb, pgAddr), logPath: fmt.Sprintf("%s/i%d.log", logDir, i)})
	}
	tb.Cleanup(c.stopAll)
	c.t0 = time.Now()
	for _, in := range c.insts {
		c.start(in)
	}
	scrapeCtx, stopScrape := context.WithCancel(context.Background())
	var scrapeWG sync.WaitGroup
	scrapeWG.Add(1)
	go func() { defer scrapeWG.Done(); c.scrape(scrapeCtx) }()

	// Half the events go in first, and the schedule starts once the
	// daemons hold them as attempts: daemons SIGKILLed every 1-3 s keep the
	// consumer group rebalancing, and the intake then waits for the churn to
	// end (what a first run showed: every attempt was worked after the
	// schedule, out of the faults' reach). A backlog in PostgreSQL keeps the
	// executors at work while the faults land; the other half flows during
	// the first 80% of the schedule.
	evs := chaosEvents(cfg.seed, cfg.events)
	warm := evs[:len(evs)/2]
	produced := c.produce(warm, time.Now(), 0)
	warmValid := 0
	for _, e := range warm {
		if !e.invalid {
			warmValid++
		}
	}
	waited := time.Now()
	// At most 5 minutes: 600 looks, half a second apart or more.
	for i := 0; i < 600 && time.Since(waited) < 5*time.Minute && c.countAttempts() < warmValid*9/10; i++ {
		time.Sleep(500 * time.Millisecond)
	}
	c.note("warm-up: %d messages in, %d attempts in PostgreSQL after %s; the schedule starts (its times count from here)", produced, c.countAttempts(), time.Since(waited).Round(time.Millisecond))
	c.sched0 = time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); produced += c.produce(evs[len(evs)/2:], c.sched0, cfg.duration*8/10) }()
	c.runSchedule(sched)
	wg.Wait()
	c.note("schedule done; %d messages produced; healing and draining", produced)
	c.healAll()

	// Quiet: every message in, consumed and committed, every outcome published and read.
	valid := map[string]string{} // event_id -> out_trade_no
	invalid := map[string]bool{}
	for _, e := range evs {
		if e.invalid {
			invalid[e.id] = true
			continue
		}
		valid[e.id] = e.otn
		if e.second {
			valid[e.id+"-2"] = e.otn
		}
	}
	deadline := time.Now().Add(cfg.drain)
	for time.Now().Before(deadline) {
		if c.s.quiet(results, dlq) {
			got, _ := results.outcomes(tb)
			if len(got) >= len(valid) {
				break
			}
		}
		time.Sleep(time.Second)
	}
	c.note("drained (or the drain deadline passed) after %s", time.Since(c.t0).Round(time.Second))
	stopScrape()
	scrapeWG.Wait()
	c.ended.Store(true)
	c.stopAll()
	c.report(sched, valid, invalid, results, dlq)
}

// start runs the daemon of in (again), its output appended to its log file.
func (c *chaosRun) start(in *chaosInstance) {
	env := c.s.env(map[string]string{
		"DATABASE_URL": strings.Replace(c.inf.dbURL, "127.0.0.1:"+c.inf.pgPort, in.proxy.addr(), 1),
		"HTTP_ADDR":    in.addr, "INSTANCE_ID": fmt.Sprintf("i%d", in.i), "LOG_LEVEL": "info",
		"MIGRATE_ON_START": "false", "EXECUTOR_LEASE": c.cfg.lease.String(), "EXECUTOR_WORKERS": "8",
		"EXECUTOR_BACKOFF_BASE": "100ms", "EXECUTOR_BACKOFF_MAX": "2s", "CONFIRM_RECHECKS": "3",
		"KAFKA_STARTUP_WAIT": "120s", "QFPAY_TIMEOUT": "2s", "SHUTDOWN_TIMEOUT": "15s",
	})
	cmd := exec.Command(c.bin, "run")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.faultError("i%d log: %v", in.i, err)
		return
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		c.faultError("start i%d: %v", in.i, err)
		return
	}
	done := make(chan struct{})
	in.mu.Lock()
	in.cmd, in.done, in.killed = cmd, done, false
	in.gen++
	in.starts++
	gen := in.gen
	in.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		close(done)
		in.mu.Lock()
		killed := in.killed
		in.mu.Unlock()
		if killed || c.ended.Load() {
			return
		}
		// An exit nobody asked for: note it and restart, as a supervisor would.
		last, _ := os.ReadFile(in.logPath)
		c.note("i%d (start %d) exited by itself: %v; restarting in 1s; its log ends:\n%s", in.i, gen, err, tail(string(last), 3))
		in.mu.Lock()
		in.selfExit = append(in.selfExit, fmt.Sprintf("%.1fs: %v", time.Since(c.t0).Seconds(), err))
		in.mu.Unlock()
		time.Sleep(time.Second)
		in.mu.Lock()
		again := in.gen == gen && !c.ended.Load()
		in.mu.Unlock()
		if again {
			c.start(in)
		}
	}()
}

// kill SIGKILLs in's daemon and waits for it to be gone.
func (c *chaosRun) kill(in *chaosInstance) bool {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	if cmd == nil {
		in.mu.Unlock()
		return false
	}
	select {
	case <-done:
		in.mu.Unlock()
		return false // not running (exited, restart pending)
	default:
	}
	in.killed = true
	in.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return true
}

func (c *chaosRun) stopAll() {
	c.ended.Store(true)
	for _, in := range c.insts {
		in.mu.Lock()
		cmd, done := in.cmd, in.done
		if cmd != nil {
			in.killed = true
		}
		in.mu.Unlock()
		if cmd == nil {
			continue
		}
		select {
		case <-done:
			continue
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// produce sends the events evenly over span from from, in batches every
// 200 ms (at most 500 a batch; span 0: at once); a batch the broker refuses (it is down) is sent again until a
// deadline. Messages of a batch that failed partway may go twice: duplicates
// the run counts.
func (c *chaosRun) produce(evs []chaosEvent, from time.Time, span time.Duration) int {
	batches := max(1, int(span/(200*time.Millisecond)), len(evs)/500)
	per := max(1, (len(evs)+batches-1)/batches)
	cl := kafkatest.Cluster{Brokers: c.inf.brokers}
	n := 0
	for b := 0; b*per < len(evs); b++ {
		if d := time.Until(from.Add(time.Duration(b) * span / time.Duration(batches))); span > 0 && d > 0 {
			time.Sleep(d)
		}
		var msgs []kafka.Message
		for _, e := range evs[b*per : min(len(evs), (b+1)*per)] {
			if strings.HasPrefix(e.otn, classAmt) {
				c.amtMu.Lock()
				rec := chaosBadAmt
				if c.amtCorrected {
					rec = 0
				}
				if err := c.s.sb.Put(sandbox.Txn{MchID: chaosAmtMchID, OutTradeNo: e.otn, State: sandbox.StatePaid, PayType: "800101", TxAmt: chaosAmount, RecordTxAmt: rec}); err != nil {
					c.faultError("seed %s: %v", e.otn, err)
				}
				c.amtOTNs = append(c.amtOTNs, e.otn)
				c.amtMu.Unlock()
			}
			msgs = append(msgs, e.messages()...)
		}
		// The broker may be down for a minute or more on a loaded machine:
		// try again until the schedule's end plus ten minutes, a second or
		// more apart (so at most that many seconds of tries).
		window := c.cfg.duration + 10*time.Minute
		giveUp, maxTries := from.Add(window), int(window/time.Second)
		for try := 1; ; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := cl.Write(ctx, c.s.in, msgs...)
			cancel()
			if err == nil {
				break
			}
			if try >= maxTries || time.Now().After(giveUp) {
				c.faultError("produce batch %d: %v (gave up after %d tries)", b, err, try)
				break
			}
			time.Sleep(time.Second)
		}
		n += len(msgs)
	}
	return n
}

// runSchedule applies each fault at its time; the long ones (a restart
// after a while, a full disk) run in their own goroutine so the next fault
// comes on time. It returns once every fault has been healed.
func (c *chaosRun) runSchedule(sched []fault) {
	var wg sync.WaitGroup
	for _, f := range sched {
		if d := time.Until(c.sched0.Add(f.At)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.apply(f) }()
	}
	wg.Wait()
}

// crashServer SIGKILLs a server of the run (kill), waits f.For and restarts
// it with devstack.sh up SERVER, holding mu: one crash and restart of each
// server at a time (a crash due while the last restart runs waits for it).
func (c *chaosRun) crashServer(mu *sync.Mutex, f fault, server, process, name string, kill func() error) {
	mu.Lock()
	defer mu.Unlock()
	if err := kill(); err != nil {
		c.faultError("%s: %v", f.Kind, err)
		return
	}
	c.note("SIGKILL %s; restart in %s", process, f.For)
	time.Sleep(f.For)
	if err := c.inf.restart(server); err != nil {
		c.faultError("%s restart: %v", name, err)
		return
	}
	c.note("%s back", name)
}

func (c *chaosRun) apply(f fault) {
	switch f.Kind {
	case faultKill:
		in := c.insts[f.Inst]
		if !c.kill(in) {
			c.note("kill i%d: not running, skipped", f.Inst)
			return
		}
		c.note("SIGKILL i%d; restart in %s", f.Inst, f.For)
		time.Sleep(f.For)
		c.start(in)
	case faultPGCrash:
		// One crash at a time: a crash due while the last restart runs
		// waits for it (killing a server mid-start tests devstack.sh).
		c.crashServer(&c.pgMu, f, "pg", "postmaster", "PostgreSQL", c.inf.killPostgres)
	case faultDiskFull:
		// Not during a crash of PostgreSQL: the probe below needs it.
		c.pgMu.Lock()
		defer c.pgMu.Unlock()
		before := c.inf.diskUse()
		free, err := c.inf.fillDisk()
		if err != nil {
			c.faultError("disk-full: %v", err)
			return
		}
		probe := c.diskProbe()
		c.note("database filesystem full (%s before, %s now) for %s; a probe table of 8 MiB: %s", before, c.inf.diskUse(), f.For, probe)
		if !strings.Contains(probe, "No space left on device") {
			c.faultError("disk-full: PostgreSQL wrote the probe table, or could not try: %s", probe)
		}
		time.Sleep(f.For)
		if err := free(); err != nil {
			c.faultError("disk-full release: %v", err)
		}
		c.note("database filesystem freed (%s)", c.inf.diskUse())
	case faultBrokerKill:
		c.crashServer(&c.brokerMu, f, "kafka", "broker", "broker", c.inf.killBroker)
	case faultSeverPG:
		p := c.insts[f.Inst].proxy
		p.sever(true)
		c.note("i%d cut off from PostgreSQL for %s (lease %s)", f.Inst, f.For, c.cfg.lease)
		time.Sleep(f.For)
		p.sever(false)
		c.note("i%d reconnected to PostgreSQL", f.Inst)
	case faultOperatorRetry:
		c.operatorRetry()
	}
}

// operatorRetry: QFPay corrects the amount mismatches' records, and an
// operator retries every needs_review attempt of that merchant, while
// everything else goes on. The command is tried again while PostgreSQL is
// down (a fault may be in progress), a bounded number of times.
func (c *chaosRun) operatorRetry() {
	// Mid-flight means with something to retry: wait (3 minutes at most) for
	// a mismatch to be in needs_review.
	waited := time.Now()
	for i := 0; i < 360 && time.Since(waited) < 3*time.Minute && c.reviewing() == 0; i++ {
		time.Sleep(500 * time.Millisecond)
	}
	c.note("operator: %d amount mismatches in needs_review (waited %s); QFPay corrects the records", c.reviewing(), time.Since(waited).Round(time.Millisecond))
	c.amtMu.Lock()
	c.amtCorrected = true
	for _, otn := range c.amtOTNs {
		if err := c.s.sb.Put(sandbox.Txn{MchID: chaosAmtMchID, OutTradeNo: otn, State: sandbox.StatePaid, PayType: "800101", TxAmt: chaosAmount}); err != nil {
			c.faultError("correct %s: %v", otn, err)
		}
	}
	c.amtMu.Unlock()
	for try := 0; try < 30; try++ {
		cmd := exec.Command(c.bin, "attempts", "retry", "-status", "needs_review", "-mchid", chaosAmtMchID, "-by", "chaos", "-note", "QFPay corrected the record")
		cmd.Env = []string{"DATABASE_URL=" + c.inf.dbURL, "PATH=" + os.Getenv("PATH")}
		o, err := cmd.CombinedOutput()
		if strings.Contains(string(o), secretKey) {
			c.faultError("the client key is in attempts retry's output")
		}
		// The command went through when it says how many it retried; it
		// exits 1 when some could not be (another operator's retry took
		// them first: the schedule may hold two at once).
		if m := retriedLine.FindStringSubmatch(string(o)); m != nil || err == nil {
			var n, of int64
			if m != nil {
				n, _ = strconv.ParseInt(m[1], 10, 64)
				of, _ = strconv.ParseInt(m[2], 10, 64)
			}
			c.retried.Add(n)
			c.note("operator: attempts retry -status needs_review -mchid %s: %d of %d retried (%v)", chaosAmtMchID, n, of, err)
			return
		}
		c.note("operator: attempts retry failed (try %d): %v: %s", try+1, err, tail(string(o), 2))
		time.Sleep(time.Second)
	}
	c.faultError("operator retry never went through")
}

// retriedLine is attempts retry's last line.
var retriedLine = regexp.MustCompile(`(?m)^retried (\d+) of (\d+)$`)

// reviewing counts the amount mismatches in needs_review (0 when the
// database does not answer).
func (c *chaosRun) reviewing() int {
	return c.count(`SELECT count(*) FROM attempts WHERE mchid = $1 AND status = 'needs_review'`, chaosAmtMchID)
}

// countAttempts counts the attempts in PostgreSQL (0 when it does not answer).
func (c *chaosRun) countAttempts() int { return c.count(`SELECT count(*) FROM attempts`) }

// count runs a count(*) query on the run's database; 0 when it does not
// answer within 3 s.
func (c *chaosRun) count(query string, args ...any) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.inf.dbURL)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0
	}
	return n
}

// diskProbe writes 8 MiB into a table of the run's database and says how it
// went: while the filesystem is full PostgreSQL must answer "No space left
// on device" (the daemons may not need a new block during the window).
func (c *chaosRun) diskProbe() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.inf.dbURL)
	if err != nil {
		return "no connection: " + err.Error()
	}
	defer conn.Close(ctx)
	defer conn.Exec(ctx, `DROP TABLE IF EXISTS chaos_disk_probe`) //nolint:errcheck // best effort: the next probe drops it too
	_, err = conn.Exec(ctx, `CREATE TABLE chaos_disk_probe AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 8192)`)
	if err == nil {
		return "written (the filesystem was not full)"
	}
	return err.Error()
}

// healAll makes sure nothing stays broken: every daemon runs, nothing is
// severed (the schedule's own restarts have run: runSchedule waited).
func (c *chaosRun) healAll() {
	for _, in := range c.insts {
		in.proxy.sever(false)
		in.mu.Lock()
		running := in.cmd != nil
		if running {
			select {
			case <-in.done:
				running = false
			default:
			}
		}
		in.mu.Unlock()
		if !running {
			c.start(in)
		}
	}
}

// scrape hits every daemon's /metrics once a second. "Answered throughout"
// means: once a start of a daemon has answered /metrics, every later scrape
// of that same start answers 200 within 5 s, unless the daemon was killed
// during the scrape (a dead process answers nothing, by design). The daemon
// bounds its database and broker collectors at 2 and 3 s, so that a
// PostgreSQL or a broker that is down still leaves time to answer within
// Prometheus' default scrape timeout (10 s).
func (c *chaosRun) scrape(ctx context.Context) {
	client := &http.Client{Timeout: 5 * time.Second}
	answered := map[int]int{} // instance -> the start (gen) that has answered
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, in := range c.insts {
			in.mu.Lock()
			gen, done := in.gen, in.done
			in.mu.Unlock()
			if done == nil {
				continue
			}
			resp, err := client.Get("http://" + in.addr + "/metrics")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			in.mu.Lock()
			// Killed by the schedule counts from the moment the kill is
			// decided: the process may be gone before Wait says so.
			sameStart := in.gen == gen && !in.killed
			alive := true
			select {
			case <-in.done:
				alive = false
			default:
			}
			in.mu.Unlock()
			if ok {
				answered[in.i] = gen
				c.scrapes.Add(1)
				continue
			}
			if answered[in.i] == gen && sameStart && alive {
				c.scrapes.Add(1)
				c.scrapeFails.Add(1)
				msg := fmt.Sprintf("%.1fs i%d (start %d): %v", time.Since(c.t0).Seconds(), in.i, gen, errOrStatus(err, resp))
				c.logMu.Lock()
				c.scrapeNotes = append(c.scrapeNotes, msg)
				c.logMu.Unlock()
			}
		}
	}
}

func errOrStatus(err error, resp *http.Response) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// chaosOutcome is an outcome message as the check reads it.
type chaosOutcome struct {
	reversald.Outcome
	n int // messages with this event_id and decided_at
}

// report runs every check against its own source and prints the table.
func (c *chaosRun) report(sched []fault, valid map[string]string, invalid map[string]bool, results, dlq collector) {
	tb := c.tb
	type row struct {
		check, value string
		ok           bool
	}
	var rows []row
	add := func(check string, ok bool, format string, args ...any) {
		rows = append(rows, row{check, fmt.Sprintf(format, args...), ok})
	}
	// Details by kind, at most 8 of each (a broken run would print thousands).
	var details []string
	perKind := map[string]int{}
	detail := func(format string, args ...any) {
		if perKind[format]++; perKind[format] <= 8 {
			details = append(details, fmt.Sprintf(format, args...))
		} else if perKind[format] == 9 {
			details = append(details, "... and more like the line above")
		}
	}

	// The results topic: dedup by event_id, the latest decided_at wins.
	msgs := results.Messages()
	latest := map[string]reversald.Outcome{}
	decisions := map[string]map[time.Time]*chaosOutcome{}
	undecodable, inconsistent := 0, 0
	for _, m := range msgs {
		var o reversald.Outcome
		if err := json.Unmarshal(m.Value, &o); err != nil {
			undecodable++
			continue
		}
		ds := decisions[o.EventID]
		if ds == nil {
			ds = map[time.Time]*chaosOutcome{}
			decisions[o.EventID] = ds
		}
		if d, ok := ds[o.DecidedAt]; ok {
			d.n++
			if d.Status != o.Status || d.CancelSyssn != o.CancelSyssn {
				inconsistent++
				detail("event %s: two outcomes with decided_at %s disagree: %s / %s", o.EventID, o.DecidedAt, d.Status, o.Status)
			}
		} else {
			ds[o.DecidedAt] = &chaosOutcome{Outcome: o, n: 1}
		}
		if l, ok := latest[o.EventID]; !ok || o.DecidedAt.After(l.DecidedAt) {
			latest[o.EventID] = o
		}
	}
	missing := 0
	for id := range valid {
		if _, ok := latest[id]; !ok {
			missing++
			detail("no outcome for %s", id)
		}
	}
	add("every valid event has an outcome", missing == 0 && undecodable == 0, "%d of %d valid events (%d missing, %d undecodable messages)", len(valid)-missing, len(valid), missing, undecodable)
	redecided := 0
	for _, ds := range decisions {
		if len(ds) > 1 {
			redecided++
		}
	}
	unknownIDs := 0
	for id := range latest {
		if _, ok := valid[id]; !ok {
			unknownIDs++
			detail("outcome for an event never sent as valid: %s", id)
		}
	}
	add("duplicates deduplicate by event_id", inconsistent == 0 && unknownIDs == 0,
		"%d outcome messages, %d event_ids, %d duplicates; %d events decided twice (operator retry, latest decided_at kept); %d copies that disagree, %d unknown event_ids",
		len(msgs), len(latest), len(msgs)-len(latest), redecided, inconsistent, unknownIDs)

	// The sandbox's ledger.
	entries := c.s.sb.Entries()
	accepted := map[string]int{}
	toCancelled, unqueried, cancels := 0, 0, 0
	queried := map[string]bool{}
	for _, e := range entries {
		switch e.Endpoint {
		case "query":
			if e.HTTPStatus == 200 && e.Respcd == "0000" {
				queried[e.OutTradeNo] = true
			}
		case "reversal", "close":
			cancels++
			if e.Accepted {
				accepted[e.OutTradeNo]++
			}
			if e.StateBefore == sandbox.StateReversed || e.StateBefore == sandbox.StateClosed {
				toCancelled++
				detail("ledger seq %d: %s sent to %s, already %s", e.Seq, e.Endpoint, e.OutTradeNo, e.StateBefore)
			}
			if !queried[e.OutTradeNo] {
				unqueried++
			}
		}
	}
	double := 0
	for otn, n := range accepted {
		if n > 1 {
			double++
			detail("%s: %d cancels took effect", otn, n)
		}
	}
	add("at most one cancel took effect per payment", double == 0, "%d payments cancelled, %d with more than one (of %d cancel calls, %d ledger entries, %d forgotten)", len(accepted), double, cancels, len(entries), c.s.sb.LedgerDropped())
	add("no cancel sent to a payment already cancelled", toCancelled == 0 && unqueried == 0, "%d sent to an already cancelled payment, %d not preceded by an answered query", toCancelled, unqueried)

	// Every latest status against the sandbox's final state.
	agree, disagree, review, reviewExpected := 0, 0, 0, 0
	byStatus := map[reversald.Status]int{}
	for id, otn := range valid {
		o, ok := latest[id]
		if !ok {
			continue
		}
		byStatus[o.Status]++
		mchid := o.MchID
		txn, known := c.s.sb.Get(mchid, otn)
		state := sandbox.StateUnknown
		if known {
			state = txn.State
		}
		if o.Status == reversald.StatusNeedsReview {
			review++
			if strings.HasPrefix(otn, classAmt) {
				reviewExpected++
			} else {
				detail("%s (%s): needs_review while the sandbox says %s: %s", id, otn, state, o.Reason)
			}
			continue
		}
		want := map[sandbox.State]reversald.Status{
			sandbox.StateReversed: reversald.StatusReversed, sandbox.StateClosed: reversald.StatusClosed,
			sandbox.StatePaid: reversald.StatusPaid, sandbox.StateFailed: reversald.StatusNotPaid,
			sandbox.StateUnknown: reversald.StatusNotFound, sandbox.StateRefunded: reversald.StatusRefunded,
			sandbox.StatePartiallyRefunded: reversald.StatusPartiallyRefunded,
		}[state]
		if o.Status == want {
			agree++
		} else {
			disagree++
			detail("%s (%s): outcome %s, the sandbox says %s", id, otn, o.Status, state)
		}
	}
	add("every status agrees with the sandbox", disagree == 0, "%d agree, %d disagree, %d needs_review (%d of them amount mismatches, by design); %s", agree, disagree, review, reviewExpected, statusCounts(byStatus))
	retriedPaid := 0
	for id, ds := range decisions {
		if len(ds) > 1 && strings.HasPrefix(valid[id], classAmt) && latest[id].Status == reversald.StatusPaid {
			retriedPaid++
		}
	}
	add("operator retry mid-flight re-decided", c.retried.Load() > 0 && retriedPaid > 0, "%d attempts retried, %d events re-decided paid after needs_review", c.retried.Load(), retriedPaid)

	// The DLQ.
	inDLQ := map[string]bool{}
	for _, m := range dlq.Messages() {
		var v struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(m.Value, &v) == nil {
			inDLQ[v.EventID] = true
		}
	}
	notDLQ, invalidOutcome := 0, 0
	for id := range invalid {
		if !inDLQ[id] {
			notDLQ++
			detail("invalid event %s is not in the DLQ", id)
		}
		if _, ok := latest[id]; ok {
			invalidOutcome++
		}
	}
	add("every invalid event is in the DLQ", notDLQ == 0 && invalidOutcome == 0, "%d of %d (%d dead letters in all; %d invalid events with an outcome)", len(invalid)-notDLQ, len(invalid), dlq.Len(), invalidOutcome)

	// The logs.
	leaks, logBytes := 0, int64(0)
	for _, in := range c.insts {
		b, err := os.ReadFile(in.logPath)
		if err != nil {
			tb.Errorf("read %s: %v", in.logPath, err)
			continue
		}
		logBytes += int64(len(b))
		if n := strings.Count(string(b), secretKey); n > 0 {
			leaks += n
			detail("i%d's log holds the client key %d times", in.i, n)
		}
	}
	add("no key in any log", leaks == 0, "%d occurrences in %d logs (%d MiB)", leaks, len(c.insts), logBytes>>20)
	add("/metrics answered throughout", c.scrapeFails.Load() == 0, "%d scrapes of live daemons, %d failed", c.scrapes.Load(), c.scrapeFails.Load())
	c.logMu.Lock()
	for _, n := range c.scrapeNotes {
		detail("scrape failed: %s", n)
	}
	faultErrs := slices.Clone(c.faultErrors)
	c.logMu.Unlock()
	add("every fault was applied", len(faultErrs) == 0, "%d faults scheduled, %d errors applying them", len(sched), len(faultErrs))
	for _, e := range faultErrs {
		detail("fault: %s", e)
	}

	// What happened, for the record.
	kinds := map[faultKind]int{}
	for _, f := range sched {
		kinds[f.Kind]++
	}
	starts, self := 0, 0
	for _, in := range c.insts {
		starts += in.starts
		self += len(in.selfExit)
		for _, e := range in.selfExit {
			detail("i%d exited by itself at %s", in.i, e)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos: seed %d, %d events (%d valid + second events, %d invalid), %d instances, %s of faults, %s in all\n",
		c.cfg.seed, c.cfg.events, len(valid), len(invalid), c.cfg.instances, c.cfg.duration, time.Since(c.t0).Round(time.Second))
	fmt.Fprintf(&b, "faults: %d kill, %d pg-crash, %d disk-full, %d broker-kill, %d sever-pg, %d operator-retry; %d daemon starts, %d exits of their own; PostgreSQL logged %d 'No space left on device'\n",
		kinds[faultKill], kinds[faultPGCrash], kinds[faultDiskFull], kinds[faultBrokerKill], kinds[faultSeverPG], kinds[faultOperatorRetry], starts, self, c.inf.pgLogHas("No space left on device"))
	fmt.Fprintf(&b, "| %-45s | %-6s | %s\n", "check", "result", "figures")
	fmt.Fprintf(&b, "|%s|%s|%s\n", strings.Repeat("-", 47), strings.Repeat("-", 8), strings.Repeat("-", 40))
	failed := 0
	for _, r := range rows {
		verdict := "ok"
		if !r.ok {
			verdict, failed = "FAILED", failed+1
		}
		fmt.Fprintf(&b, "| %-45s | %-6s | %s\n", r.check, verdict, r.value)
	}
	for _, d := range details {
		fmt.Fprintf(&b, "  - %s\n", d)
	}
	fmt.Fprint(c.out, b.String())
	switch {
	case c.cfg.expectRed && failed == 0:
		tb.Errorf("chaos: expected a failed check (CHAOS_EXPECT=red, a mutant daemon) and every check passed")
	case c.cfg.expectRed:
		fmt.Fprintf(c.out, "chaos: %d checks failed, as expected of this daemon (CHAOS_EXPECT=red)\n", failed)
	case failed > 0:
		tb.Errorf("chaos: %d checks failed (seed %d replays the schedule)", failed, c.cfg.seed)
	}
}

func statusCounts(m map[reversald.Status]int) string {
	var parts []string
	for _, s := range reversald.Statuses {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, m[s]))
		}
	}
	return strings.Join(parts, ", ")
}
