package reversal_test

import (
	"testing"

	"github.com/reversald/reversald/reversal"
)

// BenchmarkDecodeEvent decodes a typical event with every field, as intake
// does for each message. Run: go test -run '^$' -bench DecodeEvent -benchmem ./reversal
func BenchmarkDecodeEvent(b *testing.B) {
	value := []byte(`{"event_id":"pos-7-000123","out_trade_no":"T20261122095900123","syssn":"20261122000100020001",` +
		`"txamt":2500,"txcurrcd":"HKD","txdtm":"2026-11-22 09:59:00","pay_type":"800101","mchid":"MNxMp11FV35qQN",` +
		`"udid":"POS-7","reason":"timeout","occurred_at":"2026-11-22T01:59:30Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reversal.DecodeEvent(value, "t/0/1"); err != nil {
			b.Fatal(err)
		}
	}
}
