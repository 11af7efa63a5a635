// Package consumer is the Kafka side of reversald: Intake reads payment-uncertain events as a
// consumer group and records them in PostgreSQL, DeadLetters parks invalid input, Publisher
// moves outcomes from the PostgreSQL outbox to the results topic, and EnsureTopics creates
// missing topics. Security builds both the reader's Dialer and the writers' Transport, and its
// Check asks a broker for metadata over them, telling a broker that refuses the client's TLS or
// SASL settings (AccessError, with its Refusal) from one that cannot be reached. For the ops
// commands, ReadDeadLetters reads the dead-letter topic up to the high watermarks seen when it
// starts (so it always ends), ReplayMessage rebuilds the original of a letter, and TopicWriter
// writes replays and republished outcomes to a topic that must exist.
//
// Invariants (money is at stake: a lost event or a double cancel is an incident):
//
//   - No event is lost. An offset is committed only after every message up to it is durable:
//     valid events in the store transaction (store.Intake, which returns after COMMIT), invalid
//     ones in the dead-letter topic acknowledged by all in-sync replicas. A batch that cannot be
//     made durable is retried as it is, with backoff, for as long as Run runs; it is never
//     skipped, and a failure never crashes the loop. Steps already done (store transaction,
//     then DLQ write) are not repeated within a batch; a redelivered batch repeats them, which is
//     harmless (below).
//   - Redelivery is harmless. Kafka may hand us a message again: after a crash or a cancel
//     between store commit and offset commit, after a rebalance (kafka-go may return messages of
//     a partition we just lost, and we commit them late: the broker accepts the commit of any
//     member of the current generation, which can move that partition's offset back and cause
//     more redelivery, never less), or twice in one batch. store.Intake keys events by event_id
//     (the producer's, or topic/partition/offset when it sent none, so the same message always
//     gets the same id; for a replayed dead letter, the x-replay-of header's topic/partition/
//     offset of the original, so every replay of it gets the same id) and reports a repeat as
//     EventDuplicate without writing anything.
//     Dead letters and outcomes are at-least-once; readers drop repeats by offset or event_id.
//   - Intake never calls QFPay, so a slow gateway never stalls a partition. The hand-off to the
//     executor (IntakeConfig.OnNew) runs after the store commit and before the offset commit.
//   - A poison message cannot wedge a partition: DecodeEvent refuses anything outside the input
//     contract (and anything over reversal.MaxEventBytes) and it goes to the DLQ; a DLQ value too
//     big for the broker is cut (header x-dlq-truncated holds the original size).
//     What the store itself refuses is retried forever by design, so the store must accept
//     whatever DecodeEvent accepts.
//   - Shutdown: when Run's context is cancelled, Intake stops fetching, finishes the batch in
//     progress (write and commit, under context.WithoutCancel bounded by FinalTimeout; the next
//     batch, fetched and decoded meanwhile, is left uncommitted: redelivered), then
//     closes the reader, which leaves the group so the partitions move at once. Publisher
//     flushes the outbox once more within FlushTimeout. Run returns after its goroutines exit;
//     shutdown is not an error.
//   - An outbox row is marked published in the transaction that locked it, only after Kafka
//     acknowledged its message (RequiredAcks: all); a failed write leaves it for the next round.
//
// This package knows kafka-go, reversal's Event/Outcome and the store API; it does not know
// qfpay or the executor. kafka-go types appear in its API only where a message is the subject
// (Letter, DeadLetter); its errors are wrapped with what was being done.
package consumer
