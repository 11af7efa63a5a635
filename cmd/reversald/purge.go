package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/store"
)

const purgeSynopsis = "purge -older-than AGE [-batch N] [-pause D] [-dry-run]"

// purgeCmd deletes final attempts decided longer ago than -older-than, with
// their events, gateway calls, operator actions and published outcomes.
func purgeCmd(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout io.Writer) error {
	fs := newFlagSet("purge")
	olderThan := fs.String("older-than", "", "purge final attempts decided longer ago than this (required): 90d, 36h, 1h30m")
	batch := fs.Int("batch", 1000, "attempts per transaction (1 to 100000): short transactions keep the daemon's hot path free")
	pause := fs.Duration("pause", 0, "wait this long between batches (e.g. 100ms), to leave capacity to a running daemon")
	dryRun := fs.Bool("dry-run", false, "count what it would purge, delete nothing")
	build := func(args []string) (opsCommand, error) {
		var errs []string
		if len(args) > 0 {
			errs = append(errs, fmt.Sprintf("unexpected argument %q", args[0]))
		}
		age, err := parseAge(*olderThan)
		switch {
		case *olderThan == "":
			errs = append(errs, "-older-than is required (e.g. 90d)")
		case err != nil:
			errs = append(errs, "-older-than: "+err.Error())
		}
		if *batch < 1 || *batch > 100_000 {
			errs = append(errs, fmt.Sprintf("-batch must be 1 to 100000, got %d", *batch))
		}
		if *pause < 0 {
			errs = append(errs, fmt.Sprintf("-pause must not be negative, got %s", *pause))
		}
		if len(errs) > 0 {
			return nil, usageError{strings.Join(errs, "\n")}
		}
		return func(ctx context.Context, st *store.Store) error {
			if *dryRun {
				n, cutoff, err := st.CountPurgeable(ctx, age)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "dry run: would purge %d final attempt(s) decided before %s (with their events, gateway calls, "+
					"operator actions and published outcomes); nothing deleted\n", n, cutoff.UTC().Format(time.RFC3339))
				return nil
			}
			r, err := st.Purge(ctx, age, *batch, *pause)
			if r.Batches > 0 || err == nil {
				fmt.Fprintf(stdout, "purged %d attempt(s) decided before %s in %d batch(es): %d event(s), %d gateway call(s), "+
					"%d outcome(s), %d operator action(s)\n", r.Attempts, r.Cutoff.UTC().Format(time.RFC3339), r.Batches,
					r.Events, r.Calls, r.Outcomes, r.Actions)
			}
			return err
		}, nil
	}
	return runOps(ctx, fs, purgeSynopsis, args, build, lookup, stdout)
}

// parseAge reads an age: a number of days (90d) or a Go duration (36h,
// 1h30m). It must be positive.
func parseAge(s string) (time.Duration, error) {
	var (
		d   time.Duration
		err error
	)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int64
		n, err = strconv.ParseInt(days, 10, 64)
		if err == nil && (n <= 0 || n > 100*365) {
			return 0, fmt.Errorf("%q: days must be 1 to 36500", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not an age: give days (90d) or a duration (36h)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: the age must be positive", s)
	}
	return d, nil
}

// age is a Config field read with parseAge; zero when unset.
type age time.Duration

// EnvDecode implements envconfig.Decoder.
func (a *age) EnvDecode(s string) error {
	if s == "" || s == "0" {
		*a = 0
		return nil
	}
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	*a = age(d)
	return nil
}

// purger is the daemon's periodic purge (PURGE_OLDER_THAN): every interval,
// the same purge as the purge command. A purge that fails is logged and
// tried again at the next tick; it never stops the daemon.
type purger struct {
	st        *store.Store
	olderThan time.Duration
	interval  time.Duration
	batch     int
	pause     time.Duration
	log       *slog.Logger
	purged    func(attempts int64) // counts what was deleted, also by a purge that then failed
	failed    func()
}

// Run purges every interval, the first time one interval after the start,
// until ctx ends.
func (p *purger) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r, err := p.st.Purge(ctx, p.olderThan, p.batch, p.pause)
		p.purged(r.Attempts)
		switch {
		case err != nil && errors.Is(err, context.Canceled):
			return nil
		case err != nil:
			p.failed()
			p.log.Warn("purge failed; trying again at the next interval", "error", err.Error(), "purged", r.Attempts)
		case r.Attempts > 0:
			p.log.Info("purged", "attempts", r.Attempts, "events", r.Events, "gateway_calls", r.Calls,
				"outcomes", r.Outcomes, "operator_actions", r.Actions, "batches", r.Batches, "decided_before", r.Cutoff.UTC().Format(time.RFC3339))
		}
	}
}
