package qfpay

import (
	"errors"
	"testing"
)

func TestRoutesDefault(t *testing.T) {
	t.Parallel()
	r := DefaultRoutes()
	tests := []struct {
		payType string
		want    Method
		err     error
	}{
		{"800101", MethodReversal, nil},
		{"800108", MethodReversal, nil},
		{"800208", MethodReversal, nil},
		{"800201", MethodClose, nil},
		{"800107", MethodClose, nil}, // other eligible wallets
		{"", MethodClose, nil},       // not known yet: the default
		{"801501", MethodNone, ErrNotCancellable},
		{"803714", MethodNone, ErrNotCancellable},
		{"805808", MethodNone, ErrNotCancellable},
	}
	for _, tt := range tests {
		got, err := r.For(tt.payType)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("For(%q) = %v, %v; want %v, %v", tt.payType, got, err, tt.want, tt.err)
		}
	}
	for _, p := range hkOnly {
		if _, err := r.For(p); !errors.Is(err, ErrNotCancellable) || Classify(err) != ClassUnsupported {
			t.Errorf("For(%s) = %v, want ErrNotCancellable", p, err)
		}
	}
	var ve *ValidationError
	if _, err := r.For("80010"); !errors.As(err, &ve) || ve.Field != "pay_type" {
		t.Errorf("For(80010) = %v, want a validation error on pay_type", err)
	}
}

func TestParseRoutes(t *testing.T) {
	t.Parallel()
	r, err := ParseRoutes("800101=close, 801501=reversal ,*=reversal,800999=NONE")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]Method{"800101": MethodClose, "801501": MethodReversal, "123456": MethodReversal, "800208": MethodReversal, "800201": MethodClose} {
		if got, _ := r.For(p); got != want {
			t.Errorf("For(%s) = %s, want %s", p, got, want)
		}
	}
	if _, err := r.For("800999"); !errors.Is(err, ErrNotCancellable) {
		t.Errorf("800999=none: %v", err)
	}
	if _, err := r.For("801510"); !errors.Is(err, ErrNotCancellable) {
		t.Error("overlay lost a default")
	}

	fresh, err := ParseRoutes("!,800101=reversal")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.For("801510"); got != MethodClose || err != nil {
		t.Errorf("fresh table: For(801510) = %v, %v", got, err)
	}
	back, err := ParseRoutes(DefaultRoutes().String())
	if err != nil || back.String() != DefaultRoutes().String() {
		t.Errorf("round trip: %v %q", err, back.String())
	}
	if d, err := ParseRoutes(""); err != nil || d.String() != DefaultRoutes().String() {
		t.Errorf("empty: %v", err)
	}
	for _, bad := range []string{"800101", "800101=refund", "80010=close", "abcdef=close", "*=drop"} {
		if _, err := ParseRoutes(bad); err == nil {
			t.Errorf("ParseRoutes(%q): no error", bad)
		}
	}
}
