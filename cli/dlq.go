package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
)

// DLQCmd is 'mockstagram dlq list|replay'. Dead letters are read from the
// store, where the dead-letter archiver (in every recorder process) keeps
// every message of fetcher_dlq and result_handler_dlq.
type DLQCmd struct {
	List   DLQList   `cmd:"" help:"List archived dead letters, oldest first."`
	Replay DLQReplay `cmd:"" help:"Re-publish dead letters to their original topic and mark them replayed (expired fetches are reported, not refetched)."`
}

// dlqSelect is the selection both subcommands share. Its flags have no
// environment variables (env:"-"): they select, they do not configure.
type dlqSelect struct {
	Topic  string `env:"-" help:"Only this dead-letter topic: fetcher_dlq, result_handler_dlq or suspicion_dlq."`
	Reason string `env:"-" help:"Only letters whose reason contains this text (case-sensitive)."`
	Since  string `env:"-" help:"Only letters received since this time: RFC 3339 (2026-11-25T12:00:00Z) or a duration ago (90m, 2h)."`
	PK     int64  `env:"-" name:"pk" help:"Only the letters of this pk (pk failures; a poisoned task or result, of many pks, has none)."`
}

func (s dlqSelect) filter(now time.Time) (store.DeadLetterFilter, error) {
	f := store.DeadLetterFilter{Topic: s.Topic, Reason: s.Reason, PK: s.PK}
	if s.PK < 0 {
		return f, fmt.Errorf("--pk %d is not positive", s.PK)
	}
	switch s.Topic {
	case "", messages.TopicFetcherDLQ, messages.TopicResultDLQ, messages.TopicSuspicionDLQ:
	default:
		return f, fmt.Errorf("--topic %q: want %s, %s or %s", s.Topic, messages.TopicFetcherDLQ, messages.TopicResultDLQ, messages.TopicSuspicionDLQ)
	}
	if s.Since != "" {
		since, err := parseSince(s.Since, now)
		if err != nil {
			return f, err
		}
		f.Since = since
	}
	return f, nil
}

func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time or a duration like 1h", v)
}

var _ handlers.ReplayStore = (*postgres.Store)(nil)

func openDLQStore(ctx context.Context, cfg config.Config) (*postgres.Store, func(), error) {
	if cfg.DatabaseURL == "" {
		return nil, nil, usageError{errors.New("dlq commands need --database-url (MOCKSTAGRAM_DATABASE_URL): dead letters are archived in the database")}
	}
	return openStore(ctx, cfg)
}

// DLQList is 'mockstagram dlq list'.
type DLQList struct {
	dlqSelect
	Limit int `env:"-" default:"100" help:"At most this many letters."`
	storeFlags
}

// Run prints the matching dead letters as a table.
func (c DLQList) Run(e env) error {
	cfg := c.config()
	f, err := c.filter(time.Now())
	if err != nil {
		return usageError{err}
	}
	if c.Limit < 1 || c.Limit > store.MaxDeadLetterLimit {
		return usageError{fmt.Errorf("--limit must be in [1, %d]", store.MaxDeadLetterLimit)}
	}
	f.Limit = c.Limit
	s, closeStore, err := openDLQStore(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	letters, err := s.DeadLetters(e.ctx, f)
	if err != nil {
		return err
	}
	return printDeadLetters(e.stdout, letters)
}

// printDeadLetters writes the table of 'dlq list'.
func printDeadLetters(w io.Writer, letters []store.DeadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tTOPIC\tPK\tCLASS\tREASON\tSHARD\tMINUTE\tREPLAYED")
	for _, d := range letters {
		pk, shard, minute, replayed := "-", "-", "-", "-"
		if d.PK != 0 {
			pk = strconv.FormatInt(d.PK, 10)
		}
		if d.Shard != nil {
			shard = strconv.Itoa(*d.Shard)
		}
		if !d.Minute.IsZero() {
			minute = d.Minute.UTC().Format(time.RFC3339)
		}
		if d.ReplayedAt != nil {
			replayed = d.ReplayedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.ReceivedAt.UTC().Format(time.RFC3339), d.Topic, pk,
			tableCell(d.Class, 40), tableCell(d.Reason, 80), shard, minute, replayed)
	}
	return tw.Flush()
}

// tableCell keeps a cell on one line and at most n runes.
func tableCell(s string, n int) string {
	out := make([]rune, 0, min(len(s), n))
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			r = ' '
		}
		if len(out) == n {
			return string(out) + "..."
		}
		out = append(out, r)
	}
	return string(out)
}

// DLQReplay is 'mockstagram dlq replay'.
type DLQReplay struct {
	dlqSelect
	ID     []string `env:"-" name:"id" help:"Replay this dead letter (repeatable; even when it was replayed before). Without --id, every matching letter not yet replayed."`
	DryRun bool     `env:"-" name:"dry-run" help:"Only say what would be replayed."`
	// The broker and the rules of deadlines and suspicion rounds.
	config.Config `embed:"" group:"pipeline"`
}

// Run re-publishes the selected dead letters (handlers.Replayer says how
// each kind is replayed; a fetch whose minute is over is reported as
// expired and left unreplayed) and prints one line per letter.
func (c DLQReplay) Run(e env) error {
	cfg := c.Config
	now := time.Now()
	f, err := c.filter(now)
	if err != nil {
		return usageError{err}
	}
	if len(c.ID) > 0 {
		f.IDs = c.ID
	} else {
		f.NotReplayed = true
	}
	if !c.DryRun {
		if err := broker.Supports(cfg.Broker, broker.CrossProcess); err != nil {
			return usageError{fmt.Errorf("dlq replay needs a shared broker (--broker kafka or postgres): %w", err)}
		}
	}
	s, closeStore, err := openDLQStore(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()

	r := handlers.Replayer{
		Store:  s,
		Rules:  handlers.ReplayRules{Now: now, DeadlineGrace: cfg.DeadlineGrace, SuspicionInterval: cfg.SuspicionInterval},
		DryRun: c.DryRun,
	}
	if !c.DryRun {
		b, err := broker.New(e.ctx, cfg, broker.Deps{Logger: slog.New(slog.DiscardHandler), Pool: s.Pool()})
		if err != nil {
			return fmt.Errorf("broker %s: %w", cfg.Broker, err)
		}
		defer b.Close()
		r.Publisher = b.Publisher()
	}
	counts, err := r.Replay(e.ctx, f, func(ev handlers.ReplayEvent) { printReplayEvent(e.stdout, ev) })
	if err != nil {
		return err
	}
	verb := "replayed"
	if c.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(e.stdout, "%s %d, skipped expired %d, errors %d\n", verb, counts.Replayed, counts.Expired, counts.Errors)
	if counts.Errors > 0 {
		return fmt.Errorf("%d dead letters could not be replayed", counts.Errors)
	}
	return nil
}

// printReplayEvent writes the line of one letter of 'dlq replay'.
func printReplayEvent(w io.Writer, ev handlers.ReplayEvent) {
	d := ev.Letter
	switch ev.Outcome {
	case handlers.Replayed:
		fmt.Fprintf(w, "%s: replayed to %s\n", d.ID, d.OriginalTopic)
	case handlers.WouldReplay:
		fmt.Fprintf(w, "%s: would replay to %s\n", d.ID, d.OriginalTopic)
	case handlers.Expired:
		fmt.Fprintf(w, "%s: expired: minute %s is over, not refetched\n", d.ID, ev.Minute.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "%s: error: %v\n", d.ID, ev.Err)
	}
}
