package qfpay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const secret = "s3cr3t-client-key-do-not-print"

func TestKeyRedacts(t *testing.T) {
	t.Parallel()
	k := NewKey(secret)
	cfg := Config{
		BaseURL: "https://test-openapi-hk.qfapi.com", AppCode: "APPCODE", ClientKey: k,
		MchID: "MNxMp11FV35qQN", Timeout: time.Second,
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	type holder struct{ key Key } // unexported field: fmt cannot call its methods
	values := map[string]any{
		"key": k, "*key": &k, "config": cfg, "*config": &cfg, "client": c, "holder": holder{k},
		"slice": []Key{k}, "map": map[string]Key{"k": k},
	}
	for name, v := range values {
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		if b, err := json.Marshal(v); err == nil {
			outs = append(outs, string(b))
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
		outs = append(outs, buf.String())
		for _, out := range outs {
			if strings.Contains(out, secret) || strings.Contains(strings.ToLower(out), strings.ToLower(fmt.Sprintf("%x", secret))) {
				t.Errorf("%s leaks the key: %s", name, out)
			}
		}
	}
	if got := fmt.Sprint(k); got != "[REDACTED]" {
		t.Errorf("Sprint(key) = %q", got)
	}
	if b, _ := json.Marshal(k); string(b) != `"[REDACTED]"` {
		t.Errorf("json(key) = %s", b)
	}
	if b, _ := k.MarshalText(); string(b) != "[REDACTED]" {
		t.Errorf("text(key) = %s", b)
	}
	if Key.String(Key{}) != "" || !(Key{}).IsZero() || NewKey("").IsZero() == false {
		t.Error("zero key")
	}
}
