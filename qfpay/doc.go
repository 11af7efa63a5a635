// Package qfpay is reversald's client for the QFPay Open API: it signs and sends
// query, reversal and close calls, decodes the answers leniently, and sorts every
// result into one of a few classes the executor acts on.
//
// Invariants:
//   - The client key never leaves this package in any printable form: [Key] redacts
//     itself in fmt, JSON, text and slog, and no error, [Call] or log line carries it
//     or a signature.
//   - Nothing invalid reaches the network: every request is validated first and a
//     [*ValidationError] names the field; such a [Call] has Sent == false.
//   - Every exchange is described by a [Call] (endpoint, signed fields, HTTP status,
//     respcd, the raw body bounded to [MaxRawBytes], latency), returned even when
//     the call fails, for the audit trail.
//   - err == nil exactly when QFPay answered respcd "0000". Every other outcome is an
//     error, and [Classify] is the one place that says what it means (QFPAY.md §4).
//   - Hong Kong-only pay types are not cancellable: [Client.Cancel] returns
//     [ErrNotCancellable] without any call.
//   - One [Client] signs with one account (app code and key). A [Directory]
//     holds the accounts of several merchants' credentials and resolves an
//     mchid to one (its list, else the longest pattern, else the default; none
//     is [ErrNoCredential]); [Directory.Replace] swaps the whole set at once,
//     and a client already handed out keeps working. [Call.AppCode] names
//     the account a call was signed under, never its key.
//
// The package knows nothing of Kafka, PostgreSQL or the reversal state machine;
// it must not import store or reversal. Its fake, [github.com/reversald/reversald/qfpay/sandbox],
// is independent of it (it checks signatures with its own code), so the two check
// each other.
package qfpay
