package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// attempts runs the ops commands: list, show, retry. They need only the
// database.
func attempts(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"attempts: list, show ID or retry ID\n" + usage}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "show", "retry":
	default:
		return usageError{fmt.Sprintf("attempts: unknown command %q", sub)}
	}
	// Flags and arguments first: -h and a mistake need no database.
	fs := flag.NewFlagSet("attempts "+sub, flag.ContinueOnError)
	var flagHelp strings.Builder
	fs.SetOutput(&flagHelp)
	var status *string
	var limit *int
	if sub == "list" {
		status = fs.String("status", "", "only attempts with this status (pending, needs_review, reversed, ...)")
		limit = fs.Int("limit", 50, "at most this many")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "usage: reversald attempts %s\n", map[string]string{"list": "list [flags]", "show": "show ID", "retry": "retry ID"}[sub])
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return usageError{"attempts " + sub + ": " + err.Error()}
	}
	args = fs.Args()
	var id int64
	if sub != "list" {
		if len(args) != 1 {
			return usageError{fmt.Sprintf("attempts %s takes one attempt ID", sub)}
		}
		var err error
		if id, err = strconv.ParseInt(args[0], 10, 64); err != nil {
			return usageError{fmt.Sprintf("attempts %s: %q is not an attempt ID", sub, args[0])}
		}
	}
	url, err := databaseURL(lookup)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "list":
		list, err := st.List(ctx, reversald.Status(*status), *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tMCHID\tOUT_TRADE_NO\tSTATUS\tSTEP\tCALLS\tUPDATED\tREASON")
		for _, a := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, a.MchID, a.OutTradeNo, a.Status, a.Step,
				a.GatewayCalls, a.UpdatedAt.UTC().Format(time.RFC3339), a.Reason)
		}
		return tw.Flush()
	case "show", "retry":
		if sub == "retry" {
			if err := st.Retry(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "attempt %d will be re-driven from a fresh query\n", id)
			return nil
		}
		h, err := st.History(ctx, id)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(historyView(h))
	}
	return usageError{fmt.Sprintf("attempts: unknown command %q", sub)}
}

// historyView is History with raw responses as text, for people.
func historyView(h store.History) any {
	type call struct {
		store.CallRecord
		Response string
		Latency  string
	}
	calls := make([]call, len(h.Calls))
	for i, c := range h.Calls {
		calls[i] = call{CallRecord: c, Response: string(c.Response), Latency: c.Latency.String()}
		calls[i].CallRecord.Response = nil
	}
	return struct {
		Attempt  reversald.Attempt
		Events   []store.EventRecord
		Calls    []call
		Outcomes []store.OutboxRecord
	}{h.Attempt, h.Events, calls, h.Outcomes}
}
