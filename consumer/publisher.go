package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/reversald/reversald/internal/backoff"
	"github.com/reversald/reversald/store"
)

// HeaderEventID is the header of an outcome message holding its event_id, so readers can drop
// duplicates without parsing the value.
const HeaderEventID = "event_id"

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	Brokers  []string
	Topic    string // the results topic
	Security Security
	// BatchSize is the most outbox rows per WriteMessages call; 0 means 500.
	BatchSize int
	// PollInterval is how often the outbox is polled without a Wake; 0 means 100ms.
	PollInterval time.Duration
	// Linger is the least time from one round's start to the next while
	// outcomes keep coming (a Wake sooner waits for it; a full batch does
	// not): outcomes decided close together share a round, so one produce
	// request per partition carries more of them. 0 means 50ms; negative
	// means none.
	Linger time.Duration
	// WriteTimeout bounds one WriteMessages call; 0 means 30s.
	WriteTimeout time.Duration
	// FlushTimeout bounds the final flush after Run's context is cancelled; 0 means 10s.
	FlushTimeout time.Duration
	// RetryMin and RetryMax bound the backoff after a failed round; 0 means 100ms and 5s.
	RetryMin, RetryMax time.Duration
	Hooks              PublisherHooks
	Logger             *slog.Logger // nil: slog.Default()
	// TracerProvider, when set, traces every outcome: a span in its event's
	// trace, whose context the message carries in its headers (traceparent,
	// tracestate). nil (tracing off) adds no header.
	TracerProvider trace.TracerProvider
}

// PublisherHooks let the caller count what a Publisher does (metrics). Any may be nil. They
// are called synchronously from Run: they must be cheap and must not block.
type PublisherHooks struct {
	// Published: n outcomes were acknowledged by Kafka and marked published.
	Published func(n int)
	// Error: a round (or the final flush) failed; its outcomes stay in the outbox.
	Error func()
}

func (h PublisherHooks) withDefaults() PublisherHooks {
	if h.Published == nil {
		h.Published = func(int) {}
	}
	if h.Error == nil {
		h.Error = func() {}
	}
	return h
}

// Validate lists every problem of the config as it will run: after defaults, so a RetryMin
// above the default RetryMax is refused too.
func (c PublisherConfig) Validate() error {
	c = c.withDefaults()
	errs := validateBrokers(c.Brokers)
	if c.Topic == "" {
		errs = append(errs, errors.New("results topic is required"))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("publisher batch size must not be negative, got %d", c.BatchSize))
	}
	errs = append(errs, validateDurations("publisher", c.RetryMin, c.RetryMax, []namedDuration{
		{"poll interval", c.PollInterval}, {"write timeout", c.WriteTimeout}, {"flush timeout", c.FlushTimeout},
	})...)
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c PublisherConfig) withDefaults() PublisherConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.Linger == 0 {
		c.Linger = 50 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 10 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	c.Hooks = c.Hooks.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Publisher moves outcomes from the PostgreSQL outbox to the results topic. A row is marked
// published in the same transaction that locked it, and only after Kafka acknowledged the
// message from all in-sync replicas; so a crash at any point publishes again, never loses.
// Delivery is at-least-once; readers drop duplicates by event_id.
type Publisher struct {
	cfg     PublisherConfig
	tracer  trace.Tracer // nil: tracing off
	wake    chan struct{}
	publish func(ctx context.Context, limit int, fn func(context.Context, []store.OutboxRecord) error) (int, error)
}

// NewPublisher returns a Publisher reading st's outbox. Start it with Run.
func NewPublisher(cfg PublisherConfig, st *store.Store) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("publisher config: %w", err)
	}
	if st == nil {
		return nil, errors.New("publisher config: store is required")
	}
	p := &Publisher{
		cfg:     cfg.withDefaults(),
		wake:    make(chan struct{}, 1),
		publish: st.PublishOutbox,
	}
	if cfg.TracerProvider != nil {
		p.tracer = cfg.TracerProvider.Tracer(instrumentation)
	}
	return p, nil
}

// Wake asks for an outbox round now. It never blocks; wakes while one is pending coalesce.
func (p *Publisher) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx is cancelled, then flushes what is pending once more within
// FlushTimeout and closes its writer. It returns nil on cancellation: shutdown is not an error.
func (p *Publisher) Run(ctx context.Context) error {
	tr, err := p.cfg.Security.Transport()
	if err != nil {
		return err
	}
	w := newWriter(p.cfg.Brokers, p.cfg.Topic, tr, p.cfg.BatchSize, 16<<20)
	defer func() {
		if err := w.Close(); err != nil {
			p.cfg.Logger.Warn("close results writer", "error", err)
		}
		tr.CloseIdleConnections() // kafka-go only closes transports it created itself
	}()

	failures := 0
	timer := time.NewTimer(0) // first round at once
	defer timer.Stop()
	var last, due time.Time // the last round's start; when timer fires
	for {
		select {
		case <-ctx.Done():
			p.flush(ctx, w)
			return nil
		case <-timer.C:
		case <-p.wake:
			// Within the linger (and not backing off), the round waits for
			// it and takes this wake's outcomes with the ones that follow;
			// a round due sooner anyway is not put off.
			if at := last.Add(p.cfg.Linger); failures == 0 && time.Now().Before(at) {
				if at.Before(due) {
					timer.Reset(time.Until(at))
					due = at
				}
				continue
			}
		}
		last = time.Now()
		// A round in progress when ctx is cancelled finishes (within FlushTimeout): cutting it
		// between the Kafka ack and the outbox commit would only publish duplicates.
		rctx, done := graceContext(ctx, p.cfg.FlushTimeout)
		err := p.drain(rctx, w)
		done()
		next := p.cfg.PollInterval
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			continue // the flush above handles it
		default:
			failures++
			p.cfg.Hooks.Error()
			next = backoff.Delay(failures, p.cfg.RetryMin, p.cfg.RetryMax)
			p.cfg.Logger.Warn("publish outcomes", "error", err, "retry_in", next)
		}
		timer.Reset(next)
		due = time.Now().Add(next)
	}
}

// flush runs one last drain after shutdown was asked, bounded by FlushTimeout.
func (p *Publisher) flush(ctx context.Context, w *kafka.Writer) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FlushTimeout)
	defer cancel()
	if err := p.drain(fctx, w); err != nil {
		p.cfg.Hooks.Error()
		p.cfg.Logger.Warn("final publish of outcomes; they stay in the outbox", "error", err)
	}
}

// drain publishes full batches until the outbox has fewer than BatchSize rows left.
func (p *Publisher) drain(ctx context.Context, w *kafka.Writer) error {
	for {
		n, err := p.publish(ctx, p.cfg.BatchSize, func(ctx context.Context, recs []store.OutboxRecord) error {
			return p.write(ctx, w, recs)
		})
		if err != nil {
			return err
		}
		if n > 0 {
			p.cfg.Hooks.Published(n)
		}
		if n < p.cfg.BatchSize {
			return nil
		}
	}
}

// write sends recs as outcome messages in one WriteMessages call.
func (p *Publisher) write(ctx context.Context, w *kafka.Writer, recs []store.OutboxRecord) error {
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		m, err := OutcomeMessage(r)
		if err != nil {
			return err
		}
		msgs[i] = m
	}
	var spans []trace.Span
	if p.tracer != nil {
		spans = p.publishSpans(ctx, recs, msgs)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	err := w.WriteMessages(ctx, msgs...)
	if spans != nil {
		endSpans(spans, err)
	}
	if err != nil {
		return fmt.Errorf("write %d outcomes to %s: %w", len(msgs), p.cfg.Topic, writeError(err))
	}
	return nil
}

// OutcomeMessage is the results-topic message of one stored outcome: key out_trade_no, the
// outcome's JSON as value, and its event_id in a header.
func OutcomeMessage(r store.OutboxRecord) (kafka.Message, error) {
	value, err := json.Marshal(r.Outcome)
	if err != nil {
		// Only a time outside year 0..9999 can get here; that is a store bug, not Kafka's.
		return kafka.Message{}, fmt.Errorf("encode outcome of event %s: %w", r.EventID, err)
	}
	return kafka.Message{
		Key:     []byte(r.OutTradeNo),
		Value:   value,
		Headers: []kafka.Header{{Key: HeaderEventID, Value: []byte(r.EventID)}},
	}, nil
}
