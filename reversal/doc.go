// Package reversal is the domain of reversald: the payment-uncertain input event and its
// validation, the outcome published for every event, the decision table that maps QFPay
// answers to the next step (no I/O), and the executor loop that drives attempts through
// store and qfpay.
//
// Invariants kept here:
//
//   - DecodeEvent is pure and total: any byte slice either yields an Event that satisfies the
//     input contract in DESIGN.md or an *InvalidEventError that names every violation. It never
//     panics (fuzzed by FuzzDecodeEvent), and an accepted Event re-encoded with encoding/json
//     decodes to the same Event.
//   - Length limits are counted in bytes, as QFPay's String(N) fields are, and the fields bound
//     for QFPay use qfpay's own limits and txdtm layout: a value we accept is never rejected
//     by the gateway for its length.
//   - An Event's EventID is never empty: when the producer sends none, the caller's fallback
//     (topic/partition/offset) is used, so the same Kafka message always gets the same id and
//     redelivery is idempotent.
//   - Outcome is the results-topic schema (SchemaVersion); its JSON names are a public contract
//     and change only together with SchemaVersion.
//
// The event and outcome part knows nothing about Kafka or PostgreSQL beyond the
// store.OutboxRecord it converts from.
package reversal
