package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/reversald/reversald/consumer"
)

// closingListener accepts connections on loopback and closes each at its first bytes, as
// a Kafka listener of other security does; after `times` connections it
// closes the listener too, as a broker that dies (the next dial is refused).
func closingListener(t *testing.T, times int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for i := 0; times == 0 || i < times; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the client's first bytes, then close: an EOF for the client,
			// as Kafka gives (closing with bytes unread would reset instead).
			_, _ = c.Read(make([]byte, 512))
			c.Close()
		}
		ln.Close()
	}()
	return ln.Addr().String()
}

// TestCheckKafkaBrokerDyingMidCheck is what the chaos suite found: a daemon
// started while the broker was being SIGKILLed read the closed connection as
// a listener of other security and refused to start. Closed once, then
// refused, is a broker going down: the daemon starts and waits for it.
func TestCheckKafkaBrokerDyingMidCheck(t *testing.T) {
	t.Parallel()
	addr := closingListener(t, 1)
	if err := checkKafka(context.Background(), []string{addr}, consumer.Security{}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("a broker that closed one connection and then went down stopped the start-up: %v", err)
	}
}

// TestCheckKafkaMismatchTwice: a listener that closes every connection at
// once expects other security; the start-up stops saying so.
func TestCheckKafkaMismatchTwice(t *testing.T) {
	t.Parallel()
	addr := closingListener(t, 0)
	err := checkKafka(context.Background(), []string{addr}, consumer.Security{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "expects other security") {
		t.Fatalf("checkKafka = %v; want the security mismatch", err)
	}
}
