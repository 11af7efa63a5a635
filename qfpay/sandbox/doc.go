// Package sandbox is an http.Handler that behaves like the QFPay Open API for
// query, reversal and close: the one fake of the whole project. The daemon's
// end-to-end tests, the demo and the benchmarks run against it, in process
// (httptest.NewServer(sandbox.New(cfg)) or [Start]) and as a separate process
// (cmd/qfpay-sandbox).
//
// What it does, like QFPay:
//   - checks X-QF-APPCODE and X-QF-SIGN (MD5, or SHA256 with X-QF-SIGNTYPE) over
//     the received form fields, and answers respcd 1108 in band (HTTP 200) when
//     either is wrong; it may accept several app code and key pairs
//     (Config.Credentials, replaced at run time by SetCredentials, as in a key
//     rotation), and the ledger names the app code and the key's label that
//     verified each call; validates the fields and answers 1104 naming the field;
//   - keeps transactions per (mchid, out_trade_no) in the states in_flight, paid,
//     failed, reversed, closed, refunded and partially_refunded, and answers
//     query, reversal and close with QFPay's codes and shapes: a paid order
//     refuses a cancel with 1260, an already cancelled one answers
//     1263/1142/1264, a refunded or partially refunded one 1262 (no effect), an
//     unknown one 1268, and the query record's cancel flag is set after a cancel
//     (1 reversed, 2 closed, 3 refunded, 5 partially refunded);
//   - filters query records by sysdtm (UTC+8) within start_time..end_time, by
//     default the current calendar month of the query's txzone (UTC+8 without
//     one); a range that crosses a month or starts after it ends answers
//     1150, as QFPay does (Config.LooseRange switches this off);
//   - limits calls per merchant (100/s, 400/min, then HTTP 429) when switched on;
//   - keeps a ledger of every call per out_trade_no, readable from Go and as
//     JSON, with the checks an end-to-end test needs: CancelCalls (reversal and
//     close calls past authentication, faulted ones included), AcceptedCancels,
//     and CheckInvariants (no cancel applied twice, a query before every
//     cancel, no cancel sent to a payment already reversed or closed).
//
// What a test can script, per out_trade_no ([Sandbox.Script]) or by prefix
// ([Rule], longest prefix wins, scripts beat rules): the state a transaction
// starts in when first seen, latency, dropped connections (before or after the
// effect), HTTP 429 and 5xx for the first calls (with a Retry-After header if
// scripted: retry_after), "not seen yet" for the first
// calls, scripted respcds (1102, 1294, 1100, ...), in-progress (1143) answers to
// cancels before they settle, a payment that completes while the cancel is
// in flight, the query record's respcd (any 4 digits: in-flight codes such as
// 1161 or 2999, failed ones such as 1181 or 2005, unknown ones such as 7777),
// the record's amount and currency (record_txamt, record_txcurrcd, also on a
// Txn) for mismatch tests, answers given after the cancel took effect
// (cancel_effect_codes: ["9999"] while the payment was in fact reversed), and
// records that queries stop finding once a cancel was accepted
// (hide_after_cancel). A cancel goes through the faults, unknown_for,
// cancel_codes (no effect), in_progress (1143, no effect), then the effect,
// answered with the next cancel_effect_codes entry if any, else normally: see
// [Behavior].
//
// Admin surface (no signature): GET /_sandbox/ledger[?out_trade_no=X],
// GET /_sandbox/check, GET|POST /_sandbox/txns, GET|POST /_sandbox/rules,
// POST /_sandbox/ratelimit?on=, POST /_sandbox/strict_range?on=,
// POST /_sandbox/reset.
//
// What it must not know: the sandbox never imports the project's client,
// package qfpay. It keeps its own copy of QFPay's signing rule, field limits
// (String(16) mchid, String(128) out_trade_no, Int(11) txamt, ...) and layouts
// (YYYY-MM-DD hh:mm:ss) on purpose: it is an independent check of the client,
// so a bug there cannot hide behind the same bug here. It keeps everything in
// memory; the ledger grows until Reset (or up to Config.LedgerLimit).
//
// Files by job: sandbox.go (Config, New, Reset), state.go (transactions,
// shards, Put/Get/Txns), serve.go (the stages of a call: parse, limit,
// authenticate, validate, fault, answer), query.go, window.go (the query
// range rule), cancel.go, validate.go (field checks), script.go (Behavior,
// Rule, Txn), ledger.go, admin.go, sign.go, start.go.
package sandbox
