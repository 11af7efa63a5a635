package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// TestOpsCommands drives migrate and attempts list|show|retry through run,
// as an operator would, on a real database.
func TestOpsCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.URL(t)
	env := envconfig.MapLookuper(map[string]string{"DATABASE_URL": url})
	cmd := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(ctx, args, env, &out, io.Discard)
		return out.String(), err
	}
	if out, err := cmd("migrate"); err != nil || !strings.Contains(out, "migrations applied") {
		t.Fatalf("migrate: %q, %v", out, err)
	}

	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	res, err := st.Intake(ctx, []reversald.Event{{EventID: "ops-1", MchID: "M1", OutTradeNo: "OPS-1", TxAmt: 100, TxDtm: "2026-11-22 10:00:00"}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.NewAttempts[0]
	got, err := st.Claim(ctx, store.Claim{Owner: "t", Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	a := got[0]
	a.Status, a.Step, a.Respcd, a.Reason = reversald.StatusNeedsReview, reversald.StepDone, "1108", "query refused: respcd 1108"
	call := reversald.Call{Step: "query", Endpoint: "query", AppCode: "APPOPS", Request: map[string]string{"out_trade_no": "OPS-1"}, HTTPStatus: 200, Respcd: "1108", Response: []byte(`{"respcd":"1108"}`), At: time.Now()}
	if err := st.WriteStep(ctx, store.Step{Attempt: a, Calls: []reversald.Call{call}}); err != nil {
		t.Fatal(err)
	}

	out, err := cmd("attempts", "list", "-status", "needs_review")
	if err != nil || !strings.Contains(out, "OPS-1") || !strings.Contains(out, "needs_review") {
		t.Fatalf("attempts list: %q, %v", out, err)
	}
	out, err = cmd("attempts", "show", fmt.Sprint(id))
	if err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Attempt struct{ Status string }
		Calls   []struct {
			Endpoint, Response string
			AppCode            string `json:"app_code"`
		} `json:"gateway_calls"`
		Events []struct {
			EventID string `json:"event_id"`
		}
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("attempts show is not JSON: %v\n%s", err, out)
	}
	if shown.Attempt.Status != "needs_review" || len(shown.Calls) != 1 || shown.Calls[0].Response != `{"respcd":"1108"}` || shown.Calls[0].AppCode != "APPOPS" || len(shown.Events) != 1 {
		t.Errorf("attempts show: %+v", shown)
	}
	if out, err := cmd("attempts", "retry", "-note", "key rotated", "-by", "ops", fmt.Sprint(id)); err != nil || !strings.Contains(out, "re-driven") {
		t.Fatalf("attempts retry: %q, %v", out, err)
	}
	if b, _ := st.Get(ctx, id); b.Status != reversald.StatusPending || b.Step != reversald.StepQuery {
		t.Errorf("after retry: %s %s", b.Status, b.Step)
	}
	// A second retry is refused: the attempt is pending again.
	if out, err := cmd("attempts", "retry", "-note", "again", fmt.Sprint(id)); err == nil || !strings.Contains(out, "not in needs_review") {
		t.Errorf("second retry: %v\n%s", err, out)
	}
	if _, err := cmd("attempts", "show", "nope"); err == nil {
		t.Error("attempts show with a bad id was accepted")
	}
	if err := run(ctx, []string{"attempts", "list"}, envconfig.MapLookuper(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("attempts without DATABASE_URL: %v", err)
	}
}

// TestHelpAndVersionNeedNothing: --version exits 0, and a subcommand's -h
// lists its flags, with no database configured or reachable.
func TestHelpAndVersionNeedNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--version"}, nil},
		{[]string{"version"}, nil},
		{[]string{"attempts", "list", "-h"}, []string{"-status", "-method", "-mchid", "-out-trade-no", "-reason", "-first-seen-from",
			"-first-seen-to", "-decided-from", "-decided-to", "-sort", "-order", "-limit", "-after", "-all", "-format"}},
		{[]string{"attempts", "show", "-h"}, []string{"attempts show ID | MCHID/OUT_TRADE_NO"}},
		{[]string{"attempts", "retry", "-h"}, []string{"-note", "-by", "-dry-run", "-status", "-method", "-mchid", "-out-trade-no",
			"-reason", "-first-seen-from", "-first-seen-to", "-decided-from", "-decided-to"}},
		{[]string{"attempts", "resolve", "-h"}, []string{"-status", "-note", "-by", "-dry-run", "partially_refunded"}},
		{[]string{"purge", "-h"}, []string{"-older-than", "-batch", "-pause", "-dry-run"}},
		{[]string{"help"}, []string{"attempts resolve", "purge -older-than"}},
	} {
		var out, errw bytes.Buffer
		if err := run(context.Background(), tc.args, envconfig.MapLookuper(map[string]string{}), &out, &errw); err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if out.Len() == 0 {
			t.Errorf("%v printed nothing", tc.args)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, out.String())
			}
		}
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"attempts", "show", "x"}, envconfig.MapLookuper(map[string]string{}), &out, &out)
	var ue usageError
	if !errors.As(err, &ue) {
		t.Errorf("attempts show x: %v, want a usage error before any database", err)
	}
}
