package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/qfpay/sandbox"
)

// closedAddr is a loopback address that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStartupRefusesUnreachableBrokers: with no address of KAFKA_BROKERS
// accepting a connection, start-up ends after KAFKA_STARTUP_WAIT with an
// error that names every address, and nothing secret.
func TestStartupRefusesUnreachableBrokers(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	a, b := closedAddr(t), closedAddr(t)
	env := s.env(map[string]string{"KAFKA_BROKERS": a + "," + b, "KAFKA_STARTUP_WAIT": "1500ms"})
	logs := &syncBuffer{}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- run(context.Background(), []string{"run"}, envconfig.MapLookuper(env), io.Discard, logs)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("start-up with no reachable broker did not end within 60s")
	}
	if err == nil {
		t.Fatal("start-up with no reachable broker succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"KAFKA_BROKERS", "KAFKA_STARTUP_WAIT", a, b, "1.5s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not name %q: %s", want, msg)
		}
	}
	for _, secret := range []string{secretKey, s.dbURL} {
		if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a secret is in the error or the logs: %s\n%s", msg, logs)
		}
	}
	if waited := time.Since(start); waited < 1500*time.Millisecond {
		t.Errorf("start-up gave up after %s, before KAFKA_STARTUP_WAIT (1.5s)", waited)
	}
}

// TestStartupWithOneBrokerReachable: an unreachable address in
// KAFKA_BROKERS next to a live one changes nothing: the daemon starts and
// settles an event.
func TestStartupWithOneBrokerReachable(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	s.seed("OB1", sandbox.StateInFlight, "800101")
	out := s.collect(s.results)
	s.runInProcess(map[string]string{"KAFKA_BROKERS": closedAddr(t) + "," + strings.Join(s.brokers, ","), "KAFKA_STARTUP_WAIT": "5s"})
	s.produce(s.in, ev{id: "e-OB1", otn: "OB1"}.message())
	got := out.waitOutcomes(t, 1, 90*time.Second)
	if o := got["e-OB1"]; o.Status != "reversed" {
		t.Errorf("outcome %+v, want reversed", o)
	}
}
