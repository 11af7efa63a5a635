package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// The ops commands: attempts list|show|retry|resolve and purge. They need
// only the database. Flags and arguments are parsed, and every mistake in
// them reported as a usage error (exit 2), before any connection.

var attemptsUsage = map[string]string{
	"list":    "attempts list [filters] [-sort KEY] [-order asc|desc] [-limit N] [-after CURSOR] [-all] [-format table|json|csv]",
	"show":    "attempts show ID | MCHID/OUT_TRADE_NO",
	"retry":   "attempts retry (ID... | filters) -note TEXT [-by NAME] [-dry-run]",
	"resolve": "attempts resolve (ID | MCHID/OUT_TRADE_NO) -status S -note TEXT [-by NAME] [-dry-run]",
}

// opsCommand is one parsed ops command, ready to run against a store.
type opsCommand func(ctx context.Context, st *store.Store) error

// attempts runs the attempts subcommands.
func attempts(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"attempts: list, show, retry or resolve\n" + usage}
	}
	sub, args := args[0], args[1:]
	if _, ok := attemptsUsage[sub]; !ok {
		return usageError{fmt.Sprintf("attempts: unknown command %q (list, show, retry or resolve)", sub)}
	}
	fs := newFlagSet("attempts " + sub)
	var cmd func(args []string) (opsCommand, error)
	switch sub {
	case "list":
		cmd = listCommand(fs, stdout, stderr)
	case "show":
		cmd = showCommand(stdout)
	case "retry":
		cmd = retryCommand(fs, stdout)
	case "resolve":
		cmd = resolveCommand(fs, stdout)
	}
	return runOps(ctx, fs, attemptsUsage[sub], args, cmd, lookup, stdout)
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // -h prints to stdout below; errors are returned
	return fs
}

// runOps parses args into fs, builds the command, and runs it on a store
// opened from DATABASE_URL.
func runOps(ctx context.Context, fs *flag.FlagSet, synopsis string, args []string, build func(args []string) (opsCommand, error),
	lookup envconfig.Lookuper, stdout io.Writer,
) error {
	// Flags may come before, between and after the arguments
	// (attempts resolve ID -status paid); "--" ends the flags.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stdout, "usage: reversald %s\n", synopsis)
				n := 0
				fs.VisitAll(func(*flag.Flag) { n++ })
				if n > 0 {
					fmt.Fprint(stdout, "\nflags:\n")
					fs.SetOutput(stdout)
					fs.PrintDefaults()
				}
				return nil
			}
			return usageError{fs.Name() + ": " + err.Error() + "\nusage: reversald " + synopsis}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	cmd, err := build(positional)
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			return usageError{fs.Name() + ": " + u.msg + "\nusage: reversald " + synopsis}
		}
		return err
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
	return cmd(ctx, st)
}

// filterFlags are the filters list and retry share.
type filterFlags struct {
	statuses, methods                                  listFlag
	mchid, outTradeNo, reason                          *string
	firstSeenFrom, firstSeenTo, decidedFrom, decidedTo *string
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	f := &filterFlags{}
	fs.Var(&f.statuses, "status", "only attempts with this status; repeat or comma-separate for several ("+statusNames(reversald.Statuses)+")")
	fs.Var(&f.methods, "method", "only attempts cancelled by this method; repeat or comma-separate (reversal, close, none)")
	f.mchid = fs.String("mchid", "", "only this merchant's attempts")
	f.outTradeNo = fs.String("out-trade-no", "", "only the attempt for this out_trade_no")
	f.reason = fs.String("reason", "", "only attempts whose reason contains this text (case-insensitive)")
	f.firstSeenFrom = fs.String("first-seen-from", "", "only attempts first seen at or after this time (RFC 3339, or YYYY-MM-DD for midnight UTC)")
	f.firstSeenTo = fs.String("first-seen-to", "", "only attempts first seen before this time")
	f.decidedFrom = fs.String("decided-from", "", "only attempts decided at or after this time")
	f.decidedTo = fs.String("decided-to", "", "only attempts decided before this time")
	return f
}

// any reports whether any filter was given.
func (f *filterFlags) any() bool {
	return len(f.statuses) > 0 || len(f.methods) > 0 || *f.mchid != "" || *f.outTradeNo != "" || *f.reason != "" ||
		*f.firstSeenFrom != "" || *f.firstSeenTo != "" || *f.decidedFrom != "" || *f.decidedTo != ""
}

// filter builds the store's filter, every problem at once as a usage error.
func (f *filterFlags) filter() (store.Filter, error) {
	var (
		sf   store.Filter
		errs []string
	)
	for _, s := range f.statuses {
		sf.Statuses = append(sf.Statuses, reversald.Status(s))
	}
	for _, m := range f.methods {
		sf.Methods = append(sf.Methods, reversald.Method(m))
	}
	sf.MchID, sf.OutTradeNo, sf.Reason = *f.mchid, *f.outTradeNo, *f.reason
	for _, t := range []struct {
		name string
		text string
		to   *time.Time
	}{
		{"first-seen-from", *f.firstSeenFrom, &sf.FirstSeenFrom}, {"first-seen-to", *f.firstSeenTo, &sf.FirstSeenTo},
		{"decided-from", *f.decidedFrom, &sf.DecidedFrom}, {"decided-to", *f.decidedTo, &sf.DecidedTo},
	} {
		if t.text == "" {
			continue
		}
		v, err := parseTimeFlag(t.text, nil)
		if err != nil {
			errs = append(errs, fmt.Sprintf("-%s: %v", t.name, err))
			continue
		}
		*t.to = v
	}
	if err := sf.Validate(); err != nil {
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	if len(errs) > 0 {
		return sf, usageError{strings.Join(errs, "\n")}
	}
	return sf, nil
}

func statusNames(ss []reversald.Status) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func listCommand(fs *flag.FlagSet, stdout, stderr io.Writer) func(args []string) (opsCommand, error) {
	filters := addFilterFlags(fs)
	sortKey := fs.String("sort", string(store.SortUpdated), "order by id, first_seen_at, decided_at (decided attempts only) or updated_at; ties by id")
	order := fs.String("order", "desc", "asc or desc")
	limit := fs.Int("limit", 50, fmt.Sprintf("at most this many per page (1 to %d)", store.MaxPage))
	after := fs.String("after", "", "start after this cursor: the one the previous page printed on stderr (keyset paging)")
	all := fs.Bool("all", false, "every page, one after the other (for exports)")
	format := fs.String("format", "table", "table, json (one object per line) or csv")
	return func(args []string) (opsCommand, error) {
		if len(args) > 0 {
			return nil, usageError{fmt.Sprintf("unexpected argument %q", args[0])}
		}
		f, err := filters.filter()
		var errs []string
		if err != nil {
			errs = append(errs, err.Error())
		}
		p := store.Page{Sort: store.SortKey(*sortKey), Limit: *limit}
		switch *order {
		case "asc":
		case "desc":
			p.Desc = true
		default:
			errs = append(errs, fmt.Sprintf("-order must be asc or desc, got %q", *order))
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, strings.Split(err.Error(), "\n")...)
		} else if p.After, err = store.ParseCursor(*after, p.Sort); err != nil {
			errs = append(errs, "-after: "+err.Error())
		}
		var w rowWriter
		switch *format {
		case "table":
			w = newTableWriter(stdout)
		case "json":
			w = jsonLines{json.NewEncoder(stdout)}
		case "csv":
			w = newCSVWriter(stdout)
		default:
			errs = append(errs, fmt.Sprintf("-format must be table, json or csv, got %q", *format))
		}
		if len(errs) > 0 {
			return nil, usageError{strings.Join(errs, "\n")}
		}
		return func(ctx context.Context, st *store.Store) error {
			for {
				got, next, err := st.Search(ctx, f, p)
				if err != nil {
					return err
				}
				for _, a := range got {
					if err := w.write(a); err != nil {
						return err
					}
				}
				if next.IsZero() {
					return w.flush()
				}
				if !*all {
					if err := w.flush(); err != nil {
						return err
					}
					fmt.Fprintf(stderr, "more: add -after %s for the next page\n", next)
					return nil
				}
				p.After = next
			}
		}, nil
	}
}

// rowWriter writes attempts in one of list's formats.
type rowWriter interface {
	write(a reversald.Attempt) error
	flush() error
}

type tableWriter struct {
	tw     *tabwriter.Writer
	header bool
}

func newTableWriter(w io.Writer) *tableWriter {
	return &tableWriter{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
}

func (t *tableWriter) write(a reversald.Attempt) error {
	if !t.header {
		t.header = true
		fmt.Fprintln(t.tw, "ID\tMCHID\tOUT_TRADE_NO\tSTATUS\tSTEP\tMETHOD\tCALLS\tFIRST_SEEN\tDECIDED\tREASON")
	}
	_, err := fmt.Fprintf(t.tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.ID, a.MchID, a.OutTradeNo, a.Status, a.Step, a.Method,
		a.GatewayCalls, a.FirstSeenAt.UTC().Format(time.RFC3339), timeOrDash(a.DecidedAt), a.Reason)
	return err
}

func (t *tableWriter) flush() error {
	if !t.header {
		t.header = true
		fmt.Fprintln(t.tw, "no attempts match")
	}
	return t.tw.Flush()
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

type jsonLines struct{ enc *json.Encoder }

func (j jsonLines) write(a reversald.Attempt) error { return j.enc.Encode(newAttemptView(a)) }
func (j jsonLines) flush() error                    { return nil }

type csvWriter struct {
	w      *csv.Writer
	header bool
}

var csvColumns = []string{"id", "mchid", "out_trade_no", "status", "step", "method", "txamt", "txcurrcd", "syssn",
	"cancel_syssn", "respcd", "gateway_calls", "first_seen_at", "decided_at", "updated_at", "reason"}

func newCSVWriter(w io.Writer) *csvWriter { return &csvWriter{w: csv.NewWriter(w)} }

func (c *csvWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	return c.w.Write(csvColumns)
}

func (c *csvWriter) write(a reversald.Attempt) error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	decided := ""
	if !a.DecidedAt.IsZero() {
		decided = a.DecidedAt.UTC().Format(time.RFC3339Nano)
	}
	return c.w.Write([]string{strconv.FormatInt(a.ID, 10), a.MchID, a.OutTradeNo, string(a.Status), string(a.Step),
		string(a.Method), strconv.FormatInt(a.TxAmt, 10), a.TxCurrCd, a.Syssn, a.CancelSyssn, a.Respcd,
		strconv.Itoa(a.GatewayCalls), a.FirstSeenAt.UTC().Format(time.RFC3339Nano), decided,
		a.UpdatedAt.UTC().Format(time.RFC3339Nano), a.Reason})
}

func (c *csvWriter) flush() error {
	if err := c.writeHeader(); err != nil { // a header even when nothing matches
		return err
	}
	c.w.Flush()
	return c.w.Error()
}

// attemptRef is an attempt named on the command line: an id, or
// MCHID/OUT_TRADE_NO (MCHID may be empty: /OUT_TRADE_NO).
type attemptRef struct {
	id                int64
	mchid, outTradeNo string
}

func parseAttemptRef(s string) (attemptRef, error) {
	if mchid, otn, ok := strings.Cut(s, "/"); ok {
		if otn == "" {
			return attemptRef{}, usageError{fmt.Sprintf("%q names no out_trade_no: give ID or MCHID/OUT_TRADE_NO", s)}
		}
		return attemptRef{mchid: mchid, outTradeNo: otn}, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return attemptRef{}, usageError{fmt.Sprintf("%q is not an attempt ID or MCHID/OUT_TRADE_NO", s)}
	}
	return attemptRef{id: id}, nil
}

// resolve finds the attempt's id.
func (r attemptRef) resolve(ctx context.Context, st *store.Store) (int64, error) {
	if r.id != 0 {
		return r.id, nil
	}
	a, err := st.Find(ctx, r.mchid, r.outTradeNo)
	if err != nil {
		return 0, err
	}
	return a.ID, nil
}

func (r attemptRef) String() string {
	if r.id != 0 {
		return strconv.FormatInt(r.id, 10)
	}
	return r.mchid + "/" + r.outTradeNo
}

func oneRef(args []string) (attemptRef, error) {
	if len(args) != 1 {
		return attemptRef{}, usageError{"takes one attempt: ID or MCHID/OUT_TRADE_NO"}
	}
	return parseAttemptRef(args[0])
}

func showCommand(stdout io.Writer) func(args []string) (opsCommand, error) {
	return func(args []string) (opsCommand, error) {
		ref, err := oneRef(args)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, st *store.Store) error {
			id, err := ref.resolve(ctx, st)
			if err != nil {
				return err
			}
			h, err := st.History(ctx, id)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(newHistoryView(h))
		}, nil
	}
}

// operatorFlags are the flags of the commands that change an attempt by hand.
type operatorFlags struct {
	note, by *string
	dryRun   *bool
}

func addOperatorFlags(fs *flag.FlagSet, verb string) *operatorFlags {
	return &operatorFlags{
		note:   fs.String("note", "", "why (required): written to the attempt's audit trail"),
		by:     fs.String("by", "", "the operator, written to the audit trail (default: the OS user)"),
		dryRun: fs.Bool("dry-run", false, "print what it would "+verb+", change nothing"),
	}
}

func (o *operatorFlags) operator() (store.Operator, error) {
	var errs []string
	if strings.TrimSpace(*o.note) == "" {
		errs = append(errs, "-note is required: say why, for the audit trail")
	}
	name := strings.TrimSpace(*o.by)
	if name == "" {
		name = osUser()
	}
	if name == "" {
		errs = append(errs, "-by is required: the OS user is unknown")
	}
	if len(errs) > 0 {
		return store.Operator{}, usageError{strings.Join(errs, "\n")}
	}
	return store.Operator{Name: name, Note: strings.TrimSpace(*o.note)}, nil
}

func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func describeAttempt(a reversald.Attempt) string {
	s := fmt.Sprintf("attempt %d (%s/%s, %s", a.ID, a.MchID, a.OutTradeNo, a.Status)
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s + ")"
}

func retryCommand(fs *flag.FlagSet, stdout io.Writer) func(args []string) (opsCommand, error) {
	filters := addFilterFlags(fs)
	opf := addOperatorFlags(fs, "retry")
	return func(args []string) (opsCommand, error) {
		op, err := opf.operator()
		if err != nil {
			return nil, err
		}
		var refs []attemptRef
		for _, a := range args {
			r, err := parseAttemptRef(a)
			if err != nil {
				return nil, err
			}
			refs = append(refs, r)
		}
		var f store.Filter
		switch {
		case len(refs) > 0 && filters.any():
			return nil, usageError{"give attempt IDs or filters, not both"}
		case len(refs) == 0 && !filters.any():
			return nil, usageError{"give attempt IDs or at least one filter (e.g. -status needs_review)"}
		case filters.any():
			if f, err = filters.filter(); err != nil {
				return nil, err
			}
			for _, s := range f.Statuses {
				if s != reversald.StatusNeedsReview {
					return nil, usageError{fmt.Sprintf("-status %s: only needs_review attempts can be retried", s)}
				}
			}
			f.Statuses = []reversald.Status{reversald.StatusNeedsReview}
		}
		return func(ctx context.Context, st *store.Store) error {
			if len(refs) == 0 {
				ids, err := matching(ctx, st, f)
				if err != nil {
					return err
				}
				if len(ids) == 0 {
					fmt.Fprintln(stdout, "no attempts match")
					return nil
				}
				for _, id := range ids {
					refs = append(refs, attemptRef{id: id})
				}
			}
			return eachAttempt(ctx, st, stdout, refs, *opf.dryRun, "retry", "retried", func(id int64) (reversald.Attempt, error) {
				if *opf.dryRun {
					return st.CheckRetry(ctx, id)
				}
				a, err := st.Get(ctx, id)
				if err != nil {
					return a, err
				}
				return a, st.Retry(ctx, id, op)
			})
		}, nil
	}
}

// matching lists the ids of every attempt f picks, oldest first.
func matching(ctx context.Context, st *store.Store, f store.Filter) ([]int64, error) {
	var ids []int64
	p := store.Page{Sort: store.SortID, Limit: store.MaxPage}
	for {
		got, next, err := st.Search(ctx, f, p)
		if err != nil {
			return nil, err
		}
		for _, a := range got {
			ids = append(ids, a.ID)
		}
		if next.IsZero() {
			return ids, nil
		}
		p.After = next
	}
}

// eachAttempt runs do on every attempt and says what became of each. An
// attempt it could not act on is reported and the others go on; the error
// at the end counts them (exit 1). A dry run reports and returns nil.
func eachAttempt(ctx context.Context, st *store.Store, stdout io.Writer, refs []attemptRef, dryRun bool, verb, done string,
	do func(id int64) (reversald.Attempt, error),
) error {
	failed := 0
	for _, r := range refs {
		id, err := r.resolve(ctx, st)
		var a reversald.Attempt
		if err == nil {
			a, err = do(id)
		}
		switch {
		case err != nil && dryRun:
			fmt.Fprintf(stdout, "would not %s %s: %v\n", verb, r, err)
			failed++
		case err != nil:
			fmt.Fprintf(stdout, "not %s %s: %v\n", done, r, err)
			failed++
		case dryRun:
			fmt.Fprintf(stdout, "would %s %s\n", verb, describeAttempt(a))
		default:
			fmt.Fprintf(stdout, "%s %s: it will be re-driven from a fresh query\n", done, describeAttempt(a))
		}
	}
	ok := len(refs) - failed
	if dryRun {
		fmt.Fprintf(stdout, "dry run: would %s %d of %d; nothing changed\n", verb, ok, len(refs))
		return nil
	}
	fmt.Fprintf(stdout, "%s %d of %d\n", done, ok, len(refs))
	if failed > 0 {
		return fmt.Errorf("attempts %s: %d of %d not %s (see above)", verb, failed, len(refs), done)
	}
	return nil
}

func resolveCommand(fs *flag.FlagSet, stdout io.Writer) func(args []string) (opsCommand, error) {
	status := fs.String("status", "", "the final status read at QFPay (required): "+statusNames(store.ResolveStatuses))
	opf := addOperatorFlags(fs, "resolve")
	return func(args []string) (opsCommand, error) {
		ref, err := oneRef(args)
		var errs []string
		if err != nil {
			errs = append(errs, err.Error())
		}
		st := reversald.Status(*status)
		switch {
		case *status == "":
			errs = append(errs, "-status is required: "+statusNames(store.ResolveStatuses))
		case !store.CanResolveTo(st):
			errs = append(errs, fmt.Sprintf("-status %q: an operator resolves to one of %s (not_found and unsupported are not "+
				"states of a payment record; retry instead)", *status, statusNames(store.ResolveStatuses)))
		}
		op, err := opf.operator()
		if err != nil {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			return nil, usageError{strings.Join(errs, "\n")}
		}
		return func(ctx context.Context, s *store.Store) error {
			id, err := ref.resolve(ctx, s)
			if err != nil {
				return err
			}
			if *opf.dryRun {
				a, err := s.CheckResolve(ctx, id, st)
				if err != nil {
					fmt.Fprintf(stdout, "would not resolve %s: %v\ndry run: nothing changed\n", ref, err)
					return nil
				}
				fmt.Fprintf(stdout, "would resolve %s to %s, with a new outcome per event marked resolved_by %q\ndry run: nothing changed\n",
					describeAttempt(a), st, op.Name)
				return nil
			}
			n, err := s.Resolve(ctx, id, st, op)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "resolved attempt %d to %s by %s; %d outcome(s) queued for the results topic\n", id, st, op.Name, n)
			return nil
		}, nil
	}
}

// attemptView is an attempt in the outcome contract's snake_case names.
type attemptView struct {
	ID             int64            `json:"id"`
	MchID          string           `json:"mchid"`
	OutTradeNo     string           `json:"out_trade_no"`
	Syssn          string           `json:"syssn"`
	TxAmt          int64            `json:"txamt"`
	TxCurrCd       string           `json:"txcurrcd"`
	TxDtm          string           `json:"txdtm"`
	PayType        string           `json:"pay_type"`
	Udid           string           `json:"udid"`
	Status         reversald.Status `json:"status"`
	Step           reversald.Step   `json:"step"`
	Method         reversald.Method `json:"method"`
	CancelPending  bool             `json:"cancel_pending"`
	CancelSyssn    string           `json:"cancel_syssn"`
	Respcd         string           `json:"respcd"`
	Resperr        string           `json:"resperr"`
	Respmsg        string           `json:"respmsg"`
	Reason         string           `json:"reason"`
	ResolvedBy     string           `json:"resolved_by,omitempty"`
	GatewayCalls   int              `json:"gateway_calls"`
	Rechecks       int              `json:"rechecks"`
	CancelCalls    int              `json:"cancel_calls"`
	CancelReached  bool             `json:"cancel_reached"`
	CancelRespcd   string           `json:"cancel_respcd"`
	BudgetCalls    int              `json:"budget_calls"`
	RecordRespcd   string           `json:"record_respcd"`
	RecordCancel   string           `json:"record_cancel"`
	QFPayTxAmt     int64            `json:"qfpay_txamt"`
	QFPayTxCurrCd  string           `json:"qfpay_txcurrcd"`
	NextRunAt      time.Time        `json:"next_run_at"`
	DeadlineAt     time.Time        `json:"deadline_at"`
	LeaseOwner     string           `json:"lease_owner"`
	LeaseExpiresAt *time.Time       `json:"lease_expires_at"`
	Token          int64            `json:"token"`
	FirstSeenAt    time.Time        `json:"first_seen_at"`
	DecidedAt      *time.Time       `json:"decided_at"`
	UpdatedAt      time.Time        `json:"updated_at"`
}

func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func newAttemptView(a reversald.Attempt) attemptView {
	return attemptView{
		ID: a.ID, MchID: a.MchID, OutTradeNo: a.OutTradeNo, Syssn: a.Syssn, TxAmt: a.TxAmt, TxCurrCd: a.TxCurrCd,
		TxDtm: a.TxDtm, PayType: a.PayType, Udid: a.Udid, Status: a.Status, Step: a.Step, Method: a.Method,
		CancelPending: a.CancelPending, CancelSyssn: a.CancelSyssn, Respcd: a.Respcd, Resperr: a.Resperr,
		Respmsg: a.Respmsg, Reason: a.Reason, ResolvedBy: a.ResolvedBy, GatewayCalls: a.GatewayCalls, Rechecks: a.Rechecks,
		CancelCalls: a.CancelCalls, CancelReached: a.CancelReached, CancelRespcd: a.CancelRespcd,
		BudgetCalls: a.BudgetCalls, RecordRespcd: a.RecordRespcd, RecordCancel: a.RecordCancel,
		QFPayTxAmt: a.RecordTxAmt, QFPayTxCurrCd: a.RecordTxCurrCd, NextRunAt: a.NextRunAt.UTC(),
		DeadlineAt: a.DeadlineAt.UTC(), LeaseOwner: a.LeaseOwner, LeaseExpiresAt: utcOrNil(a.LeaseExpiresAt),
		Token: a.Token, FirstSeenAt: a.FirstSeenAt.UTC(), DecidedAt: utcOrNil(a.DecidedAt), UpdatedAt: a.UpdatedAt.UTC(),
	}
}

type eventView struct {
	EventID        string    `json:"event_id"`
	TxAmt          int64     `json:"txamt"`
	TxDtm          string    `json:"txdtm"`
	Topic          string    `json:"topic"`
	Partition      int       `json:"partition"`
	Offset         int64     `json:"offset"`
	Conflict       bool      `json:"conflict"`
	ConflictReason string    `json:"conflict_reason,omitempty"`
	ReceivedAt     time.Time `json:"received_at"`
}

// callView is a gateway call's audit row. The request holds the fields that
// were signed, never the key or the signature (the client never gives them to
// the audit).
type callView struct {
	Step       reversald.Step    `json:"step"`
	Endpoint   string            `json:"endpoint"`
	AppCode    string            `json:"app_code"`
	Request    map[string]string `json:"request"`
	HTTPStatus int               `json:"http_status"`
	Respcd     string            `json:"respcd"`
	Error      string            `json:"error,omitempty"`
	Response   string            `json:"response"`
	LatencyMS  float64           `json:"latency_ms"`
	CalledAt   time.Time         `json:"called_at"`
	Token      int64             `json:"token"`
	FencedOut  bool              `json:"fenced_out"`
}

type outcomeView struct {
	OutboxID    int64      `json:"outbox_id"`
	PublishedAt *time.Time `json:"published_at"`
	reversald.Outcome
}

type actionView struct {
	ID             int64            `json:"id"`
	Action         string           `json:"action"`
	Operator       string           `json:"operator"`
	Note           string           `json:"note"`
	FromStatus     reversald.Status `json:"from_status"`
	ToStatus       reversald.Status `json:"to_status"`
	PreviousReason string           `json:"previous_reason"`
	PreviousRespcd string           `json:"previous_respcd"`
	Token          int64            `json:"token"`
	At             time.Time        `json:"at"`
}

type historyView struct {
	Attempt      attemptView   `json:"attempt"`
	Events       []eventView   `json:"events"`
	GatewayCalls []callView    `json:"gateway_calls"`
	Outcomes     []outcomeView `json:"outcomes"`
	Audit        []actionView  `json:"audit"`
}

func newHistoryView(h store.History) historyView {
	v := historyView{
		Attempt: newAttemptView(h.Attempt), Events: []eventView{}, GatewayCalls: []callView{},
		Outcomes: []outcomeView{}, Audit: []actionView{},
	}
	for _, e := range h.Events {
		v.Events = append(v.Events, eventView{EventID: e.EventID, TxAmt: e.TxAmt, TxDtm: e.TxDtm, Topic: e.Topic,
			Partition: e.Partition, Offset: e.Offset, Conflict: e.Conflict, ConflictReason: e.ConflictReason,
			ReceivedAt: e.ReceivedAt.UTC()})
	}
	for _, c := range h.Calls {
		v.GatewayCalls = append(v.GatewayCalls, callView{Step: c.Step, Endpoint: c.Endpoint, AppCode: c.AppCode,
			Request: c.Request, HTTPStatus: c.HTTPStatus, Respcd: c.Respcd, Error: c.Error, Response: string(c.Response),
			LatencyMS: float64(c.Latency.Microseconds()) / 1000, CalledAt: c.At.UTC(), Token: c.Token, FencedOut: c.FencedOut})
	}
	for _, o := range h.Outcomes {
		var pub *time.Time
		if o.PublishedAt != nil {
			pub = utcOrNil(*o.PublishedAt)
		}
		v.Outcomes = append(v.Outcomes, outcomeView{OutboxID: o.ID, PublishedAt: pub, Outcome: o.Outcome})
	}
	for _, x := range h.Actions {
		v.Audit = append(v.Audit, actionView{ID: x.ID, Action: x.Action, Operator: x.Operator, Note: x.Note,
			FromStatus: x.FromStatus, ToStatus: x.ToStatus, PreviousReason: x.PreviousReason,
			PreviousRespcd: x.PreviousRespcd, Token: x.Token, At: x.At.UTC()})
	}
	return v
}
