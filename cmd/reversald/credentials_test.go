package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay"
)

const (
	fileKeyA = "file-key-a-never-shown"
	fileKeyB = "file-key-b-never-shown"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Written whole and renamed into place, as the README asks.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// envSource is what the QFPAY_* variables give: a base URL and, if key is
// set, the default credential.
func envSource(path, appCode, key string) credentialSource {
	return credentialSource{path: path, env: qfpay.Config{
		BaseURL: "https://openapi-hk.qfapi.com", AppCode: appCode, ClientKey: qfpay.NewKey(key), SignType: qfpay.SignMD5, Timeout: 3 * time.Second,
	}}
}

func TestCredentialsFileParses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "keys", "a"), fileKeyA+"\n")
	yamlFile := filepath.Join(dir, "creds.yaml")
	writeFile(t, yamlFile, `
credentials:
  - name: hk-retail
    app_code: APPA
    client_key_file: keys/a
    sign_type: sha256
    mchids: ["MA1", "0123"]
    patterns: ["HKR*"]
    rate_per_min: 300
    rate_per_sec: 50
  - app_code: APPB
    client_key: `+fileKeyB+`
    base_url: https://openapi-sg.qfapi.com
    send_mchid: false
    patterns: [SG*]
`)
	jsonFile := filepath.Join(dir, "creds.json")
	writeFile(t, jsonFile, `{
	"credentials": [
		{"name": "hk-retail", "app_code": "APPA", "client_key_file": "keys/a", "sign_type": "SHA256",
		 "mchids": ["MA1", "0123"], "patterns": ["HKR*"], "rate_per_min": 300, "rate_per_sec": 50},
		{"app_code": "APPB", "client_key": "`+fileKeyB+`", "base_url": "https://openapi-sg.qfapi.com",
		 "send_mchid": false, "patterns": ["SG*"]}
	]
}`)
	for _, path := range []string{yamlFile, jsonFile} {
		creds, fp, err := envSource(path, "APPENV", secretKey).load()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(creds) != 3 || fp == "" {
			t.Fatalf("%s: %d credentials, fingerprint %q; want the file's two and env", path, len(creds), fp)
		}
		a, b, env := creds[0], creds[1], creds[2]
		if a.Name != "hk-retail" || a.Config.AppCode != "APPA" || a.Config.SignType != qfpay.SignSHA256 ||
			a.Config.BaseURL != "https://openapi-hk.qfapi.com" || a.Config.OmitMchID || a.Config.Timeout != 3*time.Second ||
			strings.Join(a.MchIDs, ",") != "MA1,0123" || strings.Join(a.Patterns, ",") != "HKR*" ||
			a.RatePerMin != 300 || a.RatePerSec != 50 || a.Default {
			t.Errorf("%s: first entry = %+v", path, a)
		}
		if b.Name != "APPB" || b.Config.BaseURL != "https://openapi-sg.qfapi.com" || !b.Config.OmitMchID || b.RatePerMin != 0 {
			t.Errorf("%s: second entry = %+v (the name defaults to the app code)", path, b)
		}
		if env.Name != "env" || !env.Default || env.Config.AppCode != "APPENV" {
			t.Errorf("%s: QFPAY_* = %+v, want the default", path, env)
		}
		d, err := qfpay.NewDirectory(creds)
		if err != nil {
			t.Fatal(err)
		}
		for m, want := range map[string]string{"MA1": "hk-retail", "0123": "hk-retail", "HKR7": "hk-retail", "SG1": "APPB", "X": "env"} {
			if acct, err := d.Resolve(m); err != nil || acct.Name != want {
				t.Errorf("%s: %s resolves to %s (%v), want %s", path, m, acct.Name, err, want)
			}
		}
	}
	// Without QFPAY_APP_CODE and QFPAY_CLIENT_KEY, the file alone, and no
	// default: a merchant it does not cover has no credential.
	creds, _, err := envSource(yamlFile, "", "").load()
	if err != nil || len(creds) != 2 {
		t.Fatalf("file alone: %d credentials, %v", len(creds), err)
	}
	d, err := qfpay.NewDirectory(creds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve("X"); !errors.Is(err, qfpay.ErrNoCredential) {
		t.Errorf("uncovered merchant: %v, want no credential", err)
	}
}

// TestCredentialsFileListsEveryProblem: one bad file, every problem named
// with its entry, no key anywhere in the message.
func TestCredentialsFileListsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.yaml")
	writeFile(t, path, `
credentials:
  - name: a
    app_code: APPA
    client_key: `+fileKeyA+`
    clinet_key: `+fileKeyA+`
    mchids: [MA1]
    default: true
  - name: b
    client_key: `+fileKeyB+`
    sign_type: SHA1
    base_url: ftp://qfpay
    mchids: [MA1]
    default: true
    rate_per_min: lots
    colour: blue
  - name: c
    app_code: APPC
    client_key_file: missing-key
    patterns: ["C*"]
  - name: d
    app_code: APPD
    mchids: [MD1]
  - name: e
    app_code: APPE
    client_key: `+fileKeyB+`
    client_key_file: keys/e
    mchids: [ME1]
    patterns: [12345]
extra: 1
`)
	_, _, err := envSource(path, "APPENV", secretKey).load()
	if err == nil {
		t.Fatal("a bad file was accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`unknown top-level field "extra"`,
		`credential a: unknown field "clinet_key"`,
		`credential b: unknown field "colour"`,
		"credential e: patterns: must be a list of strings",
		"credential b: rate_per_min: must be a number",
		"credential b: app code is required",
		`credential b: sign type "SHA1": must be MD5 or SHA256`,
		"credential b: base url must be an absolute http or https url",
		"credential b: mchid MA1 is also listed by credential a",
		"credential b: is a default, and so is credential a",
		"credential c: client_key_file: open " + filepath.Join(dir, "missing-key"),
		"credential d: client_key or client_key_file is required",
		"credential e: client_key and client_key_file are both given",
		"QFPAY_APP_CODE and QFPAY_CLIENT_KEY make one too",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems do not name %q:\n%s", want, msg)
		}
	}
	for _, key := range []string{fileKeyA, fileKeyB, secretKey} {
		if strings.Contains(msg, key) {
			t.Errorf("a key is in the problems:\n%s", msg)
		}
	}
	for line := range strings.SplitSeq(msg, "\n") {
		if !strings.HasPrefix(line, "credentials file: ") {
			t.Errorf("problem line without its source: %q", line)
		}
	}

	// Not YAML at all, with a key where a parser would quote it.
	writeFile(t, path, "credentials:\n  - name: a\n    client_key: *"+fileKeyA+"\n")
	if _, _, err := envSource(path, "", "").load(); err == nil || !strings.Contains(err.Error(), "not YAML or JSON") || strings.Contains(err.Error(), fileKeyA) {
		t.Errorf("unparsable file: %v; want it refused without the key", err)
	}
	writeFile(t, path, "credentials:\n  - name: a\n    client_key: {"+fileKeyA+": 1, "+fileKeyA+": 2}\n")
	if _, _, err := envSource(path, "", "").load(); err == nil || strings.Contains(err.Error(), fileKeyA) {
		t.Errorf("duplicate mapping key: %v; want it refused without the key", err)
	}
	writeFile(t, path, "credentials:\n  - name: a\n    app_code: A\n    client_key: x\n    client_key: y\n    default: true\n")
	if _, _, err := envSource(path, "", "").load(); err == nil || !strings.Contains(err.Error(), `"client_key" already set`) {
		t.Errorf("duplicate field: %v; want it named", err)
	}
	writeFile(t, path, "credentials: []\n")
	if _, _, err := envSource(path, "", "").load(); err == nil || !strings.Contains(err.Error(), "no credential") {
		t.Errorf("empty list: %v", err)
	}
	if _, _, err := envSource(filepath.Join(dir, "nope.yaml"), "", "").load(); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("missing file: %v", err)
	}
	// Half of the QFPAY_* pair.
	writeFile(t, path, "credentials:\n  - {app_code: A, client_key: k, mchids: [M1]}\n")
	if _, _, err := envSource(path, "APPENV", "").load(); err == nil || !strings.Contains(err.Error(), "set both or neither") {
		t.Errorf("QFPAY_APP_CODE without a key: %v", err)
	}
}

// TestConfigWithCredentialsFile: with a file, the QFPAY_* credential
// variables are optional, and the file's problems are listed with the rest at
// start-up.
func TestConfigWithCredentialsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.yaml")
	writeFile(t, path, "credentials:\n  - {app_code: APPA, client_key: "+fileKeyA+", base_url: 'https://openapi-hk.qfapi.com', default: true}\n")
	env := validEnv()
	delete(env, "QFPAY_APP_CODE")
	delete(env, "QFPAY_CLIENT_KEY")
	delete(env, "QFPAY_BASE_URL")
	env["QFPAY_CREDENTIALS_FILE"] = path
	c, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.QFPayCredentialsPoll != 5*time.Second {
		t.Errorf("poll default = %s", c.QFPayCredentialsPoll)
	}
	writeFile(t, path, "credentials:\n  - {app_code: APPA, client_key: "+fileKeyA+", default: true}\n")
	env["EXECUTOR_WORKERS"] = "0"
	_, err = loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err == nil || !strings.Contains(err.Error(), "EXECUTOR_WORKERS") || !strings.Contains(err.Error(), "credential APPA: base url is required") ||
		strings.Contains(err.Error(), fileKeyA) {
		t.Errorf("err = %v; want the file's problem listed with the rest, no key", err)
	}
}

// logBuffer collects a logger's output for the tests.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCredentialsReload: a bad file is refused with its problems at ERROR,
// once, and the set in use stays; a good one replaces it, whether the file
// or only a key file changed; SIGHUP reloads even an unchanged file; Run
// polls and ends with its context.
func TestCredentialsReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, keyPath := filepath.Join(dir, "creds.yaml"), filepath.Join(dir, "a.key")
	writeFile(t, keyPath, fileKeyA)
	good := func(appCodeB string) string {
		return "credentials:\n" +
			"  - {name: a, app_code: APPA, client_key_file: a.key, mchids: [MA1]}\n" +
			"  - {name: b, app_code: " + appCodeB + ", client_key: " + fileKeyB + ", default: true}\n"
	}
	writeFile(t, path, good("APPB"))
	src := envSource(path, "", "")
	creds, fp, err := src.load()
	if err != nil {
		t.Fatal(err)
	}
	dirc, err := qfpay.NewDirectory(creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dirc.CloseIdleConnections)
	logs := &logBuffer{}
	var reloaded, refused atomic.Int32
	hup := make(chan os.Signal, 1)
	w := &credentialsReloader{src: src, dir: dirc, interval: 10 * time.Millisecond, hup: hup, last: fp,
		log:   slog.New(slog.NewJSONHandler(logs, nil)),
		hooks: reloadHooks{Reloaded: func() { reloaded.Add(1) }, Refused: func() { refused.Add(1) }}}
	appCode := func(m string) string {
		a, err := dirc.Resolve(m)
		if err != nil {
			return err.Error()
		}
		return a.AppCode
	}

	w.reload("poll", false) // unchanged: nothing happens
	if reloaded.Load() != 0 || refused.Load() != 0 {
		t.Fatalf("an unchanged file was reloaded")
	}
	writeFile(t, path, good("")+"  - {name: c, app_code: APPC, mchids: [MA1]}\n")
	w.reload("poll", false) // a change seen once: it may be half-written, wait for the next poll
	if refused.Load() != 0 {
		t.Fatalf("a change was judged at its first sight")
	}
	w.reload("poll", false) // read the same twice: judged
	w.reload("poll", false) // the same bad file: reported once
	if refused.Load() != 1 || appCode("MA1") != "APPA" || appCode("Z") != "APPB" {
		t.Fatalf("bad file: refused %d times, MA1 %s, Z %s; want one refusal and the old set", refused.Load(), appCode("MA1"), appCode("Z"))
	}
	out := logs.String()
	for _, want := range []string{`"level":"ERROR"`, "credentials reload refused", "credential b: app code is required",
		"credential c: client_key or client_key_file is required", "credential c: mchid MA1 is also listed by credential a"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not say %q:\n%s", want, out)
		}
	}

	writeFile(t, path, good("APPB2"))
	w.reload("poll", false)
	w.reload("poll", false)
	if reloaded.Load() != 1 || appCode("Z") != "APPB2" {
		t.Fatalf("good file: reloaded %d, Z %s; want the new set", reloaded.Load(), appCode("Z"))
	}
	// A rotated key file alone is a change.
	before, _ := dirc.Resolve("MA1")
	writeFile(t, keyPath, fileKeyA+"-rotated")
	w.reload("poll", false)
	w.reload("poll", false)
	after, _ := dirc.Resolve("MA1")
	if reloaded.Load() != 2 || before.Client == after.Client {
		t.Fatalf("rotated key file: reloaded %d, same client %v; want a new client", reloaded.Load(), before.Client == after.Client)
	}

	// Run: SIGHUP reloads an unchanged file; a change is found by polling.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	hup <- os.Interrupt // any signal value: the channel is SIGHUP's
	kafkatest.WaitFor(t, 10*time.Second, func() bool { return reloaded.Load() == 3 }, "the SIGHUP reload")
	writeFile(t, path, good("APPB3"))
	kafkatest.WaitFor(t, 10*time.Second, func() bool { return appCode("Z") == "APPB3" }, "the polled reload")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil at shutdown", err)
	}
	if out := logs.String(); strings.Contains(out, fileKeyA) || strings.Contains(out, fileKeyB) {
		t.Errorf("a key is in the logs:\n%s", out)
	}
}
