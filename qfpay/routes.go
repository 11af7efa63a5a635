package qfpay

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Method is how a payment is cancelled at QFPay.
type Method string

// Methods. MethodNone marks a pay type that cannot be cancelled through the API.
const (
	MethodReversal Method = "reversal"
	MethodClose    Method = "close"
	MethodNone     Method = "none"
)

func (m Method) valid() bool { return m == MethodReversal || m == MethodClose || m == MethodNone }

// ErrNotCancellable is returned, without any call to QFPay, for a pay type that
// cannot be cancelled through the API (the Hong Kong-only wallets of QFPAY.md §2).
// The reversal outcome for it is "unsupported".
var ErrNotCancellable = errors.New("pay type is not cancellable through the api")

// Routes maps a pay_type to the cancel method. A pay type that is not listed in
// ByPayType gets Default. MethodNone means "not cancellable". The zero Routes is
// replaced by [DefaultRoutes] in [New].
type Routes struct {
	ByPayType map[string]Method
	Default   Method
}

// hkOnly are the Hong Kong-only pay types of QFPAY.md §2: not cancellable.
var hkOnly = []string{
	"801501", "801510", "801512", "801514", "801008", "801010",
	"805801", "805808", "805812", "805814", "800710", "800712", "800714",
	"802001", "803701", "803712", "803714",
}

// DefaultRoutes is the seed's table (QFPAY.md §2): Alipay MPM/CPM and WeChat CPM
// are reversed, WeChat MPM and every other eligible wallet is closed, and the
// Hong Kong-only types are not cancellable.
func DefaultRoutes() Routes {
	r := Routes{
		ByPayType: map[string]Method{
			"800101": MethodReversal,
			"800108": MethodReversal,
			"800208": MethodReversal,
			"800201": MethodClose,
		},
		Default: MethodClose,
	}
	for _, p := range hkOnly {
		r.ByPayType[p] = MethodNone
	}
	return r
}

// ParseRoutes reads a routing table from config, as a list of pay_type=method
// entries separated by commas, with "*" for the default, e.g.
// "800101=reversal,800201=close,801501=none,*=close". The entries are laid over
// [DefaultRoutes], so a config need list only what differs; "" gives the
// defaults. A leading "!" entry ("!,800101=reversal,*=close") starts from an
// empty table instead, with MethodClose as the default unless "*" says otherwise.
func ParseRoutes(s string) (Routes, error) {
	r := DefaultRoutes()
	s = strings.TrimSpace(s)
	if s == "" {
		return r, nil
	}
	parts := strings.Split(s, ",")
	if strings.TrimSpace(parts[0]) == "!" {
		r = Routes{ByPayType: map[string]Method{}, Default: MethodClose}
		parts = parts[1:]
	}
	var errs []error
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, method, ok := strings.Cut(p, "=")
		name, method = strings.TrimSpace(name), strings.TrimSpace(method)
		m := Method(strings.ToLower(method))
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("route %q: want pay_type=method", p))
		case !m.valid():
			errs = append(errs, fmt.Errorf("route %q: method must be reversal, close or none", p))
		case name == "*":
			r.Default = m
		case !isPayType(name):
			errs = append(errs, fmt.Errorf("route %q: pay_type must be 6 digits", p))
		default:
			r.ByPayType[name] = m
		}
	}
	if len(errs) > 0 {
		return Routes{}, fmt.Errorf("qfpay: parse routes: %w", errors.Join(errs...))
	}
	return r, nil
}

func isPayType(s string) bool { return len(s) == 6 && isDigits(s) }

// For returns the cancel method for payType. A not-cancellable type returns
// MethodNone and an error that is [ErrNotCancellable]; a malformed pay type
// returns a [*ValidationError]. An empty pay type (not known yet) gets Default.
func (r Routes) For(payType string) (Method, error) {
	if payType != "" && !isPayType(payType) {
		return MethodNone, &ValidationError{Field: "pay_type", Reason: "must be 6 digits"}
	}
	m, ok := r.ByPayType[payType]
	if !ok || payType == "" {
		m = r.Default
	}
	if m == "" {
		m = MethodClose
	}
	if m == MethodNone {
		return MethodNone, fmt.Errorf("pay_type %s: %w", payType, ErrNotCancellable)
	}
	return m, nil
}

// IsZero reports whether r is the zero Routes.
func (r Routes) IsZero() bool { return r.ByPayType == nil && r.Default == "" }

// Validate checks every entry.
func (r Routes) Validate() error {
	var errs []error
	if r.Default != "" && !r.Default.valid() {
		errs = append(errs, fmt.Errorf("default route %q: method must be reversal, close or none", r.Default))
	}
	for _, p := range slices.Sorted(maps.Keys(r.ByPayType)) {
		if !isPayType(p) {
			errs = append(errs, fmt.Errorf("route %q: pay_type must be 6 digits", p))
		}
		if m := r.ByPayType[p]; !m.valid() {
			errs = append(errs, fmt.Errorf("route %s=%s: method must be reversal, close or none", p, m))
		}
	}
	return errors.Join(errs...)
}

// String writes r in the form ParseRoutes reads (a complete table, "!" first).
func (r Routes) String() string {
	var b strings.Builder
	b.WriteString("!")
	for _, p := range slices.Sorted(maps.Keys(r.ByPayType)) {
		fmt.Fprintf(&b, ",%s=%s", p, r.ByPayType[p])
	}
	d := r.Default
	if d == "" {
		d = MethodClose
	}
	fmt.Fprintf(&b, ",*=%s", d)
	return b.String()
}
