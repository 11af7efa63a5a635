package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/reversal"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// testDB is a fresh migrated database: the store under test and a direct connection to count
// rows with.
type testDB struct {
	st   *store.Store
	conn *pgx.Conn
	url  string
}

func newTestDB(t testing.TB) testDB {
	t.Helper()
	url := storetest.URL(t)
	st, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return testDB{st: st, conn: conn, url: url}
}

func (db testDB) count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := db.conn.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func validValue(i int, withID bool) []byte {
	id := ""
	if withID {
		id = fmt.Sprintf(`"event_id":"ev-%03d",`, i)
	}
	return fmt.Appendf(nil, `{%s"out_trade_no":"T%03d","mchid":"M1","txamt":%d,"txcurrcd":"HKD","txdtm":"2024-05-01 12:%02d:00","reason":"timeout"}`,
		id, i, 100+i, i%60)
}

func validMessages(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key: fmt.Appendf(nil, "T%03d", i), Value: validValue(i, i%2 == 0),
			Headers: []kafka.Header{{Key: "trace", Value: fmt.Appendf(nil, "tr-%d", i)}},
		}
	}
	return msgs
}

func intakeConfig(brokers []string, topic, dlq, group string) IntakeConfig {
	return IntakeConfig{
		Brokers: brokers, Topic: topic, GroupID: group, DLQTopic: dlq,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
}

// intakeStats is what an Intake reported through its hooks so far.
type intakeStats struct {
	Batches, Messages, Invalid, New, Attached, Duplicates, Conflicts, Retries int64
}

// intakeCounter adds up an Intake's hooks, as the daemon's metrics do.
type intakeCounter struct {
	mu sync.Mutex
	s  intakeStats
}

func (c *intakeCounter) add(f func(*intakeStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.s)
}

func (c *intakeCounter) stats() intakeStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

// newCountedIntake is NewIntake with cfg's hooks counting into the returned counter.
func newCountedIntake(t testing.TB, cfg IntakeConfig, st *store.Store) (*Intake, *intakeCounter) {
	t.Helper()
	c := &intakeCounter{}
	cfg.Hooks = IntakeHooks{
		Batch: func(n int) { c.add(func(s *intakeStats) { s.Batches++; s.Messages += int64(n) }) },
		Recorded: func(status store.EventStatus) {
			c.add(func(s *intakeStats) {
				switch status {
				case store.EventNew:
					s.New++
				case store.EventAttached:
					s.Attached++
				case store.EventDuplicate:
					s.Duplicates++
				case store.EventConflict:
					s.Conflicts++
				case store.EventRejected: // counted as invalid once dead-lettered
				}
			})
		},
		DeadLettered: func(n int) { c.add(func(s *intakeStats) { s.Invalid += int64(n) }) },
		Retry:        func() { c.add(func(s *intakeStats) { s.Retries++ }) },
	}
	it, err := NewIntake(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return it, c
}

// assertAllCommitted checks that the group's committed offset of every partition is its high
// watermark: a new member would get nothing.
func assertAllCommitted(t *testing.T, brokers []string, group, topic string, partitions int) {
	t.Helper()
	hw := kafkatest.HighWatermarks(t, brokers, topic)
	got, err := kafkatest.Cluster{Brokers: brokers}.CommittedOffsets(t.Context(), group, topic)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	for p := 0; p < partitions; p++ {
		if hw[p] > 0 && got[p] != hw[p] {
			t.Errorf("partition %d: committed %d, high watermark %d", p, got[p], hw[p])
		}
	}
}

func TestIntakeRecordsValidAndDeadLettersInvalid(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	db := newTestDB(t)
	in := kafkatest.NewTopic(t, brokers, "in", 3)
	dlq := kafkatest.NewTopic(t, brokers, "in-dlq", 1)
	group := kafkatest.RandomName("g")

	const valid = 60
	msgs := validMessages(valid)
	// A redelivered copy of an event with an event_id: recorded once.
	msgs = append(msgs, kafka.Message{Key: []byte("T000"), Value: validValue(0, true)})
	invalid := []kafka.Message{
		{Key: []byte("X1"), Value: []byte(`{"out_trade_no":"X1"}`), Headers: []kafka.Header{{Key: "trace", Value: []byte("bad-1")}}},
		{Key: nil, Value: []byte(`not json`)},
		{Key: []byte("X3"), Value: []byte(`{"out_trade_no":"X3","txamt":25.5,"txdtm":"2024-05-01 12:00:00"}`)},
		{Key: []byte("X4"), Value: append(append([]byte(`{"pad":"`), make([]byte, reversal.MaxEventBytes)...), `"}`...)},
	}
	msgs = append(msgs, invalid...)
	kafkatest.Produce(t, brokers, in, msgs...)

	var mu sync.Mutex
	handed := map[int64]bool{}
	cfg := intakeConfig(brokers, in, dlq, group)
	cfg.BatchSize = 25 // several batches
	cfg.OnNew = func(ids []int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if handed[id] {
				t.Errorf("attempt %d handed over twice", id)
			}
			handed[id] = true
		}
	}
	it, counts := newCountedIntake(t, cfg, db.st)
	stop := runInBackground(t, it.Run)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return counts.stats().Messages == int64(len(msgs)) }, "all messages taken in")
	stop()

	s := counts.stats()
	if s.New != valid || s.Duplicates != 1 || s.Invalid != int64(len(invalid)) || s.Attached != 0 || s.Conflicts != 0 {
		t.Errorf("stats %+v: want %d new, 1 duplicate, %d invalid", s, valid, len(invalid))
	}
	if n := db.count(t, "events"); n != valid {
		t.Errorf("events table has %d rows, want %d", n, valid)
	}
	if n := db.count(t, "attempts"); n != valid {
		t.Errorf("attempts table has %d rows, want %d", n, valid)
	}
	mu.Lock()
	if len(handed) != valid {
		t.Errorf("OnNew got %d attempts, want %d", len(handed), valid)
	}
	mu.Unlock()
	assertAllCommitted(t, brokers, group, in, 3)

	// Every invalid message is in the DLQ with its origin and reason.
	originals := map[string]kafka.Message{}
	for _, m := range kafkatest.ReadAll(t, brokers, in) {
		originals[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = m
	}
	letters := kafkatest.ReadAll(t, brokers, dlq)
	if len(letters) != len(invalid) {
		t.Fatalf("DLQ has %d messages, want %d", len(letters), len(invalid))
	}
	for _, l := range letters {
		p, _ := kafkatest.Header(l, HeaderDLQPartition)
		o, _ := kafkatest.Header(l, HeaderDLQOffset)
		orig, ok := originals[p+"/"+o]
		if !ok {
			t.Fatalf("dead letter names %s/%s, not an input message", p, o)
		}
		if topic, _ := kafkatest.Header(l, HeaderDLQTopic); topic != in {
			t.Errorf("x-dlq-topic = %q, want %q", topic, in)
		}
		if reason, _ := kafkatest.Header(l, HeaderDLQError); !strings.HasPrefix(reason, "invalid event: ") {
			t.Errorf("x-dlq-error = %q", reason)
		}
		if at, _ := kafkatest.Header(l, HeaderDLQAt); at == "" {
			t.Error("x-dlq-at missing")
		}
		if string(l.Key) != string(orig.Key) || string(l.Value) != string(orig.Value) {
			t.Errorf("dead letter %s/%s: key/value differ from the original", p, o)
		}
		for _, h := range orig.Headers {
			if v, _ := kafkatest.Header(l, h.Key); v != string(h.Value) {
				t.Errorf("dead letter %s/%s lost header %s", p, o, h.Key)
			}
		}
	}

	// A new member of the group gets nothing: everything was committed.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: in, MaxWait: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	if m, err := r.FetchMessage(ctx); err == nil {
		t.Errorf("a new group member fetched %s/%d/%d after intake committed everything", m.Topic, m.Partition, m.Offset)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second member: %v", err)
	}
	_ = r.Close()
}

// TestIntakeRetriesFailedBatchWithoutCommitting: the store fails the first calls; the batch is
// retried as it is, nothing is lost, and no offset is committed before the store succeeded.
func TestIntakeRetriesFailedBatchWithoutCommitting(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	db := newTestDB(t)
	in := kafkatest.NewTopic(t, brokers, "in", 2)
	dlq := kafkatest.NewTopic(t, brokers, "in-dlq", 1)
	group := kafkatest.RandomName("g")
	const n, failFirst = 20, 3
	kafkatest.Produce(t, brokers, in, validMessages(n)...)

	it, counts := newCountedIntake(t, intakeConfig(brokers, in, dlq, group), db.st)
	var mu sync.Mutex
	calls := 0
	var committedDuringFailures []map[int]int64
	it.intake = func(ctx context.Context, events []reversald.Event) (store.IntakeResult, error) {
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		if c <= failFirst {
			got, err := kafkatest.Cluster{Brokers: brokers}.CommittedOffsets(ctx, group, in)
			if err != nil {
				return store.IntakeResult{}, fmt.Errorf("test: offsets: %w", err)
			}
			mu.Lock()
			committedDuringFailures = append(committedDuringFailures, got)
			mu.Unlock()
			return store.IntakeResult{}, errors.New("test: database unavailable")
		}
		return db.st.Intake(ctx, events)
	}
	stop := runInBackground(t, it.Run)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return counts.stats().Messages == n }, "all messages taken in")
	stop()

	s := counts.stats()
	if s.Retries < failFirst || s.New != n {
		t.Errorf("stats %+v: want >= %d retries and %d new", s, failFirst, n)
	}
	if got := db.count(t, "events"); got != n {
		t.Errorf("events table has %d rows, want %d", got, n)
	}
	mu.Lock()
	for i, offs := range committedDuringFailures {
		for p, off := range offs {
			if off >= 0 {
				t.Errorf("failed call %d: partition %d already committed at %d before the store succeeded", i+1, p, off)
			}
		}
	}
	if len(committedDuringFailures) != failFirst {
		t.Errorf("%d failed calls observed, want %d", len(committedDuringFailures), failFirst)
	}
	mu.Unlock()
	assertAllCommitted(t, brokers, group, in, 2)
}

// TestIntakeRedeliveryAfterCrashBeforeCommit: the first instance records a batch and dies
// before committing its offsets; a restart in the same group gets the batch again and records
// every event as a duplicate: nothing doubled, nothing lost.
func TestIntakeRedeliveryAfterCrashBeforeCommit(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	db := newTestDB(t)
	in := kafkatest.NewTopic(t, brokers, "in", 1)
	dlq := kafkatest.NewTopic(t, brokers, "in-dlq", 1)
	group := kafkatest.RandomName("g")
	const n = 30
	kafkatest.Produce(t, brokers, in, validMessages(n)...)

	// First life: store commits, then the process "dies" (Run cancelled, no grace for the commit).
	cfg := intakeConfig(brokers, in, dlq, group)
	cfg.BatchLinger = time.Second // all messages are there already: one batch
	cfg.FinalTimeout = time.Millisecond
	cfg.RetryMin, cfg.RetryMax = 5*time.Second, 5*time.Second
	first, err := NewIntake(cfg, db.st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stored := 0
	first.intake = func(c context.Context, events []reversald.Event) (store.IntakeResult, error) {
		res, err := db.st.Intake(c, events)
		if err != nil {
			return res, err
		}
		stored += len(events)
		cancel()
		return store.IntakeResult{}, errors.New("test: killed after the store commit")
	}
	if err := first.Run(ctx); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	cancel()
	if stored == 0 {
		t.Fatal("first life stored nothing")
	}
	offs, err := kafkatest.Cluster{Brokers: brokers}.CommittedOffsets(t.Context(), group, in)
	if err != nil {
		t.Fatal(err)
	}
	if offs[0] >= 0 {
		t.Fatalf("first life committed offset %d despite dying before the commit", offs[0])
	}

	// Second life.
	second, counts := newCountedIntake(t, intakeConfig(brokers, in, dlq, group), db.st)
	stop := runInBackground(t, second.Run)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return counts.stats().Messages == n }, "all messages taken in again")
	stop()
	s := counts.stats()
	if s.Duplicates != int64(stored) || s.New != int64(n-stored) {
		t.Errorf("second life stats %+v: want %d duplicates, %d new", s, stored, n-stored)
	}
	if got := db.count(t, "events"); got != n {
		t.Errorf("events table has %d rows, want %d", got, n)
	}
	if got := db.count(t, "attempts"); got != n {
		t.Errorf("attempts table has %d rows, want %d", got, n)
	}
	assertAllCommitted(t, brokers, group, in, 1)
}

// TestIntakeStopsPromptlyWhenIdle: an intake that has joined its group and
// read everything there is returns promptly when cancelled, leaving nothing
// uncommitted.
func TestIntakeStopsPromptlyWhenIdle(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	db := newTestDB(t)
	in := kafkatest.NewTopic(t, brokers, "in", 1)
	group := kafkatest.RandomName("g")
	it, counts := newCountedIntake(t, intakeConfig(brokers, in, in+"-dlq", group), db.st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- it.Run(ctx) }()
	kafkatest.Produce(t, brokers, in, kafka.Message{Key: []byte("T00001"), Value: validValueN(1)})
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return counts.stats().Batches == 1 }, "the message read and committed")
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancel")
	}
	t.Logf("stopped in %s", time.Since(start))
	assertAllCommitted(t, brokers, group, in, 1)
}

// TestIntakeRebalanceLosesNothing: two instances share a group while members come and go
// mid-stream; every event ends up recorded exactly once and all offsets are committed.
func TestIntakeRebalanceLosesNothing(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	db := newTestDB(t)
	const partitions, waves, perWave = 4, 4, 150
	in := kafkatest.NewTopic(t, brokers, "in", partitions)
	dlq := kafkatest.NewTopic(t, brokers, "in-dlq", 1)
	group := kafkatest.RandomName("g")

	wave := func(w int) []kafka.Message {
		msgs := make([]kafka.Message, perWave)
		for i := range msgs {
			k := w*perWave + i
			msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "T%05d", k), Value: validValueN(k)}
		}
		return msgs
	}
	newIntake := func() (*Intake, *intakeCounter) {
		cfg := intakeConfig(brokers, in, dlq, group)
		cfg.BatchSize = 40
		return newCountedIntake(t, cfg, db.st)
	}
	recorded := func() int { return db.count(t, "events") }

	a, countsA := newIntake()
	stopA := runInBackground(t, a.Run)
	kafkatest.Produce(t, brokers, in, wave(0)...)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return recorded() == perWave }, "wave 0 recorded")

	b, countsB := newIntake() // joins: rebalance while A works
	stopB := runInBackground(t, b.Run)
	kafkatest.WaitMembers(t, brokers, group, in, 2)
	kafkatest.Produce(t, brokers, in, wave(1)...)
	kafkatest.Produce(t, brokers, in, wave(2)...)
	stopA() // leaves mid-stream: its partitions move to B
	kafkatest.Produce(t, brokers, in, wave(3)...)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return recorded() == waves*perWave }, "every wave recorded")

	// B may still be committing its last batch; wait until the group has caught up.
	hw := kafkatest.HighWatermarks(t, brokers, in)
	kafkatest.WaitFor(t, 30*time.Second, func() bool {
		got, err := kafkatest.Cluster{Brokers: brokers}.CommittedOffsets(t.Context(), group, in)
		if err != nil {
			return false
		}
		for p := 0; p < partitions; p++ {
			if hw[p] > 0 && got[p] != hw[p] {
				return false
			}
		}
		return true
	}, "offsets committed")
	stopB()

	if got := db.count(t, "attempts"); got != waves*perWave {
		t.Errorf("attempts table has %d rows, want %d", got, waves*perWave)
	}
	sa, sb := countsA.stats(), countsB.stats()
	if sa.New+sb.New != waves*perWave {
		t.Errorf("new events: A %d + B %d, want %d in all", sa.New, sb.New, waves*perWave)
	}
	t.Logf("A %+v", sa)
	t.Logf("B %+v", sb)
}

func validValueN(k int) []byte {
	return fmt.Appendf(nil, `{"out_trade_no":"T%05d","mchid":"M1","txamt":%d,"txdtm":"2024-05-01 12:00:00"}`, k, 100+k)
}

// TestIntakeRetriesWhenDeadLetterTopicIsMissing: a DLQ write that fails holds the batch's
// offsets until it succeeds (nothing is committed past an invalid message that is not parked
// yet), while the batch's valid events are already recorded and handed on.
func TestIntakeRetriesWhenDeadLetterTopicIsMissing(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	db := newTestDB(t)
	in := kafkatest.NewTopic(t, brokers, "in", 1)
	dlq := kafkatest.RandomName("in-dlq") // created later
	group := kafkatest.RandomName("g")
	kafkatest.Produce(t, brokers, in,
		kafka.Message{Key: []byte("T1"), Value: validValueN(1)},
		kafka.Message{Key: []byte("X"), Value: []byte(`{"out_trade_no":"X"}`)},
		kafka.Message{Key: []byte("T2"), Value: validValueN(2)},
	)
	cfg := intakeConfig(brokers, in, dlq, group)
	cfg.WriteTimeout = 2 * time.Second
	it, counts := newCountedIntake(t, cfg, db.st)
	stop := runInBackground(t, it.Run)
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return counts.stats().Retries >= 2 }, "failed DLQ writes")
	offs, err := kafkatest.Cluster{Brokers: brokers}.CommittedOffsets(t.Context(), group, in)
	if err != nil {
		t.Fatal(err)
	}
	if offs[0] >= 0 {
		t.Fatalf("committed offset %d while the dead letter was not written", offs[0])
	}
	if n := db.count(t, "events"); n != 2 {
		// The store goes first: valid events do not wait for a DLQ outage.
		t.Fatalf("%d events recorded during the DLQ outage, want 2", n)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, brokers, Security{}, []TopicSpec{{Name: dlq, Partitions: 1, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 60*time.Second, func() bool { return counts.stats().Messages == 3 }, "the batch to go through")
	stop()
	if n := db.count(t, "events"); n != 2 {
		t.Fatalf("events recorded = %d, want 2", n)
	}
	if letters := kafkatest.ReadAll(t, brokers, dlq); len(letters) < 1 {
		t.Fatal("dead letter missing")
	}
	assertAllCommitted(t, brokers, group, in, 1)
}
