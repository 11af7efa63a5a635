package qfpay

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// QueryRequest asks for the state of one or more transactions. OutTradeNo and
// Syssn may each be comma-separated lists; at least one must be set. MchID
// defaults to Config.MchID. StartTime/EndTime ("YYYY-MM-DD hh:mm:ss") widen
// the search beyond QFPay's default of the current month.
type QueryRequest struct {
	MchID      string
	OutTradeNo string
	Syssn      string
	StartTime  string
	EndTime    string
	// TxZone is the time zone of StartTime/EndTime, like "+0800"; empty
	// leaves it out and QFPay assumes UTC+8.
	TxZone string
}

// CancelRequest is the body of a reversal or close (QFPAY.md §2). One of Syssn
// and OutTradeNo is required; TxAmt (minor units) and TxDtm (the original
// transaction time, "YYYY-MM-DD hh:mm:ss") are required. MchID defaults to
// Config.MchID.
type CancelRequest struct {
	MchID      string
	Syssn      string
	OutTradeNo string
	TxAmt      int64
	TxDtm      string
	Udid       string
}

// key is what errors are wrapped with: the merchant's order number when known.
func (r CancelRequest) key() string {
	if r.OutTradeNo != "" {
		return r.OutTradeNo
	}
	return "syssn " + r.Syssn
}

func (r QueryRequest) key() string {
	if r.OutTradeNo != "" {
		return r.OutTradeNo
	}
	return "syssn " + r.Syssn
}

// Validate checks the request as QFPay would and names the first bad field.
func (r QueryRequest) Validate() error {
	if err := checkMchID(r.MchID); err != nil {
		return err
	}
	if r.OutTradeNo == "" && r.Syssn == "" {
		return &ValidationError{Field: "out_trade_no", Reason: "syssn or out_trade_no is required"}
	}
	if r.OutTradeNo != "" {
		for v := range strings.SplitSeq(r.OutTradeNo, ",") {
			if err := checkText("out_trade_no", v, MaxOutTradeNoBytes, true); err != nil {
				return err
			}
		}
	}
	if r.Syssn != "" {
		for v := range strings.SplitSeq(r.Syssn, ",") {
			if err := checkText("syssn", v, MaxSyssnBytes, true); err != nil {
				return err
			}
		}
	}
	if r.StartTime != "" && !isTxDtm(r.StartTime) {
		return &ValidationError{Field: "start_time", Reason: "must be YYYY-MM-DD hh:mm:ss"}
	}
	if r.EndTime != "" && !isTxDtm(r.EndTime) {
		return &ValidationError{Field: "end_time", Reason: "must be YYYY-MM-DD hh:mm:ss"}
	}
	if r.TxZone != "" && !IsTxZone(r.TxZone) {
		return &ValidationError{Field: "txzone", Reason: "must be a UTC offset like +0800"}
	}
	if r.StartTime != "" && r.EndTime != "" && r.EndTime < r.StartTime {
		return &ValidationError{Field: "end_time", Reason: "is before start_time"}
	}
	// QFPay answers 1150 to a range across a calendar month (QFPAY.md §3).
	if r.StartTime != "" && r.EndTime != "" && r.StartTime[:7] != r.EndTime[:7] {
		return &ValidationError{Field: "end_time", Reason: "is not in the calendar month of start_time"}
	}
	return nil
}

// Validate checks the request as QFPay would and names the first bad field.
func (r CancelRequest) Validate() error {
	if err := checkMchID(r.MchID); err != nil {
		return err
	}
	if r.OutTradeNo == "" && r.Syssn == "" {
		return &ValidationError{Field: "out_trade_no", Reason: "syssn or out_trade_no is required"}
	}
	if r.Syssn != "" {
		if err := checkText("syssn", r.Syssn, MaxSyssnBytes, false); err != nil {
			return err
		}
	}
	if r.OutTradeNo != "" {
		if err := checkText("out_trade_no", r.OutTradeNo, MaxOutTradeNoBytes, false); err != nil {
			return err
		}
	}
	if r.TxAmt <= 0 {
		return &ValidationError{Field: "txamt", Reason: "must be a positive amount in minor units"}
	}
	if r.TxAmt > MaxTxAmt {
		return &ValidationError{Field: "txamt", Reason: "must have at most " + strconv.Itoa(MaxTxAmtDigits) + " digits"}
	}
	if r.TxDtm == "" {
		return &ValidationError{Field: "txdtm", Reason: "is required"}
	}
	if !isTxDtm(r.TxDtm) {
		return &ValidationError{Field: "txdtm", Reason: "must be YYYY-MM-DD hh:mm:ss"}
	}
	if r.Udid != "" {
		if err := checkText("udid", r.Udid, MaxUdidBytes, false); err != nil {
			return err
		}
	}
	return nil
}

func checkMchID(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxMchIDBytes {
		return &ValidationError{Field: "mchid", Reason: "longer than " + strconv.Itoa(MaxMchIDBytes) + " characters"}
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return &ValidationError{Field: "mchid", Reason: "must be letters and digits"}
		}
	}
	return nil
}

// checkText accepts printable UTF-8 up to max bytes. A comma is refused: it
// separates the lists of a query, so an order number holding one could not be
// queried. In a list (inList) an empty element is refused too.
func checkText(field, s string, max int, inList bool) error {
	switch {
	case s == "" && inList:
		return &ValidationError{Field: field, Reason: "has an empty list element"}
	case len(s) > max:
		return &ValidationError{Field: field, Reason: "longer than " + strconv.Itoa(max) + " bytes"}
	case !utf8.ValidString(s):
		return &ValidationError{Field: field, Reason: "is not valid utf-8"}
	case strings.ContainsRune(s, ','):
		return &ValidationError{Field: field, Reason: "must not contain a comma"}
	}
	if s != strings.TrimSpace(s) {
		return &ValidationError{Field: field, Reason: "has surrounding spaces"}
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return &ValidationError{Field: field, Reason: "has control characters"}
		}
	}
	return nil
}

func parseTxDtm(s string) (time.Time, error) { return time.Parse(TxDtmLayout, s) }

// isTxDtm checks "YYYY-MM-DD hh:mm:ss" exactly (zero-padded) and a real date.
func isTxDtm(s string) bool {
	if len(s) != len(TxDtmLayout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 4, 7:
			if s[i] != '-' {
				return false
			}
		case 10:
			if s[i] != ' ' {
				return false
			}
		case 13, 16:
			if s[i] != ':' {
				return false
			}
		default:
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
	}
	_, err := parseTxDtm(s)
	return err == nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// IsTxZone reports whether s is a UTC offset the way QFPay writes txzone:
// a sign and four digits, like +0800.
func IsTxZone(s string) bool {
	if len(s) != 5 || (s[0] != '+' && s[0] != '-') {
		return false
	}
	for i := 1; i < 5; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s[1:3] <= "14" && s[3:5] <= "59"
}
