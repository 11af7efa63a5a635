package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/internal/backoff"
	"github.com/reversald/reversald/internal/tracing"
	"github.com/reversald/reversald/reversal"
	"github.com/reversald/reversald/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

const usage = `usage: reversald [command]

commands:
  run                      run the daemon (the default)
  migrate                  apply database migrations and exit
  attempts list [filters] [-sort KEY] [-order asc|desc] [-limit N] [-after CURSOR] [-all] [-format table|json|csv]
                           find attempts (filters: -status, -method, -mchid, -out-trade-no, -reason,
                           -first-seen-from/-to, -decided-from/-to)
  attempts show ID|MCHID/OUT_TRADE_NO
                           one attempt with its events, gateway calls, outcomes and audit trail (JSON)
  attempts retry (ID...|filters) -note TEXT [-by NAME] [-dry-run]
                           re-drive needs_review attempts from a fresh query
  attempts resolve ID|MCHID/OUT_TRADE_NO -status S -note TEXT [-by NAME] [-dry-run]
                           close a needs_review attempt with the status read at QFPay
  purge -older-than AGE [-batch N] [-pause D] [-dry-run]
                           delete final, published attempts decided longer ago than AGE (90d)
  dlq list [flags]         dead letters with their headers decoded (reason, origin, time)
  dlq replay [flags]       write chosen dead letters back to the input topic (-dry-run)
  outcomes republish [flags]
                           send stored outcomes to the results topic again (-dry-run)
  console                  serve the operator console (CONSOLE_ADDR, default 127.0.0.1:9095; needs only
                           DATABASE_URL and the CONSOLE_* settings)
  version                  print the version

Each command's -h lists its flags.

Configuration is read from the environment; see README.md.`

// run is the whole program but for signals and the exit code.
func run(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		cfg, err := loadConfig(ctx, lookup)
		if err != nil {
			return fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		}
		return daemon(ctx, cfg, stderr)
	case "migrate":
		url, err := databaseURL(lookup)
		if err != nil {
			return err
		}
		if err := store.Migrate(ctx, url); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "attempts":
		return attempts(ctx, args, lookup, stdout, stderr)
	case "purge":
		return purgeCmd(ctx, args, lookup, stdout)
	case "dlq":
		return dlqCmd(ctx, args, lookup, stdout)
	case "outcomes":
		return outcomesCmd(ctx, args, lookup, stdout)
	case "console":
		return consoleCmd(ctx, args, lookup, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
		return bi.Main.Version
	}
	return "unknown"
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated with the config
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: readableDurations}))
}

// readableDurations writes durations as text ("1.5s"), not nanoseconds.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// daemon wires intake, executor and publisher and runs them until ctx is
// cancelled. The stop goes in order: intake stops fetching and leaves the
// group; the executor finishes in-flight steps and releases its leases; the
// publisher flushes what they decided; the HTTP listener closes last. The
// first two get half of SHUTDOWN_TIMEOUT (at once), the flush a quarter, so
// the whole stop stays within it (plus the HTTP listener's close).
//
// Tracing (OTEL_*) is set up first and shut down last, so that the spans of
// the final flush are exported too. spans, when given, receive every span as
// well, and switch tracing on even when the settings configure no exporter:
// tests record spans in memory with them.
func daemon(ctx context.Context, cfg Config, logw io.Writer, spans ...sdktrace.SpanProcessor) error {
	log := newLogger(logw, cfg.LogLevel).With("instance", cfg.InstanceID)
	log.Info("starting", "version", versionString(), "tracing", cfg.tracing().Describe())

	tel, err := tracing.New(ctx, cfg.tracing(), spans...)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("tracing: spans not exported at shutdown", "error", err)
		}
	}()
	tp := tel.TracerProvider() // nil: tracing off
	var pgTracer pgx.QueryTracer
	if tp != nil {
		pgTracer = tracing.PgxTracer(tp)
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "error", err) }))
	}

	sec, err := cfg.security()
	if err != nil {
		return err
	}
	// A wrong KAFKA_BROKERS fails here, named, rather than in retries no
	// one sees (the reader and the publisher retry an unreachable broker);
	// then a broker that refuses the client's TLS or SASL stops the start-up.
	if err := waitForBrokers(ctx, cfg.KafkaBrokers, cfg.StartupWait); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if err := checkKafka(ctx, cfg.KafkaBrokers, sec, log); err != nil {
		return err
	}
	if cfg.MigrateOnStart {
		if err := store.Migrate(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	// Every worker may hold a connection for a step write, plus intake,
	// publisher, claims and scrapes.
	maxConns := cfg.DatabaseMaxConn
	if maxConns == 0 {
		maxConns = int32(min(cfg.Workers, 10_000)) + 8 //nolint:gosec // bounded just above
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{Deadline: cfg.Deadline, MaxConns: maxConns, Tracer: pgTracer})
	if err != nil {
		return err
	}
	defer st.Close()

	gw, creds, fingerprint, err := cfg.qfpayDirectory(tp)
	if err != nil {
		return err
	}
	defer gw.CloseIdleConnections()
	// SIGHUP reloads the credentials (and would otherwise end the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if cfg.CreateTopics {
		specs := []consumer.TopicSpec{}
		for _, t := range []string{cfg.InputTopic, cfg.DLQTopic, cfg.ResultsTopic} {
			specs = append(specs, consumer.TopicSpec{Name: t, Partitions: cfg.TopicPartitions, ReplicationFactor: cfg.TopicReplication})
		}
		if err := consumer.EnsureTopics(ctx, cfg.KafkaBrokers, sec, specs); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	m := newMetrics(reg, st)
	closeLag, err := m.watchKafka(cfg.KafkaBrokers, sec, cfg.GroupID, cfg.InputTopic)
	if err != nil {
		return err
	}
	defer closeLag()
	reloader := &credentialsReloader{src: creds, dir: gw, interval: cfg.QFPayCredentialsPoll, hup: hup,
		log: log.With("component", "credentials"), hooks: m.reloadHooks(), last: fingerprint}

	pub, err := consumer.NewPublisher(consumer.PublisherConfig{
		Brokers: cfg.KafkaBrokers, Topic: cfg.ResultsTopic, Security: sec,
		BatchSize: cfg.PublishBatch, PollInterval: cfg.PublishInterval, Linger: publishLinger(cfg.PublishLinger),
		FlushTimeout: cfg.ShutdownTimeout / 4,
		Hooks:        m.publisherHooks(), Logger: log.With("component", "publisher"),
		TracerProvider: tp,
	}, st)
	if err != nil {
		return err
	}

	exHooks := m.executorHooks()
	if tp != nil {
		exHooks = exHooks.Traced(tp)
	}
	ex, err := reversal.NewExecutor(reversal.ExecutorConfig{
		Owner: cfg.InstanceID, Workers: cfg.Workers, Lease: cfg.Lease, PollInterval: cfg.PollInterval,
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, MerchantRate: cfg.MerchantRate,
		MerchantRatePerSec: cfg.MerchantRateSec, MerchantBurst: cfg.MerchantBurst, SharedPacing: cfg.Pacing == "cluster",
		StopTimeout: cfg.ShutdownTimeout / 2,
		Policy: reversal.Policy{
			NotFoundRechecks: cfg.NotFoundRechecks, ConfirmRechecks: cfg.ConfirmRechecks,
			CancelMaxCalls: cfg.CancelMaxCalls, MaxGatewayCalls: cfg.GatewayMaxCalls,
		},
		TxZone: txZoneParam(cfg.QFPayTxZone),
		Logger: log.With("component", "executor"),
		// Each attempt the executor decides wakes the publisher, so its
		// outcomes go out at once instead of at the next poll.
		OnFinal: func(reversald.Status) { pub.Wake() },
		Hooks:   exHooks,
	}, st, gw)
	if err != nil {
		return err
	}

	in, err := consumer.NewIntake(consumer.IntakeConfig{
		Brokers: cfg.KafkaBrokers, Topic: cfg.InputTopic, GroupID: cfg.GroupID, DLQTopic: cfg.DLQTopic,
		Security: sec, BatchSize: cfg.IntakeBatch, BatchLinger: cfg.IntakeLinger,
		FinalTimeout: cfg.ShutdownTimeout / 2, DefaultMchID: cfg.QFPayMchID,
		OnNew: ex.Notify, Hooks: m.intakeHooks(), Logger: log.With("component", "intake"),
		TracerProvider: tp,
	}, st)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	mux := http.NewServeMux()
	handleHealth(mux, st, cfg.KafkaBrokers, sec)
	mux.Handle("GET /metrics", m.handler())
	if cfg.Pprof {
		handlePprof(mux)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving health and metrics", "addr", ln.Addr().String())

	// Any part failing stops the others; the first error is returned.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu    sync.Mutex
		first error
	)
	fail := func(name string, err error) {
		if err == nil || errors.Is(err, context.Canceled) {
			return
		}
		mu.Lock()
		if first == nil {
			first = fmt.Errorf("%s: %w", name, err)
		}
		mu.Unlock()
		cancel(err)
	}
	var parts sync.WaitGroup
	if cfg.PurgeOlderThan > 0 {
		pg := &purger{st: st, olderThan: time.Duration(cfg.PurgeOlderThan), interval: cfg.PurgeInterval, batch: cfg.PurgeBatch, pause: cfg.PurgePause,
			log: log.With("component", "purge"), purged: func(n int64) { m.purged.Add(float64(n)) }, failed: m.purgeErrs.Inc}
		parts.Add(1)
		go func() { defer parts.Done(); fail("purge", pg.Run(runCtx)) }()
	}
	parts.Add(3)
	go func() { defer parts.Done(); fail("intake", in.Run(runCtx)) }()
	go func() { defer parts.Done(); fail("executor", ex.Run(runCtx)) }()
	go func() { defer parts.Done(); fail("credentials", reloader.Run(runCtx)) }()
	// The publisher outlives the others so that it flushes what they decided.
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); fail("publisher", pub.Run(pubCtx)) }()
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fail("http", err)
		}
	}()

	<-runCtx.Done()
	log.Info("stopping", "cause", context.Cause(runCtx).Error())
	partsDone := make(chan struct{})
	go func() { parts.Wait(); close(partsDone) }()
	select {
	case <-partsDone:
	case <-time.After(cfg.ShutdownTimeout / 2):
		log.Warn("intake or executor still stopping after the shutdown timeout", "timeout", cfg.ShutdownTimeout.String())
	}
	stopPub()
	<-pubDone
	shutCtx, cancelShut := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelShut()
	_ = srv.Shutdown(shutCtx)
	<-srvDone
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		log.Error("stopped on error", "error", first.Error())
		return first
	}
	log.Info("stopped")
	return nil
}

// kafkaStartCheck bounds the start-up check of the brokers (each one gets the dial timeout).
const kafkaStartCheck = 30 * time.Second

// checkKafka connects to the brokers once, as every Kafka connection of the daemon will, before
// anything starts. A broker that refuses the client's TLS or SASL settings (or that the client
// refuses) stops the start-up with the settings to check: the readers and writers would retry
// it forever. A listener that closes the connection at once is asked twice, a second apart (a
// broker dying mid-check does that once). Brokers that cannot be reached only get a warning: the daemon starts, /readyz
// says 503, and the intake connects when they come back.
func checkKafka(parent context.Context, brokers []string, sec consumer.Security, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(parent, kafkaStartCheck)
	defer cancel()
	err := sec.Check(ctx, brokers)
	var refused *consumer.AccessError
	if errors.As(err, &refused) && refused.Reason == consumer.SecurityMismatch {
		// A broker that dies (or stops) while the check runs closes the
		// connection too, as a listener of other security does: ask once
		// more, a second later. A mismatch closes it again; a broker that
		// was going down now refuses the dial, or answers once it is back.
		if backoff.Sleep(ctx, time.Second) {
			err = sec.Check(ctx, brokers)
		}
	}
	switch {
	case err == nil:
		log.Info("kafka brokers answer", "kafka", sec)
		return nil
	case errors.As(err, &refused):
		return fmt.Errorf("%w (%s)", err, kafkaAccessHint(refused.Reason))
	case parent.Err() != nil:
		return parent.Err() // stopped while starting
	}
	log.Warn("no kafka broker answered at start-up; starting anyway, the intake connects when one does", "kafka", sec, "error", err.Error())
	return nil
}

// txZoneParam is the txzone the query sends: none for QFPay's own default,
// UTC+8.
func txZoneParam(zone string) string {
	if zone == "+0800" {
		return ""
	}
	return zone
}

// publishLinger is PUBLISH_LINGER for the publisher, where 0 is the default:
// the setting's 0 means none.
func publishLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
