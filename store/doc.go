// Package store keeps reversald's durable state in PostgreSQL through pgx v5:
// attempts (one per (mchid, out_trade_no)), the events that asked for them, an
// outbox of outcomes, and an audit row per gateway call.
//
// Invariants:
//   - Intake is one transaction per batch; an event_id is recorded once, and a
//     conflicting duplicate never changes the attempt it collides with.
//   - A claim takes a lease and increments the attempt's fencing token; a step
//     write changes the attempt only while the token is unchanged, so a worker
//     whose lease was taken over writes nothing (ErrFenced). WriteSteps writes
//     many workers' steps in one transaction and keeps that per step: each is
//     fenced by its own token and gets its own result.
//   - When an attempt becomes final, one outbox row per non-conflicting event is
//     written in the same transaction; an event that arrives later for a final
//     attempt gets its outbox row in the intake transaction. Intake locks the
//     attempts it attaches to (FOR SHARE), so an event is never attached to an
//     attempt being finalised without one of the two writing its outbox row
//     (an attempt its own transaction created needs no lock: nobody else sees
//     it before the commit).
//   - Intake's two paths (intake.go) write the same rows: the copy path (a
//     read, then COPY; for batches none of whose event_ids is recorded) and
//     the upsert path (INSERT ... ON CONFLICT), which takes redeliveries and
//     any batch whose copy met a concurrent writer (rolled back, run again).
//     Both write it with the one statement insertOutcomes, so an outcome has the
//     same columns (QFPay's last-read amount included) whichever path wrote it.
//   - An operator's retry or resolve (operator.go) acts only on a needs_review
//     attempt that no worker holds a live lease on, moves the fencing token on,
//     and writes an operator_actions row in the same transaction.
//   - Purge (purge.go) deletes only final attempts whose outcomes are all
//     published, in short batches that skip rows others hold (SKIP LOCKED).
//
// The store knows nothing of QFPay, Kafka, or the decision table: it stores
// what it is told, atomically, and refuses stale writers. pgx errors do not
// leak past it: callers see ErrFenced, ErrNotFound, or a wrapped error.
package store
