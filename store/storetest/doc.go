// Package storetest gives each test its own migrated PostgreSQL database on the server named
// by DATABASE_URL, so that tests of the store, the consumer, the executor and the daemon run
// against real PostgreSQL and in parallel without seeing each other's rows. New returns a
// store.Store on such a database; URL returns the database's URL, for code that opens its own
// pool (the daemon under test).
//
// Invariants:
//
//   - One database per call: a fresh database cloned (CREATE DATABASE ... TEMPLATE) from a
//     template that holds the migrations; nothing is shared between tests but the server. It
//     is dropped (WITH (FORCE)) when the test ends, and New's store is closed before that.
//   - The template is migrated once per schema, not once per test: it is named after a hash of
//     the embedded migrations, so a changed migration gets a new template and an unchanged one
//     is reused across runs. Concurrent test processes (go test runs packages in parallel)
//     serialise on an advisory lock while one of them builds it; a half-made template is
//     dropped and built again.
//   - It fails loudly, never skips: a missing DATABASE_URL (internal/testenv), a server that
//     does not answer or a template that cannot be migrated fails the test with a message
//     saying how to start the stack.
//
// It knows the store's API, its migrations and internal/testenv; it does not start a server,
// and nothing outside tests may import it.
package storetest
