package qfpay

import (
	"strconv"
	"strings"
	"testing"
)

func TestMaxTxAmtIsMaxTxAmtDigitsNines(t *testing.T) {
	t.Parallel()
	if s := strconv.FormatInt(MaxTxAmt, 10); s != strings.Repeat("9", MaxTxAmtDigits) {
		t.Fatalf("MaxTxAmt = %s, want %d nines", s, MaxTxAmtDigits)
	}
}
