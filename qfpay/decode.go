package qfpay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Body bounds.
const (
	// MaxRawBytes is how much of a response body Call.Raw keeps for the audit trail.
	MaxRawBytes = 8 << 10
	// MaxBodyBytes is the most the client reads of a response; more is malformed.
	MaxBodyBytes = 1 << 20
)

// RecordState is what a query record says about a payment (QFPAY.md §3).
type RecordState int

// Record states. StateUnknown is a record the client cannot read (an unknown
// cancel flag or no respcd): a person should look.
const (
	StateUnknown RecordState = iota
	StatePaid
	StateReversed
	StateClosed
	StateRefunded
	StateInFlight
	StateFailed
	StatePartiallyRefunded
)

var stateNames = [...]string{"unknown", "paid", "reversed", "closed", "refunded", "in_flight", "failed", "partially_refunded"}

func (s RecordState) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "RecordState(" + strconv.Itoa(int(s)) + ")"
	}
	return stateNames[s]
}

// Record is one element of a query's data array.
type Record struct {
	Respcd     string
	Cancel     string // "0" none, "1" reversed, "2" closed, "3" refunded, "5" partly refunded
	Syssn      string
	OutTradeNo string
	PayType    string
	OrderType  string // "payment" or "refund"
	OrigSsn    string // refunds: the payment's syssn
	TxAmt      int64
	TxCurrCd   string
	TxDtm      string
	SysDtm     string
	ErrMsg     string
	// Extra holds every field not named above, as received.
	Extra map[string]json.RawMessage
}

// State reads the cancel flag first (a reversed record may still show respcd
// 0000), then respcd (QFPAY.md §3): 0000 is paid; a code QFPay documents as a
// failed payment is failed; every other code (the wait, processing, network,
// unknown-result and try-later families, and any code this table does not
// know) is in flight. Waiting is not failing.
func (r Record) State() RecordState {
	switch r.Cancel {
	case "", "0":
	case "1":
		return StateReversed
	case "2":
		return StateClosed
	case "3":
		return StateRefunded
	case "5":
		return StatePartiallyRefunded
	default: // 4 is undocumented; anything else is unknown
		return StateUnknown
	}
	switch {
	case r.Respcd == "":
		return StateUnknown
	case r.Respcd == "0000":
		return StatePaid
	case CodeClass(r.Respcd) == ClassPaymentFailed: // the codes QFPay documents as a failed payment
		return StateFailed
	default:
		return StateInFlight
	}
}

// IsPayment reports whether the record is a payment (not a refund).
func (r Record) IsPayment() bool { return r.OrderType == "" || r.OrderType == "payment" }

// object is a JSON object decoded field by field, so that numbers may come as
// strings or numbers and unknown fields survive.
type object map[string]json.RawMessage

func decodeObject(b []byte) (object, error) {
	var o object
	if err := json.Unmarshal(b, &o); err != nil || o == nil {
		return nil, ErrMalformedResponse
	}
	return o, nil
}

// take returns a field as text (a JSON string unquoted, a number or boolean
// as written, null or absent as "") and removes it from o.
func (o object) take(name string) (string, error) {
	raw, ok := o[name]
	if !ok {
		return "", nil
	}
	delete(o, name)
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil
	}
	switch raw[0] {
	case '"':
		s, err := unquote(raw)
		if err != nil {
			return "", fmt.Errorf("field %s: %w", name, ErrMalformedResponse)
		}
		return s, nil
	case 'n':
		return "", nil
	case '{', '[':
		o[name] = raw // keep it, but it is not text
		return "", fmt.Errorf("field %s is not a scalar: %w", name, ErrMalformedResponse)
	default:
		return string(raw), nil
	}
}

// unquote is the text of raw, a JSON string token from a decoded object:
// with no backslash and valid UTF-8 it is the bytes between the quotes,
// which is what json.Unmarshal gives (its scan already refused control
// characters), without a second pass; anything else goes to json.Unmarshal,
// which decodes the escapes and replaces invalid UTF-8. Every query and
// cancel answer is read this way, field by field.
func unquote(raw []byte) (string, error) {
	if n := len(raw); n >= 2 && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 && utf8.Valid(raw) {
		return string(raw[1 : n-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// takeInt reads an integer that may be a number or a numeric string. A value
// that is not an integer stays in o (Extra) and reads as 0.
func (o object) takeInt(name string) int64 {
	raw, ok := o[name]
	if !ok {
		return 0
	}
	s, err := o.take(name)
	if err != nil || s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && f == float64(int64(f)) {
			return int64(f)
		}
		o[name] = raw
		return 0
	}
	return n
}

func (o object) extra() map[string]json.RawMessage {
	if len(o) == 0 {
		return nil
	}
	return map[string]json.RawMessage(o)
}

func decodeRecord(raw json.RawMessage) (Record, error) {
	o, err := decodeObject(raw)
	if err != nil {
		return Record{}, fmt.Errorf("data record: %w", err)
	}
	var r Record
	var errs [11]error
	r.Respcd, errs[0] = o.take("respcd")
	r.Cancel, errs[1] = o.take("cancel")
	r.Syssn, errs[2] = o.take("syssn")
	r.OutTradeNo, errs[3] = o.take("out_trade_no")
	r.PayType, errs[4] = o.take("pay_type")
	r.OrderType, errs[5] = o.take("order_type")
	r.OrigSsn, errs[6] = o.take("origssn")
	r.TxAmt = o.takeInt("txamt")
	r.TxCurrCd, errs[7] = o.take("txcurrcd")
	r.TxDtm, errs[8] = o.take("txdtm")
	r.SysDtm, errs[9] = o.take("sysdtm")
	r.ErrMsg, errs[10] = o.take("errmsg")
	for _, e := range errs {
		if e != nil {
			return Record{}, fmt.Errorf("data record: %w", e)
		}
	}
	// A pay type is 6 digits; anything else is kept as received in Extra
	// and read as unknown, so a garbled value never reaches the store.
	if r.PayType != "" && !sixDigits(r.PayType) {
		if raw, err := json.Marshal(r.PayType); err == nil {
			o["pay_type"] = raw
		}
		r.PayType = ""
	}
	r.Extra = o.extra()
	return r, nil
}

func sixDigits(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
