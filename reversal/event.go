package reversal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// MaxEventBytes is the largest Kafka value DecodeEvent accepts. Real events are a few hundred
// bytes; anything near this is a producer bug, and the bound keeps a poison message cheap.
const MaxEventBytes = 64 << 10

// Known values of Event.Reason. Other short strings are accepted as given.
const (
	ReasonTimeout        = "timeout"
	ReasonNoNotification = "no_notification"
	ReasonNetworkError   = "network_error"
)

// Field limits of our own. The fields bound for QFPay (out_trade_no, syssn, txamt, txdtm,
// mchid, udid) are checked against qfpay's limits (qfpay.MaxOutTradeNoBytes and the rest)
// instead, so that an event accepted here is never refused by the gateway for its shape.
// Limits count bytes, not characters, as QFPay's String(N) fields do.
const (
	maxEventIDBytes = 128
	maxReasonBytes  = 64
	maxQuotedBytes  = 40            // how much of an offending value a problem message echoes
	noLimit         = MaxEventBytes // for fields whose exact format check says more
	// Times before minYear are producer bugs, and years past maxYear do not survive
	// encoding/json or PostgreSQL; accepting them would wedge a partition downstream.
	minYear = 1970
	maxYear = 9999
)

// InvalidEventError reports every way a value breaks the input contract. Problems are in a
// fixed field order and never quote more than a short prefix of an offending value, so the
// message is safe to put in a DLQ header or a log line.
type InvalidEventError struct {
	Problems []string
}

func (e *InvalidEventError) Error() string {
	return "invalid event: " + strings.Join(e.Problems, "; ")
}

// DecodeEvent decodes and validates one Kafka value against the input contract in DESIGN.md.
// fallbackID ("topic/partition/offset") becomes the EventID when the value has no event_id
// (absent, null or ""). Unknown fields are ignored; a field with the wrong JSON type is a
// violation. A null optional field counts as absent. The error is always an
// *InvalidEventError naming every violation found.
func DecodeEvent(value []byte, fallbackID string) (reversald.Event, error) {
	if len(value) > MaxEventBytes {
		return reversald.Event{}, &InvalidEventError{Problems: []string{
			fmt.Sprintf("value is %d bytes, more than the %d allowed", len(value), MaxEventBytes),
		}}
	}
	if !utf8.Valid(value) {
		return reversald.Event{}, &InvalidEventError{Problems: []string{"value is not valid UTF-8"}}
	}
	trimmed := bytes.TrimLeft(value, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return reversald.Event{}, &InvalidEventError{Problems: []string{"value must be a JSON object"}}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil {
		return reversald.Event{}, &InvalidEventError{Problems: []string{"value is not valid JSON: " + jsonProblem(err)}}
	}

	d := decoder{fields: fields}
	var ev reversald.Event

	ev.EventID = d.text("event_id", maxEventIDBytes, false, true)
	if ev.EventID == "" {
		ev.EventID = fallbackID
	}
	ev.OutTradeNo = d.text("out_trade_no", qfpay.MaxOutTradeNoBytes, true, true)
	ev.Syssn = d.text("syssn", qfpay.MaxSyssnBytes, false, true)
	ev.TxAmt = d.txAmt()
	ev.TxCurrCd = d.text("txcurrcd", noLimit, false, false)
	if ev.TxCurrCd != "" && !isUpperAlpha3(ev.TxCurrCd) {
		d.problemf("txcurrcd must be an ISO 4217 code of 3 upper-case letters, got %s", quote(ev.TxCurrCd))
	}
	ev.TxDtm = d.txDtm()
	ev.PayType = d.text("pay_type", noLimit, false, false)
	if ev.PayType != "" && !isDigits(ev.PayType, 6) {
		d.problemf("pay_type must be exactly 6 digits, got %s", quote(ev.PayType))
	}
	ev.MchID = d.text("mchid", qfpay.MaxMchIDBytes, false, true)
	ev.Udid = d.text("udid", qfpay.MaxUdidBytes, false, true)
	ev.Reason = d.text("reason", maxReasonBytes, false, true)
	ev.OccurredAt = d.occurredAt()

	if len(d.problems) > 0 {
		return reversald.Event{}, &InvalidEventError{Problems: d.problems}
	}
	return ev, nil
}

// decoder collects problems while reading fields of one JSON object.
type decoder struct {
	fields   map[string]json.RawMessage
	problems []string
}

func (d *decoder) problemf(format string, args ...any) {
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

// raw returns the field's JSON text, or nil when it is absent or null.
func (d *decoder) raw(name string) json.RawMessage {
	r, ok := d.fields[name]
	if !ok || string(r) == "null" {
		return nil
	}
	return r
}

// str reads a JSON string field. ok is false when the field is absent/null or a violation was
// recorded for it.
func (d *decoder) str(name string) (s string, ok bool) {
	r := d.raw(name)
	if r == nil {
		return "", false
	}
	if r[0] != '"' {
		d.problemf("%s must be a string, got %s %s", name, jsonKind(r), quote(string(r)))
		return "", false
	}
	s, err := unquote(r)
	if err != nil {
		// Unreachable for a value json.Unmarshal already accepted as an object; kept total.
		d.problemf("%s must be a string: %s", name, jsonProblem(err))
		return "", false
	}
	// encoding/json turns lone UTF-16 surrogates into U+FFFD; an identifier silently changed
	// would no longer match the gateway's, so refuse it.
	if strings.ContainsRune(s, utf8.RuneError) {
		d.problemf("%s must be valid UTF-8 text, got %s", name, quote(s))
		return "", false
	}
	return s, true
}

// unquote is the text of r, a JSON string of a value json.Unmarshal accepted
// (so valid UTF-8, no control character inside the quotes): without a
// backslash it is the bytes between the quotes, as json.Unmarshal would give
// them, without its second pass over the token (intake decodes every
// message); with escapes, json.Unmarshal decodes it.
func unquote(r json.RawMessage) (string, error) {
	if len(r) >= 2 && r[0] == '"' && r[len(r)-1] == '"' && bytes.IndexByte(r, '\\') < 0 {
		return string(r[1 : len(r)-1]), nil
	}
	var s string
	err := json.Unmarshal(r, &s)
	return s, err
}

// text reads an optional or required string field of at most maxBytes bytes.
func (d *decoder) text(name string, maxBytes int, required, noControl bool) string {
	s, ok := d.str(name)
	if !ok {
		if required && d.raw(name) == nil {
			d.problemf("%s is required", name)
		}
		return ""
	}
	bad := false
	if s == "" && required {
		d.problemf("%s is required", name)
		bad = true
	}
	if len(s) > maxBytes {
		d.problemf("%s must be at most %d bytes, got %d", name, maxBytes, len(s))
		bad = true
	}
	if noControl && hasControl(s) {
		d.problemf("%s must not contain control characters, got %s", name, quote(s))
		bad = true
	}
	if bad {
		return ""
	}
	return s
}

// txAmtProblem is the problem named for any txamt outside the contract.
var txAmtProblem = fmt.Sprintf("txamt must be a positive integer of at most %d digits", qfpay.MaxTxAmtDigits)

func (d *decoder) txAmt() int64 {
	want := txAmtProblem
	r := d.raw("txamt")
	if r == nil {
		d.problemf("txamt is required")
		return 0
	}
	var digits string
	switch r[0] {
	case '"':
		s, err := unquote(r)
		if err != nil {
			d.problemf("%s: %s", want, jsonProblem(err))
			return 0
		}
		digits = s
		if !isAmount(digits) {
			d.problemf("%s, got %s", want, quote(s))
			return 0
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		digits = string(r)
		if !isAmount(digits) {
			d.problemf("%s, got %s", want, truncate(digits))
			return 0
		}
	default:
		d.problemf("%s, got %s %s", want, jsonKind(r), quote(string(r)))
		return 0
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil { // unreachable: at most qfpay.MaxTxAmtDigits digits
		d.problemf("%s, got %s", want, quote(digits))
		return 0
	}
	return n
}

func (d *decoder) txDtm() string {
	s, ok := d.str("txdtm")
	if !ok {
		if d.raw("txdtm") == nil {
			d.problemf("txdtm is required")
		}
		return ""
	}
	if s == "" {
		d.problemf("txdtm is required")
		return ""
	}
	// time.Parse accepts one-digit hours and the like; the round trip insists on the exact form
	// and rejects dates that do not exist (2023-02-29, 24:00:00).
	t, err := time.Parse(qfpay.TxDtmLayout, s)
	if err != nil || t.Format(qfpay.TxDtmLayout) != s || t.Year() < minYear {
		d.problemf("txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got %s", quote(s))
		return ""
	}
	return s
}

func (d *decoder) occurredAt() time.Time {
	s, ok := d.str("occurred_at")
	if !ok || s == "" {
		return time.Time{}
	}
	// time.Parse is lenient (one-digit hours); check the RFC 3339 shape first. The year range
	// keeps the value storable in PostgreSQL and encodable by encoding/json.
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		t = t.UTC()
	}
	if !isRFC3339(s) || err != nil || t.Year() < minYear || t.Year() > maxYear {
		d.problemf("occurred_at must be an RFC 3339 time, got %s", quote(s))
		return time.Time{}
	}
	return t
}

// isRFC3339 checks the shape YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm); time.Parse checks the values.
func isRFC3339(s string) bool {
	const head = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(head)+1 {
		return false
	}
	for i := 0; i < len(head); i++ {
		if head[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != head[i] {
			return false
		}
	}
	rest := s[len(head):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	return len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') &&
		isDigits(rest[1:3], 2) && rest[3] == ':' && isDigits(rest[4:6], 2)
}

// isAmount reports whether s is 1..11 ASCII digits with no leading zero (so not zero either).
func isAmount(s string) bool {
	return len(s) >= 1 && len(s) <= qfpay.MaxTxAmtDigits && s[0] != '0' && isDigits(s, len(s))
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isUpperAlpha3(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// hasControl reports C0 and C1 control characters and DEL.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return true
		}
	}
	return false
}

func jsonKind(r json.RawMessage) string {
	switch r[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	default:
		return "number"
	}
}

// jsonProblem names a JSON error without echoing the input.
func jsonProblem(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// truncate cuts s to at most maxQuotedBytes bytes on a rune boundary, marking the cut.
func truncate(s string) string {
	if len(s) <= maxQuotedBytes {
		return s
	}
	cut := maxQuotedBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quote is %q of a value cut to a safe length; a cut value ends with … after the quotes.
func quote(s string) string {
	if len(s) <= maxQuotedBytes {
		return strconv.Quote(s)
	}
	t := truncate(s)
	return strconv.Quote(strings.TrimSuffix(t, "…")) + "…"
}
