// Package console is the operator console: a small web application, served by
// `reversald console`, where people who work the needs_review cases see an
// attempt's whole story (its events, every QFPay call with its answer, its
// outcomes and the operator audit trail) and retry or resolve it.
//
// It is plain server-rendered HTML (html/template, which escapes every value
// by context) with one small embedded script for progressive enhancement;
// every asset is embedded with go:embed and nothing is loaded from another
// origin.
//
// Invariants:
//   - Nothing is served without authentication but the sign-in page, the
//     static assets and /healthz. There are two roles: admin (reads and acts)
//     and viewer (reads only); a viewer's POST to an action is refused with
//     403 whatever it carries.
//   - Every state-changing request (POST) carries the session's CSRF token
//     and passes a cross-origin check (Sec-Fetch-Site, then Origin against
//     Host); otherwise it is refused with 403 before anything is read from
//     the database.
//   - Actions go through the store's own Retry and Resolve, the functions the
//     CLI uses: the same checks (needs_review only, never under a live lease),
//     the same operator_actions audit row and the same outbox.
//   - Every response carries a strict Content-Security-Policy, nosniff, no
//     referrer and Cache-Control: no-store.
//   - The QFPay client key never reaches this package: the store holds none
//     (gateway calls are audited with their signed fields and app code only).
//
// It knows the store and the domain vocabulary, nothing of Kafka or QFPay's
// client, and does not read the environment: cmd/reversald wires it.
package console
