// Package schema holds the JSON Schemas (draft 2020-12) of reversald's
// public formats, the files next to it that the README links:
//
//   - event.schema.json: the input event (a value on the input topic);
//   - outcome.v1.schema.json, outcome.v2.schema.json: the outcome of each
//     schema_version ever published, and outcome.schema.json, any of them;
//   - dead-letter.schema.json: the headers of a dead letter.
//
// The files are the contract; the Go code only compiles them (with format
// assertions on) for the tests that hold reversald to them: golden payloads
// here, and every outcome and dead letter the end-to-end tests read back
// (cmd/reversald). The daemon does not import this package.
package schema
