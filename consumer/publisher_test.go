package consumer

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/internal/testenv"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

func storeEventFor(id, outTradeNo string, amt int64) reversald.Event {
	return reversald.Event{
		EventID: id, MchID: "M1", OutTradeNo: outTradeNo, TxAmt: amt, TxDtm: "2024-05-01 12:00:00",
		Source: reversald.Source{Topic: "test", Payload: []byte(`{}`)},
	}
}

// seedOutbox queues two outcomes through the public store API: an event with the key of an
// existing attempt but another amount is a conflict, queued at once as needs_review.
func seedOutbox(t *testing.T, st *store.Store) {
	t.Helper()
	_, err := st.Intake(t.Context(), []reversald.Event{
		storeEventFor("e1", "T1", 100), storeEventFor("e2", "T1", 200),
		storeEventFor("e3", "T2", 100), storeEventFor("e4", "T2", 300),
	})
	if err != nil {
		t.Fatalf("seed intake: %v", err)
	}
	if n := backlog(t, st); n != 2 {
		t.Fatalf("outbox backlog after seeding = %d, want 2", n)
	}
}

// publisherCounter adds up a Publisher's hooks, as the daemon's metrics do.
type publisherCounter struct{ published, errors atomic.Int64 }

func (c *publisherCounter) hooks() PublisherHooks {
	return PublisherHooks{
		Published: func(n int) { c.published.Add(int64(n)) },
		Error:     func() { c.errors.Add(1) },
	}
}

// brokerlessPublisher is a Publisher of st's outbox aimed at no broker
// (every round fails), retrying between retryMin and retryMax, and its
// counted hooks.
func brokerlessPublisher(t *testing.T, st *store.Store, retryMin, retryMax time.Duration) (*Publisher, *publisherCounter) {
	t.Helper()
	counts := &publisherCounter{}
	p, err := NewPublisher(PublisherConfig{
		Brokers: []string{"127.0.0.1:1"}, Topic: "nowhere", WriteTimeout: time.Second,
		FlushTimeout: time.Second, RetryMin: retryMin, RetryMax: retryMax, Hooks: counts.hooks(),
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	return p, counts
}

func backlog(t *testing.T, st *store.Store) int64 {
	t.Helper()
	b, err := st.Backlog(t.Context())
	if err != nil {
		t.Fatalf("backlog: %v", err)
	}
	return b.Outbox
}

// TestPublisherKeepsRowsUntilAcked: with no reachable broker nothing is marked published.
func TestPublisherKeepsRowsUntilAcked(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	seedOutbox(t, st)
	p, counts := brokerlessPublisher(t, st, 20*time.Millisecond, 50*time.Millisecond)
	stop := runInBackground(t, p.Run)
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return counts.errors.Load() >= 2 }, "two failed publish rounds")
	stop()
	if n := backlog(t, st); n != 2 {
		t.Fatalf("backlog after failed publishing = %d, want 2 (rows marked without an ack)", n)
	}
	if n := counts.published.Load(); n != 0 {
		t.Fatalf("%d rows counted as published without an ack", n)
	}
}

func TestPublisherWritesOutcomes(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	st := storetest.New(t)
	topic := kafkatest.NewTopic(t, brokers, "results", 2)
	seedOutbox(t, st)

	var counts publisherCounter
	p, err := NewPublisher(PublisherConfig{Brokers: brokers, Topic: topic, PollInterval: time.Hour, Hooks: counts.hooks()}, st)
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, p.Run)
	// The first round runs at start; a Wake must also work with an hour-long poll interval.
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return counts.published.Load() == 2 }, "two published outcomes")
	if n := backlog(t, st); n != 0 {
		t.Fatalf("backlog after publishing = %d, want 0", n)
	}
	if _, err := st.Intake(t.Context(), []reversald.Event{storeEventFor("e5", "T1", 500)}); err != nil {
		t.Fatal(err)
	}
	p.Wake()
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return counts.published.Load() == 3 }, "the woken round")
	stop()

	msgs := kafkatest.ReadAll(t, brokers, topic)
	if len(msgs) != 3 {
		t.Fatalf("results topic has %d messages, want 3", len(msgs))
	}
	var ids []string
	for _, m := range msgs {
		var o reversald.Outcome
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatalf("outcome %s is not JSON: %v", m.Value, err)
		}
		if h, _ := kafkatest.Header(m, HeaderEventID); h != o.EventID {
			t.Errorf("header event_id %q != value event_id %q", h, o.EventID)
		}
		if string(m.Key) != o.OutTradeNo {
			t.Errorf("key %q != out_trade_no %q", m.Key, o.OutTradeNo)
		}
		if o.Status != reversald.StatusNeedsReview || o.Method != "none" || o.MchID != "M1" ||
			o.SchemaVersion != reversald.SchemaVersion || o.DecidedAt.IsZero() || o.Reason == "" {
			t.Errorf("outcome %+v", o)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(m.Value, &fields); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"event_id", "out_trade_no", "mchid", "syssn", "cancel_syssn", "status", "method",
			"respcd", "resperr", "respmsg", "txamt", "txcurrcd", "gateway_calls", "first_seen_at", "decided_at",
			"reason", "schema_version"} {
			if _, ok := fields[k]; !ok {
				t.Errorf("outcome JSON misses %s: %s", k, m.Value)
			}
		}
		ids = append(ids, o.EventID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"e2", "e4", "e5"}) {
		t.Fatalf("published event ids %v, want [e2 e4 e5]", ids)
	}
}

// TestPublisherFlushesOnStop: rows queued just before the cancel are still published.
func TestPublisherFlushesOnStop(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	st := storetest.New(t)
	topic := kafkatest.NewTopic(t, brokers, "results", 1)
	p, err := NewPublisher(PublisherConfig{Brokers: brokers, Topic: topic, PollInterval: time.Hour}, st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// Whether the first round sees these rows or only the final flush does, they must be out
	// when Run returns.
	seedOutbox(t, st)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := backlog(t, st); n != 0 {
		t.Fatalf("backlog after stop = %d, want 0 (no final flush)", n)
	}
	if got := len(kafkatest.ReadAll(t, brokers, topic)); got != 2 {
		t.Fatalf("results topic has %d messages, want 2", got)
	}
}

// TestPublisherLingers: a wake soon after a round that published waits for
// the linger, so that outcomes decided close together share a round; then it
// publishes without waiting for the (hour-long) poll. A round that published
// nothing (the first, at start) starts no linger: an outcome decided alone
// is published at once.
func TestPublisherLingers(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	st := storetest.New(t)
	topic := kafkatest.NewTopic(t, brokers, "results", 1)
	const linger = 5 * time.Second
	p, err := NewPublisher(PublisherConfig{Brokers: brokers, Topic: topic, PollInterval: time.Hour, Linger: linger}, st)
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, p.Run)
	defer stop()
	waitBacklog := func(want int64) time.Time {
		t.Helper()
		for i := 0; ; i++ {
			if n := backlog(t, st); n == want {
				return time.Now()
			} else if i == 400 {
				t.Fatalf("outbox backlog %d after 20 s, want %d", n, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	seedOutbox(t, st)
	woke := time.Now()
	p.Wake()
	if at := waitBacklog(0); at.Sub(woke) >= linger/2 {
		t.Fatalf("published %s after the first wake, want at once: the empty round at start must not start a linger", at.Sub(woke))
	}

	if _, err := st.Intake(t.Context(), []reversald.Event{storeEventFor("e5", "T3", 100), storeEventFor("e6", "T3", 200)}); err != nil {
		t.Fatal(err)
	}
	woke = time.Now()
	p.Wake()
	time.Sleep(500 * time.Millisecond)
	if n := backlog(t, st); n != 1 {
		t.Fatalf("backlog %d 500ms after a wake within the linger, want 1 (still lingering)", n)
	}
	if at := waitBacklog(0); at.Sub(woke) > linger+10*time.Second {
		t.Fatalf("published %s after the wake, want about the linger (%s)", at.Sub(woke), linger)
	}
	if got := len(kafkatest.ReadAll(t, brokers, topic)); got != 3 {
		t.Fatalf("results topic has %d messages, want 3", got)
	}
}

// TestPublisherBacksOffThroughWakes: while rounds fail, a wake (one per
// outcome decided) does not start a round of its own: the backoff paces
// the retries, not the executor.
func TestPublisherBacksOffThroughWakes(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	seedOutbox(t, st)
	p, counts := brokerlessPublisher(t, st, 2*time.Second, 2*time.Second)
	stop := runInBackground(t, p.Run)
	defer stop()
	kafkatest.WaitFor(t, 30*time.Second, func() bool { return counts.errors.Load() >= 1 }, "a failed publish round")
	from := counts.errors.Load()
	for range 100 {
		p.Wake()
		time.Sleep(10 * time.Millisecond)
	}
	// One second of wakes within a 2 s backoff: at most the one retry that
	// may have been due meanwhile.
	if n := counts.errors.Load() - from; n > 1 {
		t.Fatalf("%d failed rounds during a second of wakes and a 2 s backoff, want at most 1", n)
	}
}
