package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
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
}

func (s dlqSelect) filter(now time.Time) (store.DeadLetterFilter, error) {
	f := store.DeadLetterFilter{Topic: s.Topic, Reason: s.Reason}
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

// dlqStore is what the dlq commands use of the store.
type dlqStore interface {
	DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.DeadLetter, error)
	MarkReplayed(ctx context.Context, id string, at time.Time) error
}

var _ dlqStore = (*postgres.Store)(nil)

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
}

// Run prints the matching dead letters as a table.
func (c DLQList) Run(e env, cfg config.Config) error {
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
	fmt.Fprintln(tw, "ID\tRECEIVED\tTOPIC\tCLASS\tREASON\tSHARD\tMINUTE\tREPLAYED")
	for _, d := range letters {
		shard, minute, replayed := "-", "-", "-"
		if d.Shard != nil {
			shard = strconv.Itoa(*d.Shard)
		}
		if !d.Minute.IsZero() {
			minute = d.Minute.UTC().Format(time.RFC3339)
		}
		if d.ReplayedAt != nil {
			replayed = d.ReplayedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.ReceivedAt.UTC().Format(time.RFC3339), d.Topic,
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
}

// replayPage is how many letters one query of a replay reads.
const replayPage = 500

// Run re-publishes the selected dead letters: a result letter as the
// original result message (recording is idempotent); a fetcher letter as a
// one-pk task, but only while its minute lasts: a fetch for a minute that is
// over would store the current value under the wrong minute, so such a
// letter is reported as expired and left unreplayed.
func (c DLQReplay) Run(e env, cfg config.Config) error {
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
	if !c.DryRun && cfg.Broker == config.BrokerGoChannel {
		return usageError{errors.New("dlq replay needs a shared broker (--broker kafka or postgres): the gochannel broker lives only inside one process")}
	}
	s, closeStore, err := openDLQStore(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()

	var pub message.Publisher
	if !c.DryRun {
		b, err := broker.New(e.ctx, cfg, broker.Deps{Logger: slog.New(slog.DiscardHandler), Pool: s.Pool()})
		if err != nil {
			return fmt.Errorf("broker %s: %w", cfg.Broker, err)
		}
		defer b.Close()
		pub = b.Publisher()
	}
	r := replayer{store: s, pub: pub, out: e.stdout, now: now, grace: cfg.DeadlineGrace, interval: cfg.SuspicionInterval, dryRun: c.DryRun}
	f.Limit = replayPage
	for {
		letters, err := s.DeadLetters(e.ctx, f)
		if err != nil {
			return err
		}
		for _, d := range letters {
			r.replay(e.ctx, d)
		}
		if len(letters) < f.Limit {
			break
		}
		f.After = letters[len(letters)-1].ID
	}
	verb := "replayed"
	if c.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(e.stdout, "%s %d, skipped expired %d, errors %d\n", verb, r.replayed, r.expired, r.errors)
	if r.errors > 0 {
		return fmt.Errorf("%d dead letters could not be replayed", r.errors)
	}
	return nil
}

// replayer replays one letter at a time and counts the outcomes.
type replayer struct {
	store dlqStore
	pub   message.Publisher // nil in a dry run
	out   io.Writer
	now   time.Time
	grace time.Duration
	// interval is the suspicion round: a replayed suspicion check may run
	// for that long.
	interval time.Duration
	dryRun   bool

	replayed, expired, errors int
}

func (r *replayer) replay(ctx context.Context, d store.DeadLetter) {
	msg, expiredMinute, err := replayMessage(d, r.now, r.grace, r.interval)
	switch {
	case err != nil:
		r.errors++
		fmt.Fprintf(r.out, "%s: error: %v\n", d.ID, err)
		return
	case !expiredMinute.IsZero():
		r.expired++
		fmt.Fprintf(r.out, "%s: expired: minute %s is over, not refetched\n", d.ID, expiredMinute.UTC().Format(time.RFC3339))
		return
	case r.dryRun:
		r.replayed++
		fmt.Fprintf(r.out, "%s: would replay to %s\n", d.ID, d.OriginalTopic)
		return
	}
	if err := r.pub.Publish(d.OriginalTopic, msg); err != nil {
		r.errors++
		fmt.Fprintf(r.out, "%s: error: publish to %s: %v\n", d.ID, d.OriginalTopic, err)
		return
	}
	if err := r.store.MarkReplayed(ctx, d.ID, r.now); err != nil {
		r.errors++
		fmt.Fprintf(r.out, "%s: error: replayed to %s but not marked: %v\n", d.ID, d.OriginalTopic, err)
		return
	}
	r.replayed++
	fmt.Fprintf(r.out, "%s: replayed to %s\n", d.ID, d.OriginalTopic)
}

// replayMessage is the message that replays d, or the minute that is over
// (for a fetch), or why d cannot be replayed.
func replayMessage(d store.DeadLetter, now time.Time, grace, interval time.Duration) (*message.Message, time.Time, error) {
	over := func(minute time.Time) bool { return !now.Before(minute.Add(time.Minute + grace)) }
	switch d.OriginalTopic {
	case messages.TopicFetchTasks:
		var task messages.Task
		if d.Stage == messages.HandlerFetcher {
			// One pk the fetcher gave up on: a one-pk task for its minute.
			var fd messages.FetchDeadLetter
			if err := json.Unmarshal(d.Payload, &fd); err != nil || fd.PK <= 0 || fd.Minute.IsZero() {
				return nil, time.Time{}, fmt.Errorf("payload is not a fetch dead letter")
			}
			task = messages.Task{Minute: fd.Minute, Shard: fd.Shard, Deadline: fd.Minute.Add(time.Minute + grace), PKs: []int64{fd.PK}}
		} else {
			// A task the fetcher could not handle (poison queue).
			t, err := messages.DecodeTask(d.Payload)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("cannot replay: %w", err)
			}
			task = t
		}
		if over(task.Minute) {
			return nil, task.Minute, nil
		}
		msg, err := messages.NewTask(task)
		if err != nil {
			return nil, time.Time{}, err
		}
		inheritForReplay(msg, d)
		return msg, time.Time{}, nil
	case messages.TopicSuspicionTasks:
		// A suspicion check is never for the wrong time (the answer is the
		// influencer's latest): a one-pk task (or the original task) that may
		// run for a round from now. Pks answered since the letter's round are
		// skipped by the checker.
		var task messages.SuspicionTask
		if d.Stage == messages.HandlerSuspicion {
			var fd messages.FetchDeadLetter
			if err := json.Unmarshal(d.Payload, &fd); err != nil || fd.PK <= 0 || fd.Minute.IsZero() {
				return nil, time.Time{}, fmt.Errorf("payload is not a suspicion dead letter")
			}
			task = messages.SuspicionTask{Round: fd.Minute, Shard: fd.Shard, PKs: []int64{fd.PK}}
		} else {
			t, err := messages.DecodeSuspicionTask(d.Payload)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("cannot replay: %w", err)
			}
			task = t
		}
		task.Deadline = now.Add(interval)
		msg, err := messages.NewSuspicionTask(task)
		if err != nil {
			return nil, time.Time{}, err
		}
		inheritForReplay(msg, d)
		return msg, time.Time{}, nil
	case messages.TopicFetcherResults:
		// The original result message: recording it again is idempotent.
		msg := message.NewMessage(watermill.NewUUID(), d.Payload)
		inheritForReplay(msg, d)
		return msg, time.Time{}, nil
	default:
		return nil, time.Time{}, fmt.Errorf("original topic %q is not replayable", d.OriginalTopic)
	}
}

// inheritForReplay gives msg the letter's original metadata (trace context
// included) without the dead-letter annotations, and marks it as a replay.
func inheritForReplay(msg *message.Message, d store.DeadLetter) {
	for k, v := range d.Metadata {
		if messages.IsDeadLetterKey(k) {
			continue
		}
		if _, set := msg.Metadata[k]; !set {
			msg.Metadata.Set(k, v)
		}
	}
	msg.Metadata.Set(messages.MetaReplayOf, d.ID)
}
