package reversald_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/reversald/reversald"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestOutcomeGolden(t *testing.T) {
	t.Parallel()
	hk := time.FixedZone("HKT", 8*3600)
	rec := reversald.Outcome{
		EventID:       "ev-1",
		OutTradeNo:    "T-2024-0001",
		MchID:         "MCH01",
		Syssn:         "20240501000300020012345678",
		CancelSyssn:   "20240501000300020012345999",
		Status:        "reversed",
		Method:        "reversal",
		Respcd:        "0000",
		Resperr:       "",
		Respmsg:       "",
		TxAmt:         2500,
		TxCurrCd:      "HKD",
		QFPayTxAmt:    2500,
		QFPayTxCurrCd: "HKD",
		GatewayCalls:  3,
		FirstSeenAt:   time.Date(2024, 5, 1, 12, 30, 5, 0, hk),
		DecidedAt:     time.Date(2024, 5, 1, 12, 30, 6, 250_000_000, hk),
		Reason:        "QFPay confirms the reversal; nothing was charged.",
	}
	got, err := json.MarshalIndent(rec.Published(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "outcome.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test . -run TestOutcomeGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("outcome JSON differs from %s:\n got %s\nwant %s", path, got, want)
	}
}

func TestPublishedNamesTheMethod(t *testing.T) {
	t.Parallel()
	o := reversald.Outcome{Status: reversald.StatusNotPaid}.Published()
	if o.Method != reversald.MethodNone || o.Status != reversald.StatusNotPaid || o.SchemaVersion != reversald.SchemaVersion {
		t.Fatalf("Published = %+v", o)
	}
}
