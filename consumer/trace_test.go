package consumer

import (
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestHeaderCarrier: the trace context is read from headers whatever their
// case, and writing it replaces a header of that name instead of adding a
// second one (a reader would see two traceparents otherwise).
func TestHeaderCarrier(t *testing.T) {
	t.Parallel()
	h := []kafka.Header{{Key: "source", Value: []byte("pos-7")}, {Key: "TraceParent", Value: []byte("old")}}
	c := headerCarrier{&h}
	if got := c.Get("traceparent"); got != "old" {
		t.Errorf("Get(traceparent) = %q, want old", got)
	}
	if got := c.Get("tracestate"); got != "" {
		t.Errorf("Get(tracestate) = %q, want empty", got)
	}
	c.Set("traceparent", "new")
	c.Set("tracestate", "pos=7")
	want := []kafka.Header{{Key: "source", Value: []byte("pos-7")}, {Key: "TraceParent", Value: []byte("new")}, {Key: "tracestate", Value: []byte("pos=7")}}
	if len(h) != len(want) {
		t.Fatalf("headers %v, want %v", h, want)
	}
	for i := range want {
		if h[i].Key != want[i].Key || string(h[i].Value) != string(want[i].Value) {
			t.Errorf("header %d = %s: %s, want %s: %s", i, h[i].Key, h[i].Value, want[i].Key, want[i].Value)
		}
	}
	if keys := c.Keys(); len(keys) != 3 || keys[1] != "TraceParent" {
		t.Errorf("Keys = %v", keys)
	}
}
