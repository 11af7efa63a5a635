// Package kafkatest is the kit for tests (and the demo) that talk to a real Kafka: a random
// topic per test, produce, read back, collect in the background, committed offsets of a group,
// consumer-group membership, a poller for conditions, and for security tests a CA the broker
// does not trust (UntrustedCA) and the key lines that must never leak (KeyMaterial). There is
// no mock here: the broker is the one internal/testenv names.
//
// Two layers:
//
//   - Cluster and its methods take a context and return errors, so that a program without a
//     testing.TB (internal/demo) can use them.
//   - The package functions that take a testing.TB (NewTopic, Produce, ReadAll, HighWatermarks,
//     Collect, WaitMembers, WaitFor) are thin wrappers that fail the test instead, and tie what
//     they create to the test's cleanup.
//
// Invariants:
//
//   - Every call dials with a kafka.Transport of its own and closes it before returning: the
//     shared default transport caches metadata across tests, from before a test's topics
//     existed, and its idle connections would outlive the test (goleak).
//   - A topic is ready when CreateTopic returns: every partition has a leader, so a first write
//     does not race the controller.
//   - Produced messages are acknowledged by all in-sync replicas and keyed with the Murmur2
//     balancer (the partition a Java producer would pick, as the daemon's own writers do).
//   - Nothing sleeps to wait for a condition: waits poll the condition (Poll, WaitFor) until a
//     deadline.
//
// This package knows kafka-go only; it does not import the project's packages (consumer's
// internal tests use it, so it must not depend on consumer), and it does not look up where the
// broker is: tests get the broker list from internal/testenv.
package kafkatest
