package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/consumer"
)

// What the dlq and outcomes commands share: time and list flags, the Kafka
// settings read as the daemon reads them, and flag parsing that answers -h.

// timeFlag is a point in time given as RFC 3339 (2026-11-29T10:00:00Z), a
// date (2026-11-29, midnight UTC), or a duration back from now (90m, 36h, 7d).
type timeFlag struct {
	t   time.Time
	now func() time.Time
}

func (f *timeFlag) String() string {
	if f == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339Nano)
}

func (f *timeFlag) Set(s string) error {
	t, err := parseTimeFlag(s, f.now)
	if err != nil {
		return err
	}
	f.t = t
	return nil
}

func parseTimeFlag(s string, now func() time.Time) (time.Time, error) {
	if now == nil {
		now = time.Now
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now().UTC().AddDate(0, 0, -n), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now().UTC().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give RFC 3339 (2026-11-29T10:00:00Z), a date (2026-11-29) or a duration back from now (36h, 7d)", s)
}

// listFlag is a comma-separated list; the flag may also be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// timeRange checks that from is before to when both are set.
func timeRange(name string, from, to time.Time) error {
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return usageError{fmt.Sprintf("%s: the start %s is not before the end %s", name, from.Format(time.RFC3339), to.Format(time.RFC3339))}
	}
	return nil
}

// parseFlags parses args with fs. -h prints synopsis and the flags to stdout
// and gives done; a mistake is a usage error, as is any argument left over.
func parseFlags(fs *flag.FlagSet, args []string, synopsis string, stdout io.Writer) (done bool, err error) {
	var msgs strings.Builder
	fs.SetOutput(&msgs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "usage: reversald %s\n\nflags:\n", synopsis)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return true, nil
		}
		return false, usageError{fmt.Sprintf("%s: %v\nusage: reversald %s (-h lists the flags)", fs.Name(), err, synopsis)}
	}
	if fs.NArg() > 0 {
		return false, usageError{fmt.Sprintf("%s: unexpected argument %q\nusage: reversald %s (-h lists the flags)", fs.Name(), fs.Arg(0), synopsis)}
	}
	return false, nil
}

// kafkaOpsConfig reads what an ops command that touches Kafka needs: the
// KAFKA_* variables, parsed and checked as the daemon does (brokers, TLS,
// SASL, secrets from _FILE), and DATABASE_URL when withDB. Nothing else is
// read, so a daemon setting the command does not use cannot stop it.
func kafkaOpsConfig(ctx context.Context, lookup envconfig.Lookuper, withDB bool) (Config, consumer.Security, error) {
	want := func(name string) bool {
		return strings.HasPrefix(name, "KAFKA_") || (withDB && name == "DATABASE_URL")
	}
	c, unparsed, errs := parseConfig(ctx, lookup, want)
	if withDB && c.DatabaseURL == "" && !unparsed["DATABASE_URL"] {
		errs = append(errs, errors.New("DATABASE_URL (or DATABASE_URL_FILE) is required"))
	}
	errs = append(errs, c.validateKafka())
	sec, err := c.security()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return c, sec, fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return c, sec, nil
}
