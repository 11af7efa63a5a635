package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/backoff"
	"github.com/reversald/reversald/reversal"
	"github.com/reversald/reversald/store"
)

// IntakeConfig configures an Intake.
type IntakeConfig struct {
	Brokers  []string
	Topic    string // payment-uncertain input
	GroupID  string
	DLQTopic string
	// DefaultMchID is the mchid of events that carry none (QFPAY_MCHID). It
	// is applied before the event is keyed, so that one payment is one
	// attempt whether or not its events name the merchant.
	DefaultMchID string
	Security     Security

	// BatchSize is the most messages per store transaction; 0 means 500.
	BatchSize int
	// BatchLinger is how long a batch waits for more messages once it has one; 0 means 20ms.
	BatchLinger time.Duration
	// MaxWait is the longest a broker fetch waits for data; 0 means 250ms.
	MaxWait time.Duration
	// RetryMin and RetryMax bound the backoff between retries of a failed batch (store or DLQ
	// write); 0 means 100ms and 10s. A batch is retried until it succeeds or Run stops.
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds one store transaction, DLQ write or commit; 0 means 30s.
	WriteTimeout time.Duration
	// FinalTimeout bounds finishing the in-progress batch (write and commit) after Run's
	// context is cancelled; 0 means 10s. Past it the batch is left uncommitted: redelivered.
	FinalTimeout time.Duration
	// SessionTimeout and HeartbeatInterval of the consumer group; 0 means kafka-go's defaults
	// (30s, 3s).
	SessionTimeout, HeartbeatInterval time.Duration

	// OnNew receives the attempts a batch created, after its transaction committed and before
	// its offsets are committed: the executor's fast path. It must not block for long. May be nil.
	OnNew  func(attemptIDs []int64)
	Hooks  IntakeHooks
	Logger *slog.Logger // nil: slog.Default()
	// TracerProvider, when set, traces every message: a span per message, a
	// child of the traceparent in its headers (or a new trace), whose context
	// is stored with the event; nil (tracing off) reads no header.
	TracerProvider trace.TracerProvider
}

// IntakeHooks let the caller count what an Intake does (metrics). Any may be nil. They are
// called synchronously from Run: they must be cheap and must not block.
type IntakeHooks struct {
	// Batch: a batch is done, durable and its offsets committed (or, after repeated commit
	// failures, durable and left for redelivery).
	Batch func(messages int)
	// Recorded: the store transaction of a batch committed; one call per valid event, with
	// what the store did with it. An EventRejected event is dead-lettered next.
	Recorded func(status store.EventStatus)
	// DeadLettered: n messages (invalid or rejected) were acknowledged by the dead-letter topic.
	DeadLettered func(n int)
	// Retry: a step of a batch (store, dead-letter write or commit) failed; the batch is retried.
	Retry func()
	// CommitError: an offset commit failed (the batch is durable; it is retried or redelivered).
	CommitError func()
	// FetchError: the consumer-group reader returned an error; fetching is retried.
	FetchError func()
}

func (h IntakeHooks) withDefaults() IntakeHooks {
	if h.Batch == nil {
		h.Batch = func(int) {}
	}
	if h.Recorded == nil {
		h.Recorded = func(store.EventStatus) {}
	}
	if h.DeadLettered == nil {
		h.DeadLettered = func(int) {}
	}
	if h.Retry == nil {
		h.Retry = func() {}
	}
	if h.CommitError == nil {
		h.CommitError = func() {}
	}
	if h.FetchError == nil {
		h.FetchError = func() {}
	}
	return h
}

// Validate lists every problem of the config as it will run: after defaults, so a RetryMin
// above the default RetryMax is refused too.
func (c IntakeConfig) Validate() error {
	c = c.withDefaults()
	errs := validateBrokers(c.Brokers)
	if c.Topic == "" {
		errs = append(errs, errors.New("input topic is required"))
	}
	if c.GroupID == "" {
		errs = append(errs, errors.New("consumer group id is required"))
	}
	if c.DLQTopic == "" {
		errs = append(errs, errors.New("dead-letter topic is required"))
	}
	if c.DLQTopic != "" && c.DLQTopic == c.Topic {
		errs = append(errs, fmt.Errorf("dead-letter topic must differ from the input topic %s", c.Topic))
	}
	if c.BatchSize < 0 || c.BatchSize > 100_000 {
		errs = append(errs, fmt.Errorf("intake batch size must be 0 (default 500) or 1..100000, got %d", c.BatchSize))
	}
	errs = append(errs, validateDurations("intake", c.RetryMin, c.RetryMax, []namedDuration{
		{"batch linger", c.BatchLinger}, {"max wait", c.MaxWait}, {"write timeout", c.WriteTimeout},
		{"final timeout", c.FinalTimeout}, {"session timeout", c.SessionTimeout}, {"heartbeat interval", c.HeartbeatInterval},
	})...)
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c IntakeConfig) withDefaults() IntakeConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.BatchLinger == 0 {
		c.BatchLinger = 20 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = 250 * time.Millisecond
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.FinalTimeout == 0 {
		c.FinalTimeout = 10 * time.Second
	}
	c.Hooks = c.Hooks.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// maxCommitAttempts is how often a durable batch's commit is tried before moving on.
const maxCommitAttempts = 5

// Intake reads the input topic as a consumer group and records each batch in PostgreSQL
// before committing its offsets. See the package documentation for its invariants.
type Intake struct {
	cfg    IntakeConfig
	intake func(ctx context.Context, events []reversald.Event) (store.IntakeResult, error)
	tracer trace.Tracer // nil: tracing off
}

// NewIntake returns an Intake recording into st. Start it with Run.
func NewIntake(cfg IntakeConfig, st *store.Store) (*Intake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("intake config: %w", err)
	}
	if st == nil {
		return nil, errors.New("intake config: store is required")
	}
	in := &Intake{cfg: cfg.withDefaults(), intake: st.Intake}
	if cfg.TracerProvider != nil {
		in.tracer = cfg.TracerProvider.Tracer(instrumentation)
	}
	return in, nil
}

// Run consumes until ctx is cancelled. Then it stops fetching, finishes the batch in progress
// (write and commit, within FinalTimeout), closes the reader (leaving the group, so the
// partitions move at once) and returns nil. It returns an error only when it cannot start.
func (in *Intake) Run(ctx context.Context) error {
	dialer, err := in.cfg.Security.Dialer()
	if err != nil {
		return err
	}
	dlq, err := NewDeadLetters(DeadLetterConfig{
		Brokers: in.cfg.Brokers, Topic: in.cfg.DLQTopic, Security: in.cfg.Security,
		WriteTimeout: in.cfg.WriteTimeout,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := dlq.Close(); err != nil {
			in.cfg.Logger.Warn("close dead-letter writer", "error", err)
		}
	}()
	log := in.cfg.Logger.With("topic", in.cfg.Topic, "group", in.cfg.GroupID)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        in.cfg.Brokers,
		GroupID:        in.cfg.GroupID,
		Topic:          in.cfg.Topic,
		Dialer:         dialer,
		StartOffset:    kafka.FirstOffset, // a new group reads the topic from the start
		CommitInterval: 0,                 // synchronous: CommitMessages returns after the broker acked
		MaxWait:        in.cfg.MaxWait,
		QueueCapacity:  max(100, in.cfg.BatchSize),
		// Partitions added to the input topic are picked up by a rebalance within about 5s;
		// with FirstOffset they are read from their start, so nothing written there is skipped.
		WatchPartitionChanges: true,
		SessionTimeout:        in.cfg.SessionTimeout,
		HeartbeatInterval:     in.cfg.HeartbeatInterval,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			text := fmt.Sprintf(msg, args...)
			// An idle partition's long poll ends in a read timeout: that is
			// kafka-go waiting, not a fault.
			if isIdleTimeout(text) {
				log.Debug(text, "source", "kafka-go reader")
				return
			}
			log.Warn(text, "source", "kafka-go reader")
		}),
	})
	defer func() {
		// Close leaves the group, so a rebalance hands our partitions over at once instead of
		// after the session timeout.
		if err := r.Close(); err != nil {
			log.Warn("close reader", "error", err)
		}
	}()

	// The next batch is fetched and decoded while this one is written and
	// committed: a fetcher goroutine hands decoded batches over one at a
	// time, in fetch order, and this loop makes each durable and commits it
	// before it takes the next. On cancel the batch in progress is finished;
	// one fetched but not started is left uncommitted (redelivered).
	batches := make(chan *batchWork)
	fetched := make(chan error, 1)
	go func() { fetched <- in.fetch(ctx, r, batches, log) }()
	for {
		select {
		case w := <-batches:
			in.handle(ctx, r, dlq, w, log)
			if ctx.Err() == nil {
				continue
			}
			// The fetcher sees the cancel too; wait for it to end.
			if err := <-fetched; err != nil {
				log.Warn("intake fetch ended", "error", err)
			}
			return nil
		case err := <-fetched: // nil when cancelled
			return err
		}
	}
}

// fetch fetches batches and decodes them, and hands each to batches, until
// ctx is cancelled (then it returns nil) or the reader closes. A failed fetch
// is retried with backoff.
func (in *Intake) fetch(ctx context.Context, r *kafka.Reader, batches chan<- *batchWork, log *slog.Logger) error {
	fetchFailures := 0
	for {
		batch, ferr := in.fetchBatch(ctx, r)
		if len(batch) > 0 {
			select {
			case batches <- in.decode(batch):
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		default:
		}
		switch {
		case ferr == nil:
			fetchFailures = 0
		case errors.Is(ferr, io.EOF):
			return errors.New("intake reader closed unexpectedly")
		default:
			fetchFailures++
			in.cfg.Hooks.FetchError()
			d := backoff.Delay(fetchFailures, in.cfg.RetryMin, in.cfg.RetryMax)
			log.Warn("fetch from input topic", "error", ferr, "retry_in", d)
			backoff.Sleep(ctx, d)
		}
	}
}

// fetchBatch blocks for the first message, then takes more until BatchSize or until
// BatchLinger has passed since the first. It returns what it has with the error that stopped
// it; a linger timeout is not an error.
func (in *Intake) fetchBatch(ctx context.Context, r *kafka.Reader) ([]kafka.Message, error) {
	first, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := make([]kafka.Message, 1, in.cfg.BatchSize)
	batch[0] = first
	lctx, cancel := context.WithTimeout(ctx, in.cfg.BatchLinger)
	defer cancel()
	for len(batch) < in.cfg.BatchSize {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			if lctx.Err() != nil && ctx.Err() == nil {
				return batch, nil // lingered long enough
			}
			return batch, err
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// handle makes the batch durable and commits it. Steps already done are not repeated when a
// later one fails: the store transaction (then OnNew), then the DLQ write, then the commit.
// It retries with backoff until done; after ctx is cancelled it keeps trying for FinalTimeout
// and then gives up, leaving the offsets uncommitted (the batch is redelivered: idempotent).
func (in *Intake) handle(ctx context.Context, r *kafka.Reader, dlq *DeadLetters, w *batchWork, log *slog.Logger) {
	batch := w.messages
	wctx, done := graceContext(ctx, in.cfg.FinalTimeout)
	defer done()
	if in.tracer != nil {
		wctx, w.spans = in.startIntakeSpans(wctx, w)
		defer func() { w.spans.end(w.durable()) }()
	}

	failures, commitFailures := 0, 0
	for {
		err := in.step(wctx, r, dlq, w)
		if err == nil {
			in.cfg.Hooks.Batch(len(batch))
			return
		}
		failures++
		if w.durable() {
			commitFailures++ // only the commit is left
		}
		if commitFailures >= maxCommitAttempts {
			// Durable but not committed: the next batch's commit covers these offsets, or they
			// are redelivered and recorded as duplicates. Moving on beats stalling the partition.
			log.Warn("giving up committing a durable batch; it may be redelivered", "error", err, "messages", len(batch))
			in.cfg.Hooks.Batch(len(batch))
			return
		}
		in.cfg.Hooks.Retry()
		d := backoff.Delay(failures, in.cfg.RetryMin, in.cfg.RetryMax)
		log.Warn("intake batch; retrying the same batch", "error", err, "messages", len(batch), "retry_in", d)
		if !backoff.Sleep(wctx, d) {
			log.Warn("intake stopped before the batch was durable and committed; it will be redelivered",
				"messages", len(batch), "dlq_written", w.deadLettered, "stored", w.stored)
			return
		}
	}
}

// batchWork is one batch on its way to being durable and committed: what goes where, and which
// steps are done. handle retries it until step returns nil; a step done is not run again.
type batchWork struct {
	messages []kafka.Message   // the whole batch, in fetch order: committed last
	events   []reversald.Event // the valid messages, for the store
	sources  []kafka.Message   // the message each event came from
	letters  []Letter          // for the DLQ: invalid messages, then the events the store rejected

	stored       bool // the store transaction committed and OnNew ran (true when there are no events)
	deadLettered bool // the DLQ acknowledged letters (true while there are none)

	spans *intakeSpans // nil: tracing off
}

// durable reports whether every message is durable (stored or dead-lettered): only the commit
// is left.
func (w *batchWork) durable() bool { return w.stored && w.deadLettered }

// recorded notes the store transaction done. Valid events the store refused (an event_id
// already used by another payment) are dead-lettered with the store's reason, like invalid ones.
func (w *batchWork) recorded(res store.IntakeResult) {
	w.stored = true
	for i, st := range res.Statuses {
		if st == store.EventRejected {
			w.letters = append(w.letters, Letter{Message: w.sources[i], Reason: res.Reasons[i]})
			w.deadLettered = false
		}
	}
}

// step runs what is left of one batch: store, DLQ, commit. The store goes first so that valid
// events reach the executor even while the dead-letter topic is unavailable: cancelling an
// uncertain payment is time-critical, parking a malformed message is not.
func (in *Intake) step(ctx context.Context, r *kafka.Reader, dlq *DeadLetters, w *batchWork) error {
	if !w.stored {
		if err := in.record(ctx, w); err != nil {
			return err
		}
	}
	if !w.deadLettered {
		if err := dlq.Write(ctx, w.letters...); err != nil {
			return err
		}
		w.deadLettered = true
		in.cfg.Hooks.DeadLettered(len(w.letters))
	}
	cctx, cancel := context.WithTimeout(ctx, in.cfg.WriteTimeout)
	defer cancel()
	if err := r.CommitMessages(cctx, w.messages...); err != nil {
		// The batch is durable; a commit that never lands only means redelivery, which intake
		// absorbs (event_id is unique). Retrying keeps redelivery small after a transient error.
		in.cfg.Hooks.CommitError()
		return fmt.Errorf("commit offsets of %d messages: %w", len(w.messages), err)
	}
	return nil
}

// record runs the batch's store transaction, then hands the attempts it created to OnNew.
func (in *Intake) record(ctx context.Context, w *batchWork) error {
	sctx, cancel := context.WithTimeout(ctx, in.cfg.WriteTimeout)
	res, err := in.intake(sctx, w.events)
	cancel()
	if err != nil {
		return fmt.Errorf("record %d events: %w", len(w.events), err)
	}
	w.recorded(res)
	if w.spans != nil {
		w.spans.recorded(w, res)
	}
	for _, st := range res.Statuses {
		in.cfg.Hooks.Recorded(st)
	}
	if len(res.NewAttempts) > 0 && in.cfg.OnNew != nil {
		in.cfg.OnNew(res.NewAttempts)
	}
	return nil
}

// decode splits a batch into valid events for the store (with the message each came from) and
// letters for the DLQ. A batch with no letters has nothing to dead-letter; one with no valid
// events has nothing to store.
func (in *Intake) decode(batch []kafka.Message) *batchWork {
	w := &batchWork{messages: batch}
	for _, m := range batch {
		ev, err := reversal.DecodeEvent(m.Value, fallbackEventID(m))
		if err != nil {
			w.letters = append(w.letters, Letter{Message: m, Reason: err.Error()})
			continue
		}
		if ev.MchID == "" {
			ev.MchID = in.cfg.DefaultMchID
		}
		ev.Source = reversald.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Payload: m.Value}
		w.events = append(w.events, ev)
		w.sources = append(w.sources, m)
	}
	w.stored, w.deadLettered = len(w.events) == 0, len(w.letters) == 0
	return w
}

// graceContext returns a context that outlives parent by grace: it is cancelled grace after
// parent is done (or when the returned stop is called). Final writes run under it.
func graceContext(parent context.Context, grace time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	var mu sync.Mutex
	var timer *time.Timer
	stopped := false
	stopAfter := context.AfterFunc(parent, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer = time.AfterFunc(grace, cancel)
		}
	})
	return ctx, func() {
		stopAfter()
		mu.Lock()
		stopped = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// isIdleTimeout reports kafka-go's report of a fetch that simply waited out
// its long poll on a partition with nothing new.
func isIdleTimeout(text string) bool {
	return strings.Contains(text, "i/o timeout") || strings.Contains(text, "context deadline exceeded")
}
