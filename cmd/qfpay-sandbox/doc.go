// Command qfpay-sandbox serves the QFPay sandbox (package qfpay/sandbox) for the
// demo, the benchmarks and manual tries with curl.
//
// Flags override the environment:
//
//	-addr        QFPAY_SANDBOX_ADDR        listen address (default 127.0.0.1:8089)
//	-appcode     QFPAY_SANDBOX_APPCODE     expected X-QF-APPCODE (default SANDBOXAPPCODE)
//	-key         QFPAY_SANDBOX_KEY         client key (default sandbox-key); or QFPAY_SANDBOX_KEY_FILE
//	-rate-limit  QFPAY_SANDBOX_RATE_LIMIT  per-merchant 100/s, 400/min (default false)
//	-sign-responses QFPAY_SANDBOX_SIGN_RESPONSES  add X-QF-SIGN to answers (default false)
//	-any-month   QFPAY_SANDBOX_ANY_MONTH   queries see every month (default false)
//	-loose-range QFPAY_SANDBOX_LOOSE_RANGE accept a query range across a calendar month (default false:
//	                                       it answers 1150, as QFPay does)
//	-rules       QFPAY_SANDBOX_RULES       JSON file: [rules...] or {"rules":[...],"txns":[...]}
//	-ledger-limit QFPAY_SANDBOX_LEDGER_LIMIT entries kept (default 1000000; then the older half goes)
package main
