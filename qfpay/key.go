package qfpay

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Key is the QFPay client key. It is used only to sign requests and verify
// responses; it redacts itself wherever it could be printed: String, GoString,
// every fmt verb, JSON, text marshalling and slog. The secret sits behind a
// pointer, so even a struct that holds a Key in an unexported field prints an
// address, not the key.
type Key struct {
	p *keyBytes
}

type keyBytes struct{ b []byte }

// NewKey wraps the client key. An empty s gives the zero Key.
func NewKey(s string) Key {
	if s == "" {
		return Key{}
	}
	return Key{p: &keyBytes{b: []byte(s)}}
}

// IsZero reports whether no key was set.
func (k Key) IsZero() bool { return k.p == nil || len(k.p.b) == 0 }

func (k Key) bytes() []byte {
	if k.p == nil {
		return nil
	}
	return k.p.b
}

// String returns "[REDACTED]" (or "" for the zero Key, so a missing key shows).
func (k Key) String() string {
	if k.IsZero() {
		return ""
	}
	return redacted
}

// GoString returns a redacted Go-syntax form.
func (k Key) GoString() string { return `qfpay.Key("` + k.String() + `")` }

// Format redacts for every verb, %v, %+v, %#v, %s, %q, %x included.
func (k Key) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			_, _ = f.Write([]byte(k.GoString()))
			return
		}
	case 'q':
		_, _ = fmt.Fprintf(f, "%q", k.String())
		return
	}
	_, _ = f.Write([]byte(k.String()))
}

// MarshalJSON writes "[REDACTED]".
func (k Key) MarshalJSON() ([]byte, error) { return []byte(`"` + k.String() + `"`), nil }

// MarshalText writes "[REDACTED]".
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// LogValue makes slog print "[REDACTED]".
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }
