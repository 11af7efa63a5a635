package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/consumer"
)

// dlqCmd runs `reversald dlq list|replay`: read the dead-letter topic (up to the
// high watermarks seen at the start, so it always ends), show the letters
// with their headers decoded, and write chosen ones back to the input topic.
// They need the KAFKA_* settings only.
func dlqCmd(ctx context.Context, args []string, lookup envconfig.Lookuper, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"dlq: list or replay (reversald dlq list -h)"}
	}
	sub, args := args[0], args[1:]
	var synopsis string
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: reversald dlq list|replay [flags] (reversald dlq list -h lists them)")
		return nil
	case "list":
		synopsis = "dlq list [flags]"
	case "replay":
		synopsis = "dlq replay (filter flags | -all) [-to TOPIC] [-dry-run]"
	default:
		return usageError{fmt.Sprintf("dlq: unknown command %q: list or replay", sub)}
	}
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	var f dlqFilter
	fs.StringVar(&f.reason, "reason", "", "only letters whose reason (x-dlq-error) contains this text, any case")
	fs.StringVar(&f.key, "key", "", "only letters with this message key (out_trade_no, by convention)")
	fs.Var(&f.eventIDs, "event-id", "only letters of these event_ids (comma-separated; a value without event_id has topic/partition/offset of its origin)")
	fs.Var(&f.since, "since", "only letters dead-lettered at or after this time (RFC 3339, a date, or a duration back from now: 36h, 7d)")
	fs.Var(&f.until, "until", "only letters dead-lettered before this time (same forms as -since)")
	topic := fs.String("topic", "", "the dead-letter topic (default: KAFKA_DLQ_TOPIC, payment-uncertain.dlq)")
	defLimit := 0
	if sub == "list" {
		defLimit = 100
	}
	limit := fs.Int("limit", defLimit, "at most this many letters (0: no limit)")
	var (
		output *string
		all    *bool
		to     *string
		dryRun *bool
	)
	if sub == "list" {
		output = fs.String("output", "table", "table, or json (one object per line)")
	} else {
		all = fs.Bool("all", false, "replay every replayable letter (needed when no filter is given)")
		to = fs.String("to", "", "the topic to write to (default: KAFKA_INPUT_TOPIC, payment-uncertain)")
		dryRun = fs.Bool("dry-run", false, "print what would be replayed; write nothing")
	}
	if done, err := parseFlags(fs, args, synopsis, stdout); done || err != nil {
		return err
	}
	if *limit < 0 {
		return usageError{fmt.Sprintf("dlq %s: -limit must be 0 or more, got %d", sub, *limit)}
	}
	if err := timeRange("dlq "+sub+" -since/-until", f.since.t, f.until.t); err != nil {
		return err
	}
	if output != nil && *output != "table" && *output != "json" {
		return usageError{fmt.Sprintf("dlq list: -output must be table or json, got %q", *output)}
	}
	if sub == "replay" && !*all && !f.any() {
		return usageError{"dlq replay: give a filter (-reason, -key, -event-id, -since, -until) or -all to replay every letter"}
	}

	cfg, sec, err := kafkaOpsConfig(ctx, lookup, false)
	if err != nil {
		return err
	}
	read := consumer.DeadLetterReadConfig{Brokers: cfg.KafkaBrokers, Topic: cmp.Or(*topic, cfg.DLQTopic), Security: sec}
	if sub == "list" {
		return dlqList(ctx, read, f, *limit, *output, stdout)
	}
	dest := cmp.Or(*to, cfg.InputTopic)
	if dest == read.Topic {
		return usageError{fmt.Sprintf("dlq replay: the destination %s is the dead-letter topic itself", dest)}
	}
	return dlqReplay(ctx, read, consumer.TopicWriterConfig{Brokers: cfg.KafkaBrokers, Topic: dest, Security: sec}, f, *limit, *dryRun, stdout)
}

// dlqFilter picks dead letters; every filter that is set must match.
type dlqFilter struct {
	reason, key  string
	eventIDs     listFlag
	since, until timeFlag
}

func (f dlqFilter) any() bool {
	return f.reason != "" || f.key != "" || len(f.eventIDs) > 0 || !f.since.t.IsZero() || !f.until.t.IsZero()
}

func (f dlqFilter) match(l consumer.DeadLetter) bool {
	if f.reason != "" && !strings.Contains(strings.ToLower(l.Reason), strings.ToLower(f.reason)) {
		return false
	}
	if f.key != "" && string(l.Key) != f.key {
		return false
	}
	if len(f.eventIDs) > 0 {
		id, found := l.EventID(), false
		for _, want := range f.eventIDs {
			found = found || id == want
		}
		if !found {
			return false
		}
	}
	at := deadLetteredAt(l)
	if !f.since.t.IsZero() && at.Before(f.since.t) {
		return false
	}
	if !f.until.t.IsZero() && !at.Before(f.until.t) {
		return false
	}
	return true
}

// deadLetteredAt is the x-dlq-at time, or the broker's time of the write when
// the header cannot be read.
func deadLetteredAt(l consumer.DeadLetter) time.Time {
	if !l.At.IsZero() {
		return l.At
	}
	return l.Time
}

// errEnough stops a read once the limit is reached.
var errEnough = errors.New("enough letters")

func dlqList(ctx context.Context, read consumer.DeadLetterReadConfig, f dlqFilter, limit int, output string, stdout io.Writer) error {
	var (
		n    int
		more bool
	)
	// The table is written row by row as letters are read (tabwriter keeps only the text until
	// Flush), so a long list holds no letter in memory.
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if output == "table" {
		fmt.Fprintln(tw, "DLQ\tDEAD_LETTERED_AT\tORIGIN\tKEY\tEVENT_ID\tREPLAYABLE\tREASON")
	}
	err := consumer.ReadDeadLetters(ctx, read, func(l consumer.DeadLetter) error {
		if !f.match(l) {
			return nil
		}
		if limit > 0 && n == limit {
			more = true
			return errEnough
		}
		n++
		if output == "json" {
			b, err := json.Marshal(dlqView(l))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		replayable := "yes"
		if err := l.Replayable(); err != nil {
			replayable = "no"
			if l.TruncatedFrom != 0 {
				replayable = "no (truncated)"
			}
		}
		_, err := fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Partition, l.Offset, deadLetteredAt(l).Format(time.RFC3339),
			cmp.Or(l.Origin.String(), "?"), cell(string(l.Key), 40), cell(l.EventID(), 48), replayable,
			cell(cmp.Or(l.Reason, "(no x-dlq-error)"), 120))
		return err
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	if output != "table" {
		return nil
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(stdout, "no dead letter in %s matches\n", read.Topic)
	}
	if more {
		fmt.Fprintln(stdout, "(more letters match: raise -limit, or 0 for all)")
	}
	return nil
}

// cell makes s fit one table cell: control characters shown as spaces, cut
// to n runes.
func cell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// deadLetterJSON is one line of `dlq list -output json`.
type deadLetterJSON struct {
	DLQTopicPartition int               `json:"dlq_partition"`
	DLQOffset         int64             `json:"dlq_offset"`
	DeadLetteredAt    *time.Time        `json:"dead_lettered_at"` // x-dlq-at; null when unreadable
	WrittenAt         time.Time         `json:"written_at"`       // the broker's time of the write
	Reason            string            `json:"reason"`
	Origin            *originJSON       `json:"origin"` // null when the headers are unreadable
	Key               string            `json:"key"`
	EventID           string            `json:"event_id"`
	Replayable        bool              `json:"replayable"`
	NotReplayable     string            `json:"not_replayable,omitempty"`
	TruncatedFrom     int               `json:"truncated_from,omitempty"`
	Headers           map[string]string `json:"headers"` // the original message's own
	Value             *string           `json:"value,omitempty"`
	ValueBase64       string            `json:"value_base64,omitempty"` // when the value is not UTF-8
	Problems          []string          `json:"problems,omitempty"`
}

type originJSON struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

func dlqView(l consumer.DeadLetter) deadLetterJSON {
	v := deadLetterJSON{
		DLQTopicPartition: l.Partition, DLQOffset: l.Offset, WrittenAt: l.Time, Reason: l.Reason,
		Key: string(l.Key), EventID: l.EventID(), TruncatedFrom: l.TruncatedFrom, Problems: l.Problems,
		Headers: map[string]string{},
	}
	if !l.At.IsZero() {
		at := l.At
		v.DeadLetteredAt = &at
	}
	if l.Origin.Known() {
		v.Origin = &originJSON{Topic: l.Origin.Topic, Partition: l.Origin.Partition, Offset: l.Origin.Offset}
	}
	if err := l.Replayable(); err != nil {
		v.NotReplayable = strings.TrimPrefix(err.Error(), consumer.ErrNotReplayable.Error()+": ")
	} else {
		v.Replayable = true
	}
	for _, h := range l.Headers {
		v.Headers[h.Key] = string(h.Value)
	}
	if utf8.Valid(l.Value) {
		s := string(l.Value)
		v.Value = &s
	} else {
		v.ValueBase64 = base64.StdEncoding.EncodeToString(l.Value)
	}
	return v
}

// replayBatch is how many letters one write carries.
const replayBatch = 100

func dlqReplay(ctx context.Context, read consumer.DeadLetterReadConfig, dest consumer.TopicWriterConfig, f dlqFilter, limit int, dryRun bool, stdout io.Writer) error {
	var w *consumer.TopicWriter
	if !dryRun {
		var err error
		if w, err = consumer.NewTopicWriter(ctx, dest); err != nil {
			return err
		}
		defer func() { _ = w.Close() }() // every write was acknowledged (or failed) already
	}
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	var (
		matched, written, skipped int
		batch                     []kafka.Message
		lines                     []string
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if w != nil {
			if err := w.Write(ctx, batch...); err != nil {
				return fmt.Errorf("dlq replay: %w (%d letters replayed before this batch; replaying again is safe: intake drops an event_id it has)", err, written)
			}
		}
		written += len(batch)
		for _, s := range lines {
			fmt.Fprintln(stdout, s)
		}
		batch, lines = batch[:0], lines[:0]
		return nil
	}
	err := consumer.ReadDeadLetters(ctx, read, func(l consumer.DeadLetter) error {
		if !f.match(l) {
			return nil
		}
		if limit > 0 && matched == limit {
			return errEnough
		}
		matched++
		m, err := consumer.ReplayMessage(l)
		if err != nil {
			skipped++
			fmt.Fprintf(stdout, "skipped %d/%d (key %q): %v\n", l.Partition, l.Offset, cell(string(l.Key), 40), err)
			return nil
		}
		batch = append(batch, m)
		lines = append(lines, fmt.Sprintf("%s %d/%d to %s: event_id %q, key %q, origin %s", verb, l.Partition, l.Offset,
			dest.Topic, l.EventID(), cell(string(l.Key), 40), cmp.Or(l.Origin.String(), "?")))
		if len(batch) == replayBatch {
			return flush()
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	switch {
	case matched == 0:
		fmt.Fprintf(stdout, "no dead letter in %s matches\n", read.Topic)
	case dryRun:
		fmt.Fprintf(stdout, "dry run: %d of %d matching letters would be replayed to %s, %d cannot be; nothing was written\n", written, matched, dest.Topic, skipped)
	default:
		fmt.Fprintf(stdout, "%d of %d matching letters replayed to %s, %d could not be\n", written, matched, dest.Topic, skipped)
	}
	return nil
}
