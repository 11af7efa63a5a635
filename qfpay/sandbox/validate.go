package sandbox

// This file checks the fields of a call as QFPay would, with the sandbox's own
// copy of QFPay's field limits and layouts (never package qfpay's).

import (
	"strconv"
	"strings"
	"time"
)

// invalidField checks the fields as QFPay would and returns the first bad one
// and why ("" when all are good).
func invalidField(endpoint string, f map[string]string) (field, reason string) {
	if v := f["mchid"]; len(v) > 16 {
		return "mchid", "longer than 16"
	}
	if endpoint == epQuery {
		for _, name := range []string{"out_trade_no", "syssn"} {
			max := 128
			if name == "syssn" {
				max = 40
			}
			if v := f[name]; v != "" {
				for x := range strings.SplitSeq(v, ",") {
					if x == "" || len(x) > max {
						return name, "empty or longer than " + strconv.Itoa(max)
					}
				}
			}
		}
		for _, name := range []string{"start_time", "end_time"} {
			if v := f[name]; v != "" && !isDtm(v) {
				return name, "want YYYY-MM-DD hh:mm:ss"
			}
		}
		if _, ok := parseZone(f["txzone"]); f["txzone"] != "" && !ok {
			return "txzone", "want +hhmm or -hhmm, e.g. +0800"
		}
		return "", ""
	}
	if f["syssn"] == "" && f["out_trade_no"] == "" {
		return "out_trade_no", "syssn or out_trade_no is required"
	}
	if len(f["syssn"]) > 40 {
		return "syssn", "longer than 40"
	}
	if len(f["out_trade_no"]) > 128 {
		return "out_trade_no", "longer than 128"
	}
	if v := f["txamt"]; v == "" || len(v) > 11 || !isDigits(v, len(v)) || strings.Trim(v, "0") == "" {
		return "txamt", "want a positive integer of at most 11 digits"
	}
	if !isDtm(f["txdtm"]) {
		return "txdtm", "want YYYY-MM-DD hh:mm:ss"
	}
	if len(f["udid"]) > 40 {
		return "udid", "longer than 40"
	}
	return "", ""
}

// isDtm reports whether s is a date and time as YYYY-MM-DD hh:mm:ss.
func isDtm(s string) bool {
	if len(s) != len(dtmLayout) {
		return false
	}
	_, err := time.Parse(dtmLayout, s)
	return err == nil
}
