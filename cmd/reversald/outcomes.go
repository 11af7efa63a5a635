package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/consumer"
	"github.com/reversald/reversald/store"
)

// outcomesCmd runs `reversald outcomes republish`: send stored outcomes
// (outbox rows the publisher has sent) to the results topic again, or to
// another topic, for a reconciliation job that lost its copy. It reads the
// database; it touches Kafka only when it writes (not with -dry-run).
func outcomesCmd(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"outcomes: republish (reversald outcomes republish -h)"}
	}
	switch args[0] {
	case "republish":
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: reversald outcomes republish [flags] (reversald outcomes republish -h lists them)")
		return nil
	default:
		return usageError{fmt.Sprintf("outcomes: unknown command %q: republish (reversald outcomes republish -h)", args[0])}
	}
	const synopsis = "outcomes republish (filter flags | -all) [-topic TOPIC] [-dry-run]"
	fs := flag.NewFlagSet("outcomes republish", flag.ContinueOnError)
	var (
		statuses, eventIDs           listFlag
		decidedFrom, decidedTo       timeFlag
		publishedFrom, publishedTo   timeFlag
		mchid, outTradeNo, topicFlag string
	)
	fs.Var(&statuses, "status", "only outcomes with these statuses (comma-separated: "+finalStatusList()+")")
	fs.StringVar(&mchid, "mchid", "", "only outcomes of this merchant")
	fs.StringVar(&outTradeNo, "out-trade-no", "", "only outcomes of this out_trade_no")
	fs.Var(&eventIDs, "event-id", "only outcomes of these event_ids (comma-separated)")
	fs.Var(&decidedFrom, "decided-from", "only outcomes decided at or after this time (RFC 3339, a date, or a duration back from now: 36h, 7d)")
	fs.Var(&decidedTo, "decided-to", "only outcomes decided before this time (same forms)")
	fs.Var(&publishedFrom, "published-from", "only outcomes first published at or after this time (same forms)")
	fs.Var(&publishedTo, "published-to", "only outcomes first published before this time (same forms)")
	all := fs.Bool("all", false, "republish every published outcome (needed when no filter is given)")
	fs.StringVar(&topicFlag, "topic", "", "the topic to write to (default: KAFKA_RESULTS_TOPIC, payment-reversal-results)")
	dryRun := fs.Bool("dry-run", false, "print the outcomes that would be sent; write nothing (needs only DATABASE_URL)")
	batch := fs.Int("batch", 500, "outcomes per database page and Kafka write")
	if done, err := parseFlags(fs, args[1:], synopsis, stdout); done || err != nil {
		return err
	}
	f := store.OutcomeFilter{MchID: mchid, OutTradeNo: outTradeNo, EventIDs: eventIDs,
		DecidedFrom: decidedFrom.t, DecidedTo: decidedTo.t, PublishedFrom: publishedFrom.t, PublishedTo: publishedTo.t}
	for _, s := range statuses {
		f.Statuses = append(f.Statuses, reversald.Status(s))
	}
	if err := f.Validate(); err != nil {
		return usageError{fmt.Sprintf("outcomes republish -status: %v (an outcome's status is one of %s)", err, finalStatusList())}
	}
	for _, r := range []struct {
		name     string
		from, to time.Time
	}{{"-decided-from/-decided-to", f.DecidedFrom, f.DecidedTo}, {"-published-from/-published-to", f.PublishedFrom, f.PublishedTo}} {
		if err := timeRange("outcomes republish "+r.name, r.from, r.to); err != nil {
			return err
		}
	}
	if *batch < 1 || *batch > 10_000 {
		return usageError{fmt.Sprintf("outcomes republish: -batch must be 1 to 10000, got %d", *batch)}
	}
	filtered := len(f.Statuses) > 0 || f.MchID != "" || f.OutTradeNo != "" || len(f.EventIDs) > 0 ||
		!f.DecidedFrom.IsZero() || !f.DecidedTo.IsZero() || !f.PublishedFrom.IsZero() || !f.PublishedTo.IsZero()
	if !filtered && !*all {
		return usageError{"outcomes republish: give a filter (-status, -mchid, -out-trade-no, -event-id, -decided-from/-to, -published-from/-to) or -all to republish every outcome"}
	}

	// Kafka settings are read only when something will be written.
	var (
		cfg Config
		sec consumer.Security
		err error
	)
	if *dryRun {
		cfg, err = dryRunConfig(ctx, lookup)
	} else {
		cfg, sec, err = kafkaOpsConfig(ctx, lookup, true)
	}
	if err != nil {
		return err
	}
	topic := cmp.Or(topicFlag, cfg.ResultsTopic)

	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()

	if *dryRun {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EVENT_ID\tMCHID\tOUT_TRADE_NO\tSTATUS\tDECIDED_AT")
		n, err := st.PublishedOutcomes(ctx, f, *batch, func(recs []store.OutboxRecord) error {
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(r.EventID, 48), r.MchID, cell(r.OutTradeNo, 40), r.Status, r.DecidedAt.Format(time.RFC3339Nano))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dry run: %d published outcomes match and would be republished to %s; nothing was written\n", n, topic)
		return nil
	}

	w, err := consumer.NewTopicWriter(ctx, consumer.TopicWriterConfig{Brokers: cfg.KafkaBrokers, Topic: topic, Security: sec})
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }() // every write was acknowledged (or failed) already
	at := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	n, err := st.PublishedOutcomes(ctx, f, *batch, func(recs []store.OutboxRecord) error {
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			m, err := consumer.OutcomeMessage(r)
			if err != nil {
				return err
			}
			m.Headers = append(m.Headers, kafka.Header{Key: consumer.HeaderRepublishedAt, Value: at})
			msgs[i] = m
		}
		return w.Write(ctx, msgs...)
	})
	if err != nil {
		return fmt.Errorf("outcomes republish: %w (%d outcomes republished before it; republishing again is safe: readers keep one outcome per event_id and decided_at)", err, n)
	}
	if n == 0 {
		fmt.Fprintln(stdout, "no published outcome matches")
		return nil
	}
	fmt.Fprintf(stdout, "republished %d outcomes to %s\n", n, topic)
	return nil
}

// finalStatusList names every status an outcome can have.
func finalStatusList() string {
	var s []string
	for _, st := range reversald.Statuses {
		if st.Final() {
			s = append(s, string(st))
		}
	}
	return strings.Join(s, ", ")
}

// dryRunConfig reads what a dry run needs: DATABASE_URL, and the results
// topic it would name.
func dryRunConfig(ctx context.Context, lookup envconfig.Lookuper) (Config, error) {
	cfg, _, errs := parseConfig(ctx, lookup, func(name string) bool { return name == "DATABASE_URL" || name == "KAFKA_RESULTS_TOPIC" })
	if cfg.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL (or DATABASE_URL_FILE) is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return cfg, nil
}
