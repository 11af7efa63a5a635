// Package testclock is a settable clock for tests: time-dependent code takes a clock (a
// func() time.Time), and a test gives it Clock.Now and moves time on with Advance instead of
// sleeping.
//
// Invariants: the clock moves only when Advance is called, never by itself; it is safe for
// concurrent use, so one Clock can drive the store, the executor and the sandbox of a test at
// once.
//
// It knows nothing of the project's packages.
package testclock
