package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/internal/tracing"
	"github.com/reversald/reversald/qfpay"
)

// Config is every setting of the daemon, read from the environment. The
// README's configuration table is generated from nothing: keep it in step
// with this struct by hand (config_test.go checks that every variable is
// documented there).
type Config struct {
	DatabaseURL     string `env:"DATABASE_URL"`
	MigrateOnStart  bool   `env:"MIGRATE_ON_START, default=true"`
	DatabaseMaxConn int32  `env:"DATABASE_MAX_CONNS, default=0"`

	KafkaBrokers        []string      `env:"KAFKA_BROKERS"`
	InputTopic          string        `env:"KAFKA_INPUT_TOPIC, default=payment-uncertain"`
	DLQTopic            string        `env:"KAFKA_DLQ_TOPIC, default=payment-uncertain.dlq"`
	ResultsTopic        string        `env:"KAFKA_RESULTS_TOPIC, default=payment-reversal-results"`
	GroupID             string        `env:"KAFKA_GROUP_ID, default=reversald"`
	StartupWait         time.Duration `env:"KAFKA_STARTUP_WAIT, default=30s"`
	CreateTopics        bool          `env:"KAFKA_CREATE_TOPICS, default=false"`
	TopicPartitions     int           `env:"KAFKA_TOPIC_PARTITIONS, default=12"`
	TopicReplication    int           `env:"KAFKA_TOPIC_REPLICATION, default=3"`
	KafkaTLS            bool          `env:"KAFKA_TLS, default=false"`
	KafkaTLSCAFile      string        `env:"KAFKA_TLS_CA_FILE"`
	KafkaTLSCertFile    string        `env:"KAFKA_TLS_CERT_FILE"`
	KafkaTLSKeyFile     string        `env:"KAFKA_TLS_KEY_FILE"`
	KafkaSASL           string        `env:"KAFKA_SASL_MECHANISM"`
	KafkaSASLUser       string        `env:"KAFKA_SASL_USERNAME"`
	KafkaSASLPassword   string        `env:"KAFKA_SASL_PASSWORD"`
	KafkaAllowPlainSASL bool          `env:"KAFKA_ALLOW_PLAINTEXT_SASL, default=false"`
	IntakeBatch         int           `env:"INTAKE_BATCH_SIZE, default=500"`
	IntakeLinger        time.Duration `env:"INTAKE_BATCH_LINGER, default=20ms"`
	PublishBatch        int           `env:"PUBLISH_BATCH_SIZE, default=500"`
	PublishInterval     time.Duration `env:"PUBLISH_INTERVAL, default=100ms"`
	PublishLinger       time.Duration `env:"PUBLISH_LINGER, default=50ms"`

	QFPayBaseURL    string        `env:"QFPAY_BASE_URL"`
	QFPayAppCode    string        `env:"QFPAY_APP_CODE"`
	QFPayClientKey  string        `env:"QFPAY_CLIENT_KEY"`
	QFPayMchID      string        `env:"QFPAY_MCHID"`
	QFPaySignType   string        `env:"QFPAY_SIGN_TYPE, default=MD5"`
	QFPayTimeout    time.Duration `env:"QFPAY_TIMEOUT, default=10s"`
	QFPayVerifySign bool          `env:"QFPAY_VERIFY_RESPONSES, default=false"`
	QFPayRoutes     string        `env:"QFPAY_ROUTES"`
	QFPayTxZone     string        `env:"QFPAY_TXZONE, default=+0800"`
	// QFPayCredentialsFile maps merchants to credentials (credentials.go);
	// QFPAY_APP_CODE and QFPAY_CLIENT_KEY then make the default, if given.
	QFPayCredentialsFile string        `env:"QFPAY_CREDENTIALS_FILE"`
	QFPayCredentialsPoll time.Duration `env:"QFPAY_CREDENTIALS_POLL, default=5s"`

	Workers          int           `env:"EXECUTOR_WORKERS, default=32"`
	Lease            time.Duration `env:"EXECUTOR_LEASE, default=30s"`
	PollInterval     time.Duration `env:"EXECUTOR_POLL_INTERVAL, default=1s"`
	BackoffBase      time.Duration `env:"EXECUTOR_BACKOFF_BASE, default=1s"`
	BackoffMax       time.Duration `env:"EXECUTOR_BACKOFF_MAX, default=5m"`
	MerchantRate     float64       `env:"MERCHANT_RATE_PER_MIN, default=400"`
	MerchantRateSec  float64       `env:"MERCHANT_RATE_PER_SEC, default=100"`
	MerchantBurst    int           `env:"MERCHANT_BURST, default=16"`
	Pacing           string        `env:"PACING, default=cluster"`
	Deadline         time.Duration `env:"ATTEMPT_DEADLINE, default=24h"`
	NotFoundRechecks int           `env:"NOT_FOUND_RECHECKS, default=3"`
	ConfirmRechecks  int           `env:"CONFIRM_RECHECKS, default=5"`
	CancelMaxCalls   int           `env:"CANCEL_MAX_CALLS, default=2"`
	GatewayMaxCalls  int           `env:"GATEWAY_MAX_CALLS, default=30"`

	// PurgeOlderThan switches the periodic purge on (off when unset): final,
	// published attempts decided longer ago are deleted every PurgeInterval.
	PurgeOlderThan age           `env:"PURGE_OLDER_THAN"`
	PurgeInterval  time.Duration `env:"PURGE_INTERVAL, default=1h"`
	PurgeBatch     int           `env:"PURGE_BATCH_SIZE, default=1000"`
	PurgePause     time.Duration `env:"PURGE_PAUSE, default=100ms"`

	HTTPAddr        string        `env:"HTTP_ADDR, default=:9090"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT, default=20s"`
	LogLevel        string        `env:"LOG_LEVEL, default=info"`
	Pprof           bool          `env:"PPROF, default=false"`
	InstanceID      string        `env:"INSTANCE_ID"`

	// OpenTelemetry tracing, off unless these configure an exporter
	// (internal/tracing); the exporters and the SDK read their other OTEL_*
	// settings from the process environment themselves.
	OTelSDKDisabled    bool   `env:"OTEL_SDK_DISABLED, default=false"`
	OTelTracesExporter string `env:"OTEL_TRACES_EXPORTER"`
	OTelEndpoint       string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	OTelTracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	OTelProtocol       string `env:"OTEL_EXPORTER_OTLP_PROTOCOL"`
	OTelTracesProtocol string `env:"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"`
	OTelServiceName    string `env:"OTEL_SERVICE_NAME, default=reversald"`
}

// tracing is the OTEL_* settings as internal/tracing takes them.
func (c Config) tracing() tracing.Config {
	return tracing.Config{
		Disabled: c.OTelSDKDisabled, Exporters: c.OTelTracesExporter,
		Endpoint: c.OTelEndpoint, TracesEndpoint: c.OTelTracesEndpoint,
		Protocol: c.OTelProtocol, TracesProtocol: c.OTelTracesProtocol,
		ServiceName: c.OTelServiceName, ServiceVersion: versionString(), InstanceID: c.InstanceID,
	}
}

// secretVars may also be given as NAME_FILE, the path of a file holding the
// value (Docker and Kubernetes secrets). The file's trailing newline is cut.
var secretVars = []string{"DATABASE_URL", "QFPAY_CLIENT_KEY", "KAFKA_SASL_PASSWORD"}

// loadConfig reads the configuration through lookup and reports every
// problem at once: unparsable values, missing settings, and values out of range.
func loadConfig(ctx context.Context, lookup envconfig.Lookuper) (Config, error) {
	c, unparsed, errs := parseConfig(ctx, lookup, func(string) bool { return true })
	errs = append(errs, c.validate(unparsed), c.validateParts())
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return c, nil
}

// parseConfig reads the variables that want accepts (and their _FILE forms)
// into a Config, one field at a time so that one bad value does not hide the
// next. The others keep their zero value. It returns the variables that did
// not parse and every problem; ranges are not checked.
func parseConfig(ctx context.Context, lookup envconfig.Lookuper, want func(name string) bool) (Config, map[string]bool, []error) {
	return parseEnv[Config](ctx, lookup, want)
}

// parseEnv is parseConfig for any struct of env-tagged fields (the console's
// settings too).
func parseEnv[T any](ctx context.Context, lookup envconfig.Lookuper, want func(name string) bool) (T, map[string]bool, []error) {
	var (
		c    T
		errs []error
	)
	fileLookup, fileErrs := withSecretFiles(lookup, want)
	errs = append(errs, fileErrs...)
	v := reflect.ValueOf(&c).Elem()
	t := v.Type()
	unparsed := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if !want(name) {
			continue
		}
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: one.Interface(), Lookuper: fileLookup}); err != nil {
			unparsed[name] = true
			errs = append(errs, fmt.Errorf("%s: %s: %w", name, shownValue(fileLookup, name), unwrapAll(err)))
			continue
		}
		v.Field(i).Set(one.Elem().Field(0))
	}
	return c, unparsed, errs
}

// validate reports every problem with c's values. A variable in unparsed
// was reported already: its range is not checked (it would only repeat the
// problem with a zero).
func (c Config) validate(unparsed map[string]bool) error {
	var errs []error
	req := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	req("DATABASE_URL (or DATABASE_URL_FILE)", c.DatabaseURL)
	errs = append(errs, c.validateKafka())
	if c.QFPayCredentialsFile == "" {
		// Without a credentials file, the QFPAY_* variables are the one
		// credential; with one, they are optional (credentials.go).
		req("QFPAY_BASE_URL", c.QFPayBaseURL)
		req("QFPAY_APP_CODE (or QFPAY_CREDENTIALS_FILE)", c.QFPayAppCode)
		req("QFPAY_CLIENT_KEY (or QFPAY_CLIENT_KEY_FILE, or QFPAY_CREDENTIALS_FILE)", c.QFPayClientKey)
	}
	for _, p := range []struct {
		name string
		v    int
		min  int
	}{
		{"KAFKA_TOPIC_PARTITIONS", c.TopicPartitions, 1}, {"KAFKA_TOPIC_REPLICATION", c.TopicReplication, 1},
		{"INTAKE_BATCH_SIZE", c.IntakeBatch, 1}, {"PUBLISH_BATCH_SIZE", c.PublishBatch, 1},
		{"EXECUTOR_WORKERS", c.Workers, 1}, {"NOT_FOUND_RECHECKS", c.NotFoundRechecks, 0}, {"CONFIRM_RECHECKS", c.ConfirmRechecks, 0},
		{"CANCEL_MAX_CALLS", c.CancelMaxCalls, 1}, {"GATEWAY_MAX_CALLS", c.GatewayMaxCalls, 3},
		{"PURGE_BATCH_SIZE", c.PurgeBatch, 1},
	} {
		if p.v < p.min && !unparsed[p.name] {
			errs = append(errs, fmt.Errorf("%s must be at least %d, got %d", p.name, p.min, p.v))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"INTAKE_BATCH_LINGER", c.IntakeLinger}, {"PUBLISH_INTERVAL", c.PublishInterval}, {"QFPAY_TIMEOUT", c.QFPayTimeout},
		{"EXECUTOR_LEASE", c.Lease}, {"EXECUTOR_POLL_INTERVAL", c.PollInterval}, {"EXECUTOR_BACKOFF_BASE", c.BackoffBase},
		{"EXECUTOR_BACKOFF_MAX", c.BackoffMax}, {"ATTEMPT_DEADLINE", c.Deadline}, {"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
		{"QFPAY_CREDENTIALS_POLL", c.QFPayCredentialsPoll}, {"PURGE_INTERVAL", c.PurgeInterval},
		{"KAFKA_STARTUP_WAIT", c.StartupWait},
	} {
		if d.v <= 0 && !unparsed[d.name] {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if c.PublishLinger < 0 && !unparsed["PUBLISH_LINGER"] {
		errs = append(errs, fmt.Errorf("PUBLISH_LINGER must not be negative (0 for none), got %s", c.PublishLinger))
	}
	// A cancel must be answered well within the lease that covers it, or a
	// second worker could take the attempt over while the cancel is in flight.
	if c.QFPayTimeout > 0 && c.Lease > 0 && c.Lease < 2*c.QFPayTimeout+5*time.Second {
		errs = append(errs, fmt.Errorf("EXECUTOR_LEASE (%s) must be at least twice QFPAY_TIMEOUT (%s) plus 5s", c.Lease, c.QFPayTimeout))
	}
	if c.MerchantRate > 0 && !unparsed["MERCHANT_BURST"] && (c.MerchantBurst < 1 || float64(c.MerchantBurst) >= c.MerchantRate) {
		errs = append(errs, fmt.Errorf("MERCHANT_BURST must be at least 1 and below MERCHANT_RATE_PER_MIN, got %d", c.MerchantBurst))
	}
	if c.MerchantRateSec <= 0 && !unparsed["MERCHANT_RATE_PER_SEC"] {
		errs = append(errs, fmt.Errorf("MERCHANT_RATE_PER_SEC must be positive, got %v", c.MerchantRateSec))
	}
	if c.PurgePause < 0 && !unparsed["PURGE_PAUSE"] {
		errs = append(errs, fmt.Errorf("PURGE_PAUSE must not be negative, got %s", c.PurgePause))
	}
	switch c.Pacing {
	case "cluster", "instance":
	default:
		errs = append(errs, fmt.Errorf("PACING must be cluster (one budget per merchant shared by every instance, in PostgreSQL) or instance, got %q", c.Pacing))
	}
	if !qfpay.IsTxZone(c.QFPayTxZone) {
		errs = append(errs, fmt.Errorf("QFPAY_TXZONE must be a UTC offset like +0800, got %q", c.QFPayTxZone))
	}
	if c.QFPayVerifySign {
		errs = append(errs, errors.New("QFPAY_VERIFY_RESPONSES=true cannot be honoured safely: QFPay's Response Format page "+
			"signs a response's data object (its fields sorted as k=v&..., then the client key, MD5), but the query "+
			"endpoint answers data as an array of records and reversal/close answer no data object, so no documented "+
			"scheme covers the answers reversald reads; unset it rather than verify against a guessed scheme"))
	}
	if c.MerchantRate == 0 && !unparsed["MERCHANT_RATE_PER_MIN"] {
		errs = append(errs, errors.New("MERCHANT_RATE_PER_MIN must be positive, or negative to switch pacing off"))
	}
	if err := c.tracing().Validate(); err != nil {
		errs = append(errs, err)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errors.Join(errs...)
}

// validateKafka reports the problems of the settings every Kafka connection
// shares: the brokers, and SASL only over TLS unless allowed.
func (c Config) validateKafka() error {
	var errs []error
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS is required (host:port, comma-separated)"))
	}
	if c.KafkaSASL != "" && !c.KafkaTLS && !c.KafkaAllowPlainSASL {
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM %s without KAFKA_TLS=true sends the password (or its proof) in clear: set KAFKA_TLS=true, or KAFKA_ALLOW_PLAINTEXT_SASL=true for a network you trust", strings.ToUpper(c.KafkaSASL)))
	}
	return errors.Join(errs...)
}

// withSecretFiles lets NAME_FILE stand in for each secret NAME that want
// accepts. Giving both is a problem, so is an unreadable file.
func withSecretFiles(l envconfig.Lookuper, want func(name string) bool) (envconfig.Lookuper, []error) {
	vals := map[string]string{}
	var errs []error
	for _, name := range secretVars {
		if !want(name) {
			continue
		}
		path, ok := l.Lookup(name + "_FILE")
		if !ok || path == "" {
			continue
		}
		if v, set := l.Lookup(name); set && v != "" {
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set: give one", name, name))
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
			continue
		}
		vals[name] = strings.TrimRight(string(b), "\r\n")
	}
	return envconfig.MultiLookuper(envconfig.MapLookuper(vals), l), errs
}

// unwrapAll drops envconfig's own wrapping ("Field: ...") so a problem reads
// once, under the variable's name.
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// envNames lists every variable Config reads, secrets' _FILE forms included.
func envNames() []string {
	var names []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ",")
		names = append(names, name)
	}
	for _, s := range secretVars {
		names = append(names, s+"_FILE")
	}
	return names
}

// shownValue quotes the value a variable was given, shortened, or says it is
// withheld for a secret.
func shownValue(lookup envconfig.Lookuper, name string) string {
	if slices.Contains(secretVars, name) {
		return "(value withheld: a secret)"
	}
	v, _ := lookup.Lookup(name)
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("%q", v)
}

// flatten lists the errors errors.Join put together.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
