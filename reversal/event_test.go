package reversal

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/reversald/reversald"
)

const fallback = "payment-uncertain/3/42"

// minimal is the smallest valid event; rows build on it.
const minimal = `{"out_trade_no":"T1","txamt":2500,"txdtm":"2024-05-01 12:30:00"}`

type decodeCase struct {
	name  string
	value string
	want  reversald.Event // when problems is empty
	probs []string        // exact problems, in order
}

var decodeCases = []decodeCase{
	{
		name:  "minimal uses fallback id",
		value: minimal,
		want:  reversald.Event{EventID: fallback, OutTradeNo: "T1", TxAmt: 2500, TxDtm: "2024-05-01 12:30:00"},
	},
	{
		name: "every field",
		value: `{"event_id":"ev-1","out_trade_no":"T-2024-0001","syssn":"20240501000300020012345678",
			"txamt":"123","txcurrcd":"HKD","txdtm":"2024-02-29 23:59:59","pay_type":"800101",
			"mchid":"MCH01","udid":"pos-7","reason":"timeout","occurred_at":"2024-05-01T12:30:05.25+08:00",
			"extra":{"nested":[1,2,3]}}`,
		want: reversald.Event{
			EventID: "ev-1", OutTradeNo: "T-2024-0001", Syssn: "20240501000300020012345678",
			TxAmt: 123, TxCurrCd: "HKD", TxDtm: "2024-02-29 23:59:59", PayType: "800101",
			MchID: "MCH01", Udid: "pos-7", Reason: ReasonTimeout,
			OccurredAt: time.Date(2024, 5, 1, 4, 30, 5, 250_000_000, time.UTC),
		},
	},
	{
		name:  "nulls are absent",
		value: `{"event_id":null,"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","syssn":null,"mchid":null,"occurred_at":null}`,
		want:  reversald.Event{EventID: fallback, OutTradeNo: "T1", TxAmt: 1, TxDtm: "2024-05-01 12:30:00"},
	},
	{
		name:  "empty event_id uses fallback",
		value: `{"event_id":"","out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00"}`,
		want:  reversald.Event{EventID: fallback, OutTradeNo: "T1", TxAmt: 1, TxDtm: "2024-05-01 12:30:00"},
	},
	{
		name:  "max txamt 11 digits",
		value: `{"out_trade_no":"T1","txamt":99999999999,"txdtm":"2024-05-01 12:30:00"}`,
		want:  reversald.Event{EventID: fallback, OutTradeNo: "T1", TxAmt: 99999999999, TxDtm: "2024-05-01 12:30:00"},
	},
	{
		name:  "limits counted in bytes: 128 ascii out_trade_no",
		value: `{"out_trade_no":"` + strings.Repeat("a", 128) + `","txamt":1,"txdtm":"2024-05-01 12:30:00","mchid":"` + strings.Repeat("m", 16) + `"}`,
		want:  reversald.Event{EventID: fallback, OutTradeNo: strings.Repeat("a", 128), TxAmt: 1, TxDtm: "2024-05-01 12:30:00", MchID: strings.Repeat("m", 16)},
	},
	{
		name:  "unknown reason kept",
		value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","reason":"printer on fire"}`,
		want:  reversald.Event{EventID: fallback, OutTradeNo: "T1", TxAmt: 1, TxDtm: "2024-05-01 12:30:00", Reason: "printer on fire"},
	},
	{
		name:  "leading whitespace",
		value: " \n\t" + minimal + "\n",
		want:  reversald.Event{EventID: fallback, OutTradeNo: "T1", TxAmt: 2500, TxDtm: "2024-05-01 12:30:00"},
	},

	// Rejections.
	{name: "empty value", value: ``, probs: []string{"value must be a JSON object"}},
	{name: "json null", value: `null`, probs: []string{"value must be a JSON object"}},
	{name: "json array", value: `[1]`, probs: []string{"value must be a JSON object"}},
	{name: "json string", value: `"x"`, probs: []string{"value must be a JSON object"}},
	{name: "truncated json", value: `{"out_trade_no":"T1"`, probs: []string{"value is not valid JSON: unexpected end of JSON input at byte 20"}},
	{name: "trailing garbage", value: minimal + `x`, probs: []string{"value is not valid JSON: invalid character 'x' after top-level value at byte 65"}},
	{name: "invalid utf8", value: "{\"out_trade_no\":\"T\xff\"}", probs: []string{"value is not valid UTF-8"}},
	{
		name:  "empty object names every required field",
		value: `{}`,
		probs: []string{"out_trade_no is required", "txamt is required", "txdtm is required"},
	},
	{
		name:  "the example from the brief",
		value: `{"txamt":"abc","txdtm":"2024-05-01 12:30:00"}`,
		probs: []string{"out_trade_no is required", `txamt must be a positive integer of at most 11 digits, got "abc"`},
	},
	{name: "txamt float", value: `{"out_trade_no":"T1","txamt":25.5,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt must be a positive integer of at most 11 digits, got 25.5"}},
	{name: "txamt float zero fraction", value: `{"out_trade_no":"T1","txamt":25.0,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt must be a positive integer of at most 11 digits, got 25.0"}},
	{name: "txamt exponent", value: `{"out_trade_no":"T1","txamt":1e3,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt must be a positive integer of at most 11 digits, got 1e3"}},
	{name: "txamt exponent string", value: `{"out_trade_no":"T1","txamt":"1E3","txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txamt must be a positive integer of at most 11 digits, got "1E3"`}},
	{name: "txamt negative", value: `{"out_trade_no":"T1","txamt":-5,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt must be a positive integer of at most 11 digits, got -5"}},
	{name: "txamt zero", value: `{"out_trade_no":"T1","txamt":0,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt must be a positive integer of at most 11 digits, got 0"}},
	{name: "txamt zero string", value: `{"out_trade_no":"T1","txamt":"0","txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txamt must be a positive integer of at most 11 digits, got "0"`}},
	{name: "txamt leading plus", value: `{"out_trade_no":"T1","txamt":"+5","txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txamt must be a positive integer of at most 11 digits, got "+5"`}},
	{name: "txamt leading zero", value: `{"out_trade_no":"T1","txamt":"007","txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txamt must be a positive integer of at most 11 digits, got "007"`}},
	{name: "txamt padded string", value: `{"out_trade_no":"T1","txamt":" 5","txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txamt must be a positive integer of at most 11 digits, got " 5"`}},
	{name: "txamt 12 digits", value: `{"out_trade_no":"T1","txamt":100000000000,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt must be a positive integer of at most 11 digits, got 100000000000"}},
	{name: "txamt bool", value: `{"out_trade_no":"T1","txamt":true,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txamt must be a positive integer of at most 11 digits, got boolean "true"`}},
	{name: "txamt null", value: `{"out_trade_no":"T1","txamt":null,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"txamt is required"}},
	{
		name:  "txamt huge number truncated in message",
		value: `{"out_trade_no":"T1","txamt":` + strings.Repeat("9", 500) + `,"txdtm":"2024-05-01 12:30:00"}`,
		probs: []string{"txamt must be a positive integer of at most 11 digits, got " + strings.Repeat("9", 40) + "…"},
	},
	{name: "out_trade_no number", value: `{"out_trade_no":123,"txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`out_trade_no must be a string, got number "123"`}},
	{name: "out_trade_no empty", value: `{"out_trade_no":"","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"out_trade_no is required"}},
	{
		name:  "out_trade_no 129 bytes",
		value: `{"out_trade_no":"` + strings.Repeat("a", 129) + `","txamt":1,"txdtm":"2024-05-01 12:30:00"}`,
		probs: []string{"out_trade_no must be at most 128 bytes, got 129"},
	},
	{
		name:  "out_trade_no 43 chars of 3 bytes is 129 bytes",
		value: `{"out_trade_no":"` + strings.Repeat("訂", 43) + `","txamt":1,"txdtm":"2024-05-01 12:30:00"}`,
		probs: []string{"out_trade_no must be at most 128 bytes, got 129"},
	},
	{name: "out_trade_no control", value: `{"out_trade_no":"T\u00001","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`out_trade_no must not contain control characters, got "T\x001"`}},
	{name: "out_trade_no newline", value: `{"out_trade_no":"T\n","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`out_trade_no must not contain control characters, got "T\n"`}},
	{name: "out_trade_no lone surrogate", value: `{"out_trade_no":"T\ud800","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`out_trade_no must be valid UTF-8 text, got "T�"`}},
	{name: "mchid control", value: `{"out_trade_no":"T1","mchid":"M\u007f","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`mchid must not contain control characters, got "M\x7f"`}},
	{name: "mchid 17 bytes", value: `{"out_trade_no":"T1","mchid":"` + strings.Repeat("m", 17) + `","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"mchid must be at most 16 bytes, got 17"}},
	{name: "syssn 41 bytes", value: `{"out_trade_no":"T1","syssn":"` + strings.Repeat("1", 41) + `","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"syssn must be at most 40 bytes, got 41"}},
	{name: "udid 41 bytes", value: `{"out_trade_no":"T1","udid":"` + strings.Repeat("u", 41) + `","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"udid must be at most 40 bytes, got 41"}},
	{name: "reason 65 bytes", value: `{"out_trade_no":"T1","reason":"` + strings.Repeat("r", 65) + `","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"reason must be at most 64 bytes, got 65"}},
	{name: "event_id 129 bytes", value: `{"event_id":"` + strings.Repeat("e", 129) + `","out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{"event_id must be at most 128 bytes, got 129"}},
	{name: "event_id number", value: `{"event_id":7,"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`event_id must be a string, got number "7"`}},
	{name: "txcurrcd lower", value: `{"out_trade_no":"T1","txcurrcd":"hkd","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txcurrcd must be an ISO 4217 code of 3 upper-case letters, got "hkd"`}},
	{name: "txcurrcd long", value: `{"out_trade_no":"T1","txcurrcd":"HKDD","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txcurrcd must be an ISO 4217 code of 3 upper-case letters, got "HKDD"`}},
	{name: "txcurrcd numeric code", value: `{"out_trade_no":"T1","txcurrcd":344,"txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`txcurrcd must be a string, got number "344"`}},
	{name: "pay_type 5 digits", value: `{"out_trade_no":"T1","pay_type":"80010","txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`pay_type must be exactly 6 digits, got "80010"`}},
	{name: "pay_type number", value: `{"out_trade_no":"T1","pay_type":800101,"txamt":1,"txdtm":"2024-05-01 12:30:00"}`, probs: []string{`pay_type must be a string, got number "800101"`}},
	{name: "txdtm iso T", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01T12:30:00"}`, probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "2024-05-01T12:30:00"`}},
	{name: "txdtm feb 29 non leap", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2023-02-29 12:30:00"}`, probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "2023-02-29 12:30:00"`}},
	{name: "txdtm hour 24", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 24:00:00"}`, probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "2024-05-01 24:00:00"`}},
	{name: "txdtm one digit hour", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 1:30:00"}`, probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "2024-05-01 1:30:00"`}},
	{name: "txdtm fraction", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00.5"}`, probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "2024-05-01 12:30:00.5"`}},
	{name: "txdtm number", value: `{"out_trade_no":"T1","txamt":1,"txdtm":20240501}`, probs: []string{`txdtm must be a string, got number "20240501"`}},
	{name: "occurred_at not rfc3339", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","occurred_at":"2024-05-01 12:30:00"}`, probs: []string{`occurred_at must be an RFC 3339 time, got "2024-05-01 12:30:00"`}},
	{name: "occurred_at number", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","occurred_at":1714566600}`, probs: []string{`occurred_at must be a string, got number "1714566600"`}},
	{name: "occurred_at one digit hour", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","occurred_at":"2024-01-01T0:00:00+01:00"}`, probs: []string{`occurred_at must be an RFC 3339 time, got "2024-01-01T0:00:00+01:00"`}},
	{name: "occurred_at year 0", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","occurred_at":"0000-01-01T00:00:00+01:00"}`, probs: []string{`occurred_at must be an RFC 3339 time, got "0000-01-01T00:00:00+01:00"`}},
	{name: "occurred_at past 9999 in utc", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","occurred_at":"9999-12-31T23:59:59-01:00"}`, probs: []string{`occurred_at must be an RFC 3339 time, got "9999-12-31T23:59:59-01:00"`}},
	{name: "txdtm year 0", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"0000-01-01 00:00:00"}`, probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "0000-01-01 00:00:00"`}},
	{name: "reason nul", value: `{"out_trade_no":"T1","txamt":1,"txdtm":"2024-05-01 12:30:00","reason":"a\u0000"}`, probs: []string{`reason must not contain control characters, got "a\x00"`}},
	{
		name:  "every violation at once",
		value: `{"event_id":[],"out_trade_no":"` + strings.Repeat("x", 200) + `","syssn":{},"txamt":"abc","txcurrcd":"usd","txdtm":"yesterday","pay_type":"abc","mchid":false,"udid":1,"reason":2,"occurred_at":"now"}`,
		probs: []string{
			`event_id must be a string, got array "[]"`,
			"out_trade_no must be at most 128 bytes, got 200",
			`syssn must be a string, got object "{}"`,
			`txamt must be a positive integer of at most 11 digits, got "abc"`,
			`txcurrcd must be an ISO 4217 code of 3 upper-case letters, got "usd"`,
			`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "yesterday"`,
			`pay_type must be exactly 6 digits, got "abc"`,
			`mchid must be a string, got boolean "false"`,
			`udid must be a string, got number "1"`,
			`reason must be a string, got number "2"`,
			`occurred_at must be an RFC 3339 time, got "now"`,
		},
	},
	{
		name:  "long string value quoted short",
		value: `{"out_trade_no":"T1","txamt":1,"txdtm":"` + strings.Repeat("9", 100) + `"}`,
		probs: []string{`txdtm must be a real time as YYYY-MM-DD hh:mm:ss, got "` + strings.Repeat("9", 40) + `"…`},
	},
}

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeEvent([]byte(tc.value), fallback)
			if len(tc.probs) == 0 {
				if err != nil {
					t.Fatalf("DecodeEvent: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("DecodeEvent:\n got %+v\nwant %+v", got, tc.want)
				}
				return
			}
			var inv *InvalidEventError
			if !errors.As(err, &inv) {
				t.Fatalf("DecodeEvent error = %v (%T), want *InvalidEventError", err, err)
			}
			if !reflect.DeepEqual(inv.Problems, tc.probs) {
				t.Fatalf("problems:\n got %q\nwant %q", inv.Problems, tc.probs)
			}
			if !reflect.DeepEqual(got, reversald.Event{}) {
				t.Fatalf("rejected event returned non-zero Event %+v", got)
			}
		})
	}
}

func TestDecodeEventTooLarge(t *testing.T) {
	t.Parallel()
	pad := strings.Repeat("p", MaxEventBytes)
	_, err := DecodeEvent([]byte(`{"pad":"`+pad+`",`+minimal[1:]), fallback)
	var inv *InvalidEventError
	if !errors.As(err, &inv) || len(inv.Problems) != 1 || !strings.HasPrefix(inv.Problems[0], "value is 65609 bytes, more than the 65536 allowed") {
		t.Fatalf("DecodeEvent(huge) error = %v", err)
	}
}

func TestInvalidEventErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := DecodeEvent([]byte(`{"txamt":"abc","txdtm":"2024-05-01 12:30:00"}`), fallback)
	want := `invalid event: out_trade_no is required; txamt must be a positive integer of at most 11 digits, got "abc"`
	if err == nil || err.Error() != want {
		t.Fatalf("Error() = %v, want %s", err, want)
	}
}

// FuzzDecodeEvent checks that DecodeEvent never panics, that every rejection names at least one
// problem and stays short, and that an accepted event survives a JSON round trip unchanged.
func FuzzDecodeEvent(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.value))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		ev, err := DecodeEvent(value, fallback)
		if err != nil {
			var inv *InvalidEventError
			if !errors.As(err, &inv) {
				t.Fatalf("error %v is %T, want *InvalidEventError", err, err)
			}
			if len(inv.Problems) == 0 {
				t.Fatalf("rejection without problems")
			}
			for _, p := range inv.Problems {
				if len(p) > 200 {
					t.Fatalf("problem too long (%d bytes): %q", len(p), p)
				}
			}
			return
		}
		if ev.EventID == "" || ev.OutTradeNo == "" || ev.TxAmt <= 0 || ev.TxDtm == "" {
			t.Fatalf("accepted event misses a required field: %+v", ev)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal accepted event: %v", err)
		}
		ev2, err := DecodeEvent(again, "other/0/0")
		if err != nil {
			t.Fatalf("re-decode %s: %v", again, err)
		}
		if !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("round trip changed the event:\n first %+v\nsecond %+v", ev, ev2)
		}
	})
}

// FuzzUnquote: unquote gives what json.Unmarshal gives for every JSON string
// token, escaped or not.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`""`, `"abc"`, `"a\"b"`, `"\u00e9\n"`, `"é"`, `"\ud800"`, `"\\"`, `"x\/y"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, r []byte) {
		var want string
		if !utf8.Valid(r) || json.Unmarshal(r, &want) != nil || len(r) == 0 || r[0] != '"' {
			return // not a JSON string: DecodeEvent never asks
		}
		got, err := unquote(r)
		if err != nil || got != want {
			t.Fatalf("unquote(%q) = %q, %v; json.Unmarshal gives %q", r, got, err, want)
		}
	})
}
