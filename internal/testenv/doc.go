// Package testenv tells tests where the real PostgreSQL and Kafka of the dev stack are.
//
// Tests run against real services (see STYLE.md): scripts/devstack.sh starts a throwaway
// PostgreSQL and a single-node Kafka on loopback and writes their addresses to .stack/env as
// DATABASE_URL and KAFKA_BROKERS; `make test` sources that file before `go test`. The broker's
// SASL_SSL and mutual-TLS listeners, with the test CA, client certificates and SCRAM user, come
// as KAFKA_SASL_SSL_BROKERS, KAFKA_MTLS_BROKERS and KAFKA_TEST_* (KafkaSecurity).
//
// A missing variable is a failure, never a skip: DatabaseURL, KafkaBrokers and KafkaSecurity
// fail the test with a message saying how to start the stack.
//
// This package only reads the environment: it starts nothing, creates no database or topic,
// and knows nothing of the project's packages.
package testenv
