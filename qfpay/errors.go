package qfpay

import (
	"errors"
	"fmt"
	"time"
)

// The typed errors below say what happened, not where: the client wraps them as
// "qfpay <endpoint> <out_trade_no>: ...". None of them carries the key, a
// signature or a field value.

// ValidationError names the first field of a request that QFPay would refuse.
// Nothing was sent. It never carries the field's value.
type ValidationError struct {
	Field  string // the QFPay parameter name, e.g. "txdtm"
	Reason string // lower case, e.g. "must be YYYY-MM-DD hh:mm:ss"
}

func (e *ValidationError) Error() string {
	return "invalid " + e.Field + ": " + e.Reason
}

// RespError is an answer from QFPay whose respcd is not "0000".
type RespError struct {
	Endpoint string // "query", "reversal" or "close"
	Respcd   string
	Resperr  string
	Respmsg  string
}

func (e *RespError) Error() string {
	s := "respcd " + e.Respcd
	if e.Resperr != "" {
		s += ": " + e.Resperr
	}
	if e.Respmsg != "" && e.Respmsg != e.Resperr {
		s += " (" + e.Respmsg + ")"
	}
	return s
}

// HTTPError is an HTTP answer outside 2xx (429 rate limit, 5xx, ...).
type HTTPError struct {
	Endpoint   string
	Status     int
	RetryAfter time.Duration // from a Retry-After header in seconds, 0 if none
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("http status %d", e.Status)
}

// TransportError is a failure to get an answer at all: refused, reset or
// dropped connections, timeouts, a cancelled context. It wraps the cause, so
// errors.Is(err, context.DeadlineExceeded) and friends work. The request may
// have reached QFPay all the same: after a cancel, query before any re-send.
type TransportError struct {
	Endpoint string
	Timeout  bool
	Err      error
}

func (e *TransportError) Error() string {
	return e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

// Sentinels for answers that arrived but cannot be trusted.
var (
	// ErrResponseSignature: the response's X-QF-SIGN did not match (only when
	// Config.VerifyResponses is on).
	ErrResponseSignature = errors.New("response signature mismatch")
	// ErrMalformedResponse: the body was not a QFPay JSON object, or too large.
	ErrMalformedResponse = errors.New("malformed response")
)

// ErrNoCredential: no credential of a [Directory] signs for the merchant (none
// names or matches its mchid, and there is no default). Nothing was sent; a
// person must configure one.
var ErrNoCredential = errors.New("no QFPay credential")
