package main

// The QFPay credentials file (QFPAY_CREDENTIALS_FILE): its format, how it
// combines with the QFPAY_* variables, and its reload on SIGHUP or a change.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/reversald/reversald/qfpay"
)

// fileCredential is one entry of the credentials file. Every field is
// optional to the decoder; what is required is checked after, so that every
// problem is listed at once.
type fileCredential struct {
	Name          string   `json:"name"`            // default: app_code
	AppCode       string   `json:"app_code"`        // X-QF-APPCODE
	ClientKey     string   `json:"client_key"`      // the key inline, or
	ClientKeyFile string   `json:"client_key_file"` // a file holding it (relative to the credentials file)
	SignType      string   `json:"sign_type"`       // MD5 (default) or SHA256
	BaseURL       string   `json:"base_url"`        // default: QFPAY_BASE_URL
	SendMchID     *bool    `json:"send_mchid"`      // default: true
	MchIDs        []string `json:"mchids"`
	Patterns      []string `json:"patterns"` // prefix globs, "ABC*"
	Default       bool     `json:"default"`
	RatePerMin    float64  `json:"rate_per_min"` // 0: MERCHANT_RATE_PER_MIN
	RatePerSec    float64  `json:"rate_per_sec"`
}

// fileFields are the names an entry may use, in the order the README gives.
var fileFields = []string{"name", "app_code", "client_key", "client_key_file", "sign_type", "base_url",
	"send_mchid", "mchids", "patterns", "default", "rate_per_min", "rate_per_sec"}

// envCredentialName names the credential the QFPAY_* variables make.
const envCredentialName = "env"

// credentialSource builds the daemon's credential set: the file's entries,
// and the QFPAY_* variables as the default credential (the only one without
// a file). It reads the file and its key files afresh at every load.
type credentialSource struct {
	path string       // QFPAY_CREDENTIALS_FILE; "" for none
	env  qfpay.Config // from QFPAY_*: base URL, app code, key, mchid, sign type, timeout, routes
}

func (c Config) credentialSource() (credentialSource, error) {
	qc, err := c.qfpayConfig()
	return credentialSource{path: c.QFPayCredentialsFile, env: qc}, err
}

// envComplete reports whether the QFPAY_* variables make a credential.
func (s credentialSource) envComplete() bool {
	return s.env.AppCode != "" && !s.env.ClientKey.IsZero()
}

// load returns the credential set with every problem in it, checked as
// qfpay.ValidateCredentials does, and a fingerprint of what it read (the
// file and every key file, or why they could not be read): a change of
// fingerprint is a change to reload.
func (s credentialSource) load() ([]qfpay.Credential, string, error) {
	if s.path == "" {
		creds := []qfpay.Credential{{Name: envCredentialName, Default: true, Config: s.env}}
		return creds, "", qfpay.ValidateCredentials(creds)
	}
	sum := sha256.New()
	data, err := os.ReadFile(s.path)
	if err != nil {
		sum.Write([]byte("unreadable: " + err.Error()))
		return nil, hex.EncodeToString(sum.Sum(nil)), fmt.Errorf("credentials file: %w", err)
	}
	sum.Write(data)
	entries, problems := parseCredentialsFile(data)
	var creds []qfpay.Credential
	fileDefault := ""
	keyProblem := map[string]bool{} // said here; qfpay would say "client key is required" again
	for i, e := range entries {
		label := e.label(i)
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Errorf("credential %s: %s", label, fmt.Sprintf(format, args...)))
			keyProblem[label] = true // bad is only called for the key below
		}
		key := e.ClientKey
		switch {
		case e.ClientKey != "" && e.ClientKeyFile != "":
			bad("client_key and client_key_file are both given: give one")
		case e.ClientKeyFile != "":
			p := e.ClientKeyFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(s.path), p)
			}
			b, err := os.ReadFile(p)
			sum.Write([]byte("\x00" + p + "\x00"))
			if err != nil {
				sum.Write([]byte("unreadable: " + err.Error()))
				bad("client_key_file: %v", err) // the path and the cause, never content
			} else {
				sum.Write(b)
				key = strings.TrimRight(string(b), "\r\n")
				if key == "" {
					bad("client_key_file %s is empty", p)
				}
			}
		case e.ClientKey == "":
			bad("client_key or client_key_file is required")
		}
		if e.Default && fileDefault == "" {
			fileDefault = label
		}
		c := qfpay.Credential{
			Name: label, MchIDs: e.MchIDs, Patterns: e.Patterns, Default: e.Default,
			RatePerMin: e.RatePerMin, RatePerSec: e.RatePerSec,
			Config: qfpay.Config{
				BaseURL: cmp.Or(e.BaseURL, s.env.BaseURL), AppCode: e.AppCode, ClientKey: qfpay.NewKey(key),
				SignType: qfpay.SignType(strings.ToUpper(e.SignType)), OmitMchID: e.SendMchID != nil && !*e.SendMchID,
				Timeout: s.env.Timeout, Routes: s.env.Routes, TracerProvider: s.env.TracerProvider,
			},
		}
		creds = append(creds, c)
	}
	switch {
	case s.envComplete() && fileDefault != "":
		problems = append(problems, fmt.Errorf("credential %s is the default, and QFPAY_APP_CODE and QFPAY_CLIENT_KEY make one too: unset them or drop the file's default", fileDefault))
	case s.envComplete():
		creds = append(creds, qfpay.Credential{Name: envCredentialName, Default: true, Config: s.env})
	case s.env.AppCode != "" || !s.env.ClientKey.IsZero():
		problems = append(problems, errors.New("QFPAY_APP_CODE and QFPAY_CLIENT_KEY make the default credential together: set both or neither"))
	}
	if len(problems) == 0 || len(creds) > 0 {
		for _, p := range flatten(qfpay.ValidateCredentials(creds)) {
			if !strings.HasSuffix(p.Error(), ": client key is required") || !keyProblem[strings.TrimSuffix(strings.TrimPrefix(p.Error(), "credential "), ": client key is required")] {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		for i, p := range problems {
			problems[i] = fmt.Errorf("credentials file: %w", p)
		}
		return nil, hex.EncodeToString(sum.Sum(nil)), errors.Join(problems...)
	}
	return creds, hex.EncodeToString(sum.Sum(nil)), nil
}

// label names the i-th entry (from 0) in problems and logs, and in the
// directory: its name, else its app code, else its place.
func (e fileCredential) label(i int) string {
	return cmp.Or(e.Name, e.AppCode, fmt.Sprintf("entry-%d", i+1))
}

// parseCredentialsFile reads the file's entries. YAML or JSON (JSON is
// YAML), converted by sigs.k8s.io/yaml, which refuses duplicate keys; the
// fields are then checked by exact name (encoding/json alone would match
// "APP_CODE" to app_code and stop at the first unknown field), so that every
// unknown field and every value of the wrong type is listed, never a value.
func parseCredentialsFile(data []byte) ([]fileCredential, []error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, []error{fmt.Errorf("not YAML or JSON: %s", scrubParseError(err))}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil || top == nil {
		return nil, []error{errors.New(`not a mapping with a "credentials" list`)}
	}
	var problems []error
	for _, k := range sortedKeys(top) {
		if k != "credentials" {
			problems = append(problems, fmt.Errorf("unknown top-level field %q (want only credentials)", k))
		}
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(top["credentials"], &raw); err != nil || raw == nil {
		return nil, append(problems, errors.New(`"credentials" must be a list of credentials`))
	}
	out := make([]fileCredential, 0, len(raw))
	for i, r := range raw {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r, &fields); err != nil || fields == nil {
			problems = append(problems, fmt.Errorf("credential entry-%d: not a mapping", i+1))
			continue
		}
		var e fileCredential
		var entryProblems []string
		for _, k := range sortedKeys(fields) {
			if !slices.Contains(fileFields, k) {
				entryProblems = append(entryProblems, fmt.Sprintf("unknown field %q", k))
				continue
			}
			if why := decodeField(&e, k, fields[k]); why != "" {
				entryProblems = append(entryProblems, k+": "+why)
			}
		}
		label := e.label(i)
		for _, p := range entryProblems {
			problems = append(problems, fmt.Errorf("credential %s: %s", label, p))
		}
		out = append(out, e)
	}
	return out, problems
}

// decodeField sets one field of e and says what is wrong with its value, if
// anything, without the value.
func decodeField(e *fileCredential, name string, raw json.RawMessage) string {
	str := func(dst *string) string {
		if json.Unmarshal(raw, dst) != nil {
			return "must be a string (quote it)"
		}
		return ""
	}
	strs := func(dst *[]string) string {
		if json.Unmarshal(raw, dst) != nil {
			*dst = nil // not half of it: the problem is named once
			return "must be a list of strings (quote an mchid of digits only)"
		}
		return ""
	}
	num := func(dst *float64) string {
		if json.Unmarshal(raw, dst) != nil {
			return "must be a number"
		}
		return ""
	}
	boolean := func(dst *bool) string {
		if json.Unmarshal(raw, dst) != nil {
			return "must be true or false"
		}
		return ""
	}
	switch name {
	case "name":
		return str(&e.Name)
	case "app_code":
		return str(&e.AppCode)
	case "client_key":
		return str(&e.ClientKey)
	case "client_key_file":
		return str(&e.ClientKeyFile)
	case "sign_type":
		return str(&e.SignType)
	case "base_url":
		return str(&e.BaseURL)
	case "send_mchid":
		var b bool
		why := boolean(&b)
		e.SendMchID = &b
		return why
	case "mchids":
		return strs(&e.MchIDs)
	case "patterns":
		return strs(&e.Patterns)
	case "default":
		return boolean(&e.Default)
	case "rate_per_min":
		return num(&e.RatePerMin)
	case "rate_per_sec":
		return num(&e.RatePerSec)
	}
	return "unknown field"
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var quoted = regexp.MustCompile(`"[^"]*"|'[^']*'`)

// scrubParseError keeps a YAML parser's message (its line number above
// all) but drops any quoted text from the file that is not a field name: a
// key mistyped into an anchor or a mapping key must not reach the logs.
func scrubParseError(err error) string {
	return quoted.ReplaceAllStringFunc(err.Error(), func(q string) string {
		if inner := q[1 : len(q)-1]; inner == "credentials" || slices.Contains(fileFields, inner) {
			return q
		}
		return `"…"`
	})
}

// credentialsReloader re-reads the credentials on SIGHUP and when what the
// file holds (or a key file it names) changes, polled every interval. A set
// with any problem is refused, every problem logged at ERROR, and the
// directory keeps the set it has; a good one replaces the whole set, used
// from the next gateway call on (calls under way keep their client).
type credentialsReloader struct {
	src      credentialSource
	dir      *qfpay.Directory
	interval time.Duration
	hup      <-chan os.Signal
	log      *slog.Logger
	hooks    reloadHooks
	last     string // the fingerprint of the last load, applied or refused
	// pending is a changed fingerprint seen by one poll: it is applied
	// when the next poll reads the same, so a file (or key file) caught
	// half-written is never taken for a new set.
	pending string
}

// settle is how long a SIGHUP reload waits before reading everything a
// second time, to tell a finished write from one under way.
const settle = 200 * time.Millisecond

// reloadHooks count reloads (metrics); either may be nil.
type reloadHooks struct {
	Reloaded func()
	Refused  func()
}

// Run polls and listens until ctx is done, then returns nil.
func (w *credentialsReloader) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.hup:
			w.reload("SIGHUP", true)
		case <-t.C:
			w.reload("file changed", false)
		}
	}
}

// reload loads the set; unless forced, only a change of what was read is
// applied (or refused), so that a bad file is reported once, not at every poll.
func (w *credentialsReloader) reload(trigger string, force bool) {
	if w.src.path == "" && !force {
		return // only the QFPAY_* variables: nothing can change
	}
	creds, fp, err := w.src.load()
	if force {
		time.Sleep(settle)
		var again string
		if creds, again, err = w.src.load(); again != fp {
			w.log.Warn("credentials are being written; the next poll reads them again", "file", w.src.path, "trigger", trigger)
			w.pending = again
			return
		}
	} else {
		if fp == w.last {
			w.pending = ""
			return
		}
		if fp != w.pending {
			w.pending = fp // changed: apply once the next poll reads the same
			return
		}
	}
	w.pending, w.last = "", fp
	if err == nil {
		err = w.dir.Replace(creds)
	}
	if err != nil {
		w.log.Error("credentials reload refused; the current credentials stay in use",
			"file", w.src.path, "trigger", trigger, "problems", strings.Split(err.Error(), "\n"))
		if w.hooks.Refused != nil {
			w.hooks.Refused()
		}
		return
	}
	w.log.Info("credentials reloaded", "file", w.src.path, "trigger", trigger, "credentials", describe(creds))
	if w.hooks.Reloaded != nil {
		w.hooks.Reloaded()
	}
}

// describe names each credential and its app code for the logs (no key).
func describe(creds []qfpay.Credential) []string {
	out := make([]string, len(creds))
	for i, c := range creds {
		out[i] = c.Name + "=" + c.Config.AppCode
	}
	return out
}
