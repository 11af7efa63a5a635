package qfpay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

// Class is what a result means for the executor (QFPAY.md §4).
type Class int

// Classes. The zero value is ClassNeedsReview, so a forgotten case is safe.
const (
	ClassNeedsReview      Class = iota // configuration, signature, risk, mismatch, unknown: a person looks
	ClassSuccess                       // respcd 0000 (for a cancel: confirm with a query)
	ClassInProgress                    // in progress or not known yet: re-check by query, never re-send blindly
	ClassDuplicate                     // 1102 duplicate request: query the state
	ClassAlreadyCancelled              // 1142, 1263, 1264: done, confirm with a query
	ClassRefunded                      // 1125, 1262: final refunded
	ClassPaid                          // 1260: final paid (refund needed)
	ClassNotFound                      // 1136, 1268: re-check by query, then not_found
	ClassPaymentFailed                 // the payment itself failed (or expired unpaid, 1181): final not_paid
	ClassTransient                     // retry with backoff; after a cancel, query before any re-send
	ClassUnsupported                   // ErrNotCancellable: no call was made
	ClassUnknown                       // a respcd outside the table: after a cancel, query then review; on a query, retry a bounded number of times
)

var classNames = [...]string{
	"needs_review", "success", "in_progress", "duplicate", "already_cancelled",
	"refunded", "paid", "not_found", "payment_failed", "transient", "unsupported", "unknown",
}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "Class(" + strconv.Itoa(int(c)) + ")"
	}
	return classNames[c]
}

// codeClasses is the one table of QFPAY.md §4. A code not listed is
// ClassUnknown.
var codeClasses = map[string]Class{
	"0000": ClassSuccess,

	"1143": ClassInProgress, "1145": ClassInProgress, "1298": ClassInProgress,
	"1161": ClassInProgress, "2999": ClassInProgress,

	"1102": ClassDuplicate,

	"1142": ClassAlreadyCancelled, "1263": ClassAlreadyCancelled, "1264": ClassAlreadyCancelled,

	"1125": ClassRefunded, "1262": ClassRefunded,

	"1260": ClassPaid,

	"1136": ClassNotFound, "1268": ClassNotFound,

	"1181": ClassPaymentFailed, // expired unpaid: not_paid, confirm by query
	"1147": ClassPaymentFailed, "1201": ClassPaymentFailed, "1202": ClassPaymentFailed,
	"1203": ClassPaymentFailed, "1204": ClassPaymentFailed, "1212": ClassPaymentFailed,
	"2005": ClassPaymentFailed,

	"1100": ClassTransient, "1205": ClassTransient, "1252": ClassTransient,
	"1254": ClassTransient, "1295": ClassTransient, "1296": ClassTransient,
	"1297": ClassTransient, "1111": ClassTransient, "1127": ClassTransient,
	"2009": ClassTransient, "2010": ClassTransient,

	"1101": ClassNeedsReview, "1103": ClassNeedsReview, "1104": ClassNeedsReview,
	"1105": ClassNeedsReview, "1106": ClassNeedsReview, "1107": ClassNeedsReview,
	"1108": ClassNeedsReview, "1150": ClassNeedsReview, "1155": ClassNeedsReview,
	"1241": ClassNeedsReview, "1242": ClassNeedsReview, "1243": ClassNeedsReview,
	"1250": ClassNeedsReview, "1251": ClassNeedsReview, "1266": ClassNeedsReview,
	"1267": ClassNeedsReview, "1294": ClassNeedsReview, "2011": ClassNeedsReview,
}

// CodeClass classifies a QFPay respcd on its own.
func CodeClass(respcd string) Class {
	if c, ok := codeClasses[respcd]; ok {
		return c
	}
	return ClassUnknown
}

// Classify says what err, as returned by the client (bare or wrapped), means.
// nil is ClassSuccess. This is the only place results are classified.
func Classify(err error) Class {
	if err == nil {
		return ClassSuccess
	}
	var (
		re *RespError
		he *HTTPError
		ve *ValidationError
		te *TransportError
		ne net.Error
	)
	switch {
	case errors.Is(err, ErrNotCancellable):
		return ClassUnsupported
	case errors.Is(err, ErrNoCredential):
		return ClassNeedsReview
	case errors.As(err, &ve):
		return ClassNeedsReview
	case errors.As(err, &re):
		return CodeClass(re.Respcd)
	case errors.As(err, &he):
		return httpClass(he.Status)
	case errors.Is(err, ErrResponseSignature):
		return ClassNeedsReview
	case errors.Is(err, ErrMalformedResponse):
		// A garbled answer (a proxy's error page, a cut body) says nothing about
		// the transaction: re-check by query.
		return ClassTransient
	case errors.As(err, &te),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &ne):
		return ClassTransient
	}
	return ClassNeedsReview
}

func httpClass(status int) Class {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return ClassTransient
	case status >= 200 && status < 300:
		return ClassSuccess
	}
	return ClassNeedsReview
}
