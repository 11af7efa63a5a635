package qfpay

import (
	"errors"
	"strings"
	"testing"
)

func validCancel() CancelRequest {
	return CancelRequest{MchID: "MNxMp11FV35qQN", OutTradeNo: "4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ", TxAmt: 2500, TxDtm: "2020-03-05 16:50:30"}
}

func TestCancelRequestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(*CancelRequest)
		field string // "" = valid
	}{
		{"seed", func(*CancelRequest) {}, ""},
		{"syssn only", func(r *CancelRequest) { r.OutTradeNo, r.Syssn = "", "20200305066100020000976392" }, ""},
		{"udid", func(r *CancelRequest) { r.Udid = "pos-01" }, ""},
		{"non-ascii order", func(r *CancelRequest) { r.OutTradeNo = "訂單-1" }, ""},
		{"max amount", func(r *CancelRequest) { r.TxAmt = 99999999999 }, ""},
		{"neither number", func(r *CancelRequest) { r.OutTradeNo, r.Syssn = "", "" }, "out_trade_no"},
		{"long out_trade_no", func(r *CancelRequest) { r.OutTradeNo = strings.Repeat("a", 129) }, "out_trade_no"},
		{"128 out_trade_no", func(r *CancelRequest) { r.OutTradeNo = strings.Repeat("a", 128) }, ""},
		{"comma", func(r *CancelRequest) { r.OutTradeNo = "a,b" }, "out_trade_no"},
		{"control", func(r *CancelRequest) { r.OutTradeNo = "a\nb" }, "out_trade_no"},
		{"spaces", func(r *CancelRequest) { r.OutTradeNo = " a" }, "out_trade_no"},
		{"bad utf8", func(r *CancelRequest) { r.OutTradeNo = "a\xff" }, "out_trade_no"},
		{"long syssn", func(r *CancelRequest) { r.Syssn = strings.Repeat("1", 41) }, "syssn"},
		{"zero amount", func(r *CancelRequest) { r.TxAmt = 0 }, "txamt"},
		{"negative amount", func(r *CancelRequest) { r.TxAmt = -1 }, "txamt"},
		{"12 digits", func(r *CancelRequest) { r.TxAmt = 100000000000 }, "txamt"},
		{"no txdtm", func(r *CancelRequest) { r.TxDtm = "" }, "txdtm"},
		{"iso txdtm", func(r *CancelRequest) { r.TxDtm = "2020-03-05T16:50:30" }, "txdtm"},
		{"unpadded txdtm", func(r *CancelRequest) { r.TxDtm = "2020-3-5 6:50:30" }, "txdtm"},
		{"impossible date", func(r *CancelRequest) { r.TxDtm = "2020-02-30 16:50:30" }, "txdtm"},
		{"hour 24", func(r *CancelRequest) { r.TxDtm = "2020-03-05 24:00:00" }, "txdtm"},
		{"zone", func(r *CancelRequest) { r.TxDtm = "2020-03-05 16:50:30Z" }, "txdtm"},
		{"long mchid", func(r *CancelRequest) { r.MchID = strings.Repeat("M", 17) }, "mchid"},
		{"mchid symbols", func(r *CancelRequest) { r.MchID = "MN-1" }, "mchid"},
		{"long udid", func(r *CancelRequest) { r.Udid = strings.Repeat("u", 41) }, "udid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := validCancel()
			tt.edit(&r)
			err := r.Validate()
			var ve *ValidationError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
				t.Fatalf("Validate = %v, want a ValidationError on %s", err, tt.field)
			case tt.field != "" && !strings.Contains(err.Error(), tt.field):
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
		})
	}
}

func TestQueryRequestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		req   QueryRequest
		field string
	}{
		{QueryRequest{OutTradeNo: "A"}, ""},
		{QueryRequest{OutTradeNo: "A,B", Syssn: "1,2"}, ""},
		{QueryRequest{Syssn: "1", StartTime: "2020-03-01 00:00:00", EndTime: "2020-03-31 23:59:59"}, ""},
		{QueryRequest{}, "out_trade_no"},
		{QueryRequest{OutTradeNo: "A,"}, "out_trade_no"},
		{QueryRequest{Syssn: strings.Repeat("1", 41)}, "syssn"},
		{QueryRequest{OutTradeNo: "A", StartTime: "2020-03-01"}, "start_time"},
		{QueryRequest{OutTradeNo: "A", EndTime: "yesterday"}, "end_time"},
		{QueryRequest{OutTradeNo: "A", StartTime: "2020-03-02 00:00:00", EndTime: "2020-03-01 00:00:00"}, "end_time"},
		{QueryRequest{OutTradeNo: "A", StartTime: "2020-02-28 00:00:00", EndTime: "2020-03-01 00:00:00"}, "end_time"}, // across a month
		{QueryRequest{OutTradeNo: "A", MchID: "bad mchid"}, "mchid"},
	}
	for _, tt := range tests {
		err := tt.req.Validate()
		var ve *ValidationError
		if tt.field == "" && err != nil || tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field) {
			t.Errorf("%+v: Validate = %v, want field %q", tt.req, err, tt.field)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{BaseURL: "http://127.0.0.1:1", AppCode: "A", ClientKey: NewKey("k")}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Config{BaseURL: "ftp://x", MchID: "toolongmchid123456789", SignType: "SHA1", Timeout: -1,
		Routes: Routes{ByPayType: map[string]Method{"1": "x"}}}
	err := bad.Validate()
	for _, want := range []string{"base url", "app code", "client key", "mchid", "sign type", "timeout", "route"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to name %s", err, want)
		}
	}
	if _, err := New(bad); err == nil {
		t.Error("New accepted a bad config")
	}
}
