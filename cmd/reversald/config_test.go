package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

const secretKey = "s3cr3t-client-key-do-not-log"

func validEnv() map[string]string {
	return map[string]string{
		"DATABASE_URL":     "postgres://u:p@127.0.0.1:5432/db",
		"KAFKA_BROKERS":    "127.0.0.1:9092,127.0.0.1:9093",
		"QFPAY_BASE_URL":   "https://test-openapi-hk.qfapi.com",
		"QFPAY_APP_CODE":   "APPCODE",
		"QFPAY_CLIENT_KEY": secretKey,
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(context.Background(), envconfig.MapLookuper(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.InputTopic != "payment-uncertain" || c.DLQTopic != "payment-uncertain.dlq" || c.ResultsTopic != "payment-reversal-results" ||
		c.Workers != 32 || c.Lease != 30*time.Second || c.MerchantRate != 400 || c.Deadline != 24*time.Hour ||
		len(c.KafkaBrokers) != 2 || c.InstanceID == "" || !c.MigrateOnStart {
		t.Errorf("defaults: %+v", c)
	}
}

// TestConfigListsEveryProblem: one start-up shows every mistake at once, and
// none of them quotes the client key.
func TestConfigListsEveryProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"QFPAY_CLIENT_KEY":       secretKey,
		"EXECUTOR_WORKERS":       "many",
		"QFPAY_TIMEOUT":          "soon",
		"INTAKE_BATCH_SIZE":      "0",
		"LOG_LEVEL":              "chatty",
		"MERCHANT_RATE_PER_MIN":  "0",
		"KAFKA_SASL_MECHANISM":   "GSSAPI",
		"QFPAY_VERIFY_RESPONSES": "perhaps",
	}
	_, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	msg := err.Error()
	for _, want := range []string{"DATABASE_URL", "KAFKA_BROKERS", "QFPAY_BASE_URL", "QFPAY_APP_CODE",
		"EXECUTOR_WORKERS", "QFPAY_TIMEOUT", "INTAKE_BATCH_SIZE", "LOG_LEVEL", "MERCHANT_RATE_PER_MIN", "GSSAPI", "QFPAY_VERIFY_RESPONSES"} {
		if !strings.Contains(msg, want) {
			t.Errorf("problem list does not name %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, secretKey) {
		t.Errorf("problem list leaks the client key:\n%s", msg)
	}
}

func TestConfigSecretsFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(secretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := validEnv()
	delete(env, "QFPAY_CLIENT_KEY")
	env["QFPAY_CLIENT_KEY_FILE"] = keyFile
	c, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.QFPayClientKey != secretKey {
		t.Errorf("key from file = %q", c.QFPayClientKey)
	}

	env["QFPAY_CLIENT_KEY"] = "other"
	env["DATABASE_URL_FILE"] = filepath.Join(dir, "missing")
	_, err = loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil || !strings.Contains(err.Error(), "QFPAY_CLIENT_KEY and QFPAY_CLIENT_KEY_FILE are both set") || !strings.Contains(err.Error(), "DATABASE_URL_FILE") {
		t.Errorf("err = %v; want both problems named", err)
	}
}

func TestConfigLeaseCoversCalls(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["EXECUTOR_LEASE"] = "10s"
	env["QFPAY_TIMEOUT"] = "10s"
	_, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil || !strings.Contains(err.Error(), "EXECUTOR_LEASE") {
		t.Errorf("a lease shorter than two calls was accepted: %v", err)
	}
}

// TestReadmeDocumentsEveryVariable keeps the README's configuration table in
// step with Config.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	names := envNames()
	ct := reflect.TypeFor[consoleConfig]() // reversald console's settings
	for i := range ct.NumField() {
		name, _, _ := strings.Cut(ct.Field(i).Tag.Get("env"), ",")
		names = append(names, name)
	}
	for _, name := range names {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README.md does not document %s", name)
		}
	}
}

func TestRunRefusesBadConfigAndUnknownCommands(t *testing.T) {
	t.Parallel()
	var out, errw strings.Builder
	err := run(context.Background(), []string{"run"}, envconfig.MapLookuper(map[string]string{"QFPAY_CLIENT_KEY": secretKey}), &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || strings.Contains(err.Error(), secretKey) {
		t.Errorf("run with bad config: %v", err)
	}
	err = run(context.Background(), []string{"frobnicate"}, envconfig.MapLookuper(nil), &out, &errw)
	if !errors.As(err, new(usageError)) {
		t.Errorf("unknown command: %v, want a usage error", err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, envconfig.MapLookuper(nil), &out, &errw); err != nil || out.Len() == 0 {
		t.Errorf("version: %q, %v", out.String(), err)
	}
}

// TestConfigRefusesUnverifiableResponseSignatures: QFPay documents response
// signatures only over a data object, which none of the answers reversald
// reads has; switching verification on must stop start-up with the reason,
// not verify against a guessed scheme. The money-truth bounds are checked
// with the rest.
func TestConfigRefusesUnverifiableResponseSignatures(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["QFPAY_VERIFY_RESPONSES"] = "true"
	env["CANCEL_MAX_CALLS"] = "0"
	env["GATEWAY_MAX_CALLS"] = "1"
	env["QFPAY_TXZONE"] = "UTC+8"
	_, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"QFPAY_VERIFY_RESPONSES", "data object", "CANCEL_MAX_CALLS", "GATEWAY_MAX_CALLS", "QFPAY_TXZONE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problem list does not name %q:\n%s", want, err)
		}
	}
	env = validEnv()
	env["QFPAY_TXZONE"] = "-0500"
	if _, err := loadConfig(context.Background(), envconfig.MapLookuper(env)); err != nil {
		t.Errorf("a valid configuration with another txzone refused: %v", err)
	}
}

// TestConfigRefusesSASLInClear: SASL without TLS would send the password (or
// its proof) in clear; it starts only when allowed explicitly.
func TestConfigRefusesSASLInClear(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["KAFKA_SASL_MECHANISM"], env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"] = "PLAIN", "u", "pw-not-in-errors"
	_, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil || !strings.Contains(err.Error(), "KAFKA_ALLOW_PLAINTEXT_SASL") {
		t.Fatalf("SASL PLAIN without TLS: %v, want a refusal naming KAFKA_ALLOW_PLAINTEXT_SASL", err)
	}
	if strings.Contains(err.Error(), "pw-not-in-errors") {
		t.Error("the error quotes the password")
	}
	env["KAFKA_ALLOW_PLAINTEXT_SASL"] = "true"
	if _, err := loadConfig(context.Background(), envconfig.MapLookuper(env)); err != nil {
		t.Errorf("allowed explicitly: %v", err)
	}
}

// TestLogsWriteDurationsAsText: a duration in a log line reads "1.5s", not
// a count of nanoseconds.
func TestLogsWriteDurationsAsText(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	newLogger(&out, "info").Info("x", "retry_in", 1500*time.Millisecond)
	if !strings.Contains(out.String(), `"retry_in":"1.5s"`) {
		t.Errorf("log line %s", out.String())
	}
}

// TestConfigShowsTheBadValueOnce: a value that does not parse is quoted in
// its problem (a secret is not), and its range check does not repeat it.
func TestConfigShowsTheBadValueOnce(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["EXECUTOR_WORKERS"] = "many"
	env["KAFKA_SASL_PASSWORD"] = "" // not set
	_, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if !strings.Contains(msg, `EXECUTOR_WORKERS: "many"`) {
		t.Errorf("the bad value is not quoted:\n%s", msg)
	}
	if strings.Contains(msg, "EXECUTOR_WORKERS must be at least") {
		t.Errorf("the unparsed value is reported twice:\n%s", msg)
	}
}
