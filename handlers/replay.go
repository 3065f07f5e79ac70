package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/store"
)

// DeadLetterKind is what d holds: messages.DeadLetterPKFailure (one pk a
// stage gave up on) or messages.DeadLetterPoisoned (a message its handler
// failed on permanently), as its metadata says. A letter archived before
// the kind was set has it derived: the poison queue's topic_poisoned
// metadata marks a poisoned message; otherwise a payload that is a pk
// failure (a pk and a minute) is one; anything else counts as poisoned,
// the original message.
func DeadLetterKind(d store.DeadLetter) string {
	if kind := d.Metadata[messages.MetaDeadLetterKind]; kind != "" {
		return kind
	}
	if _, poisoned := d.Metadata[wmw.PoisonedTopicKey]; poisoned {
		return messages.DeadLetterPoisoned
	}
	if _, ok := pkFailure(d.Payload); ok {
		return messages.DeadLetterPKFailure
	}
	return messages.DeadLetterPoisoned
}

// pkFailure decodes the payload of a pk-failure letter.
func pkFailure(payload []byte) (messages.FetchDeadLetter, bool) {
	var fd messages.FetchDeadLetter
	if err := json.Unmarshal(payload, &fd); err != nil || fd.PK <= 0 || fd.Minute.IsZero() {
		return messages.FetchDeadLetter{}, false
	}
	return fd, true
}

// ReplayRules are what a replay judges a letter by.
type ReplayRules struct {
	Now time.Time
	// DeadlineGrace: a fetch for minute M is replayed only before
	// influencer.Deadline(M, grace), with that deadline; later it would
	// store the current value under the wrong minute.
	DeadlineGrace time.Duration
	// SuspicionInterval is the suspicion round: a replayed suspicion check
	// may run for that long from now.
	SuspicionInterval time.Duration
}

// ReplayMessage is the message that replays d (the inverse of
// DeadLetterOf), or the minute that is over (a fetch whose minute has
// passed its deadline), or why d cannot be replayed:
//
//   - a fetch: a pk failure becomes a one-pk task for its minute, a
//     poisoned task the task again, either only while its minute lasts;
//   - a suspicion check: a one-pk (or the original) suspicion task, whatever
//     its round's age (an is_suspicious answer is never for the wrong time);
//   - a result: the original message (recording it again is idempotent).
//
// The message keeps the letter's original metadata, trace context included,
// without the dead-letter annotations, and is marked as a replay of d.
func ReplayMessage(d store.DeadLetter, r ReplayRules) (*message.Message, time.Time, error) {
	kind := DeadLetterKind(d)
	if kind != messages.DeadLetterPKFailure && kind != messages.DeadLetterPoisoned {
		return nil, time.Time{}, fmt.Errorf("unknown dead-letter kind %q", kind)
	}
	var (
		msg *message.Message
		err error
	)
	switch d.OriginalTopic {
	case messages.TopicFetchTasks:
		var task messages.Task
		if kind == messages.DeadLetterPKFailure {
			fd, ok := pkFailure(d.Payload)
			if !ok {
				return nil, time.Time{}, errors.New("payload is not a fetch dead letter")
			}
			task = messages.Task{Minute: fd.Minute, Shard: fd.Shard, PKs: []int64{fd.PK}}
		} else if task, err = messages.DecodeTask(d.Payload); err != nil {
			return nil, time.Time{}, fmt.Errorf("cannot replay: %w", err)
		}
		task.Deadline = influencer.Deadline(task.Minute, r.DeadlineGrace)
		if !r.Now.Before(task.Deadline) {
			return nil, task.Minute, nil
		}
		msg, err = messages.NewTask(task)
	case messages.TopicSuspicionTasks:
		// Pks answered since the letter's round are skipped by the checker.
		var task messages.SuspicionTask
		if kind == messages.DeadLetterPKFailure {
			fd, ok := pkFailure(d.Payload)
			if !ok {
				return nil, time.Time{}, errors.New("payload is not a suspicion dead letter")
			}
			task = messages.SuspicionTask{Round: fd.Minute, Shard: fd.Shard, PKs: []int64{fd.PK}}
		} else if task, err = messages.DecodeSuspicionTask(d.Payload); err != nil {
			return nil, time.Time{}, fmt.Errorf("cannot replay: %w", err)
		}
		task.Deadline = r.Now.Add(r.SuspicionInterval)
		msg, err = messages.NewSuspicionTask(task)
	case messages.TopicFetcherResults:
		msg = message.NewMessage(watermill.NewUUID(), d.Payload)
	default:
		return nil, time.Time{}, fmt.Errorf("original topic %q is not replayable", d.OriginalTopic)
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	inheritForReplay(msg, d)
	return msg, time.Time{}, nil
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

// ReplayStore is what a replay uses of the store.
type ReplayStore interface {
	DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.DeadLetter, error)
	MarkReplayed(ctx context.Context, id string, at time.Time) error
}

// ReplayOutcome is what became of one letter.
type ReplayOutcome int

// Outcomes of a letter's replay.
const (
	Replayed    ReplayOutcome = iota + 1 // published to its original topic and marked replayed
	WouldReplay                          // a dry run: it would be replayed
	Expired                              // a fetch whose minute is over: not refetched, left unreplayed
	ReplayError                          // not replayable, or the publish or mark failed (Err says which)
)

// ReplayEvent reports one letter's replay.
type ReplayEvent struct {
	Letter  store.DeadLetter
	Outcome ReplayOutcome
	Minute  time.Time // Expired: the minute that is over
	Err     error     // ReplayError
}

// ReplayCounts sums the outcomes of a replay.
type ReplayCounts struct {
	Replayed, Expired, Errors int // Replayed includes WouldReplay in a dry run
}

// Replayer re-publishes archived dead letters ('mockstagram dlq replay').
type Replayer struct {
	Store     ReplayStore
	Publisher Publisher // unused in a dry run
	Rules     ReplayRules
	DryRun    bool // only report what would be replayed
}

// replayPage is how many letters one query of a replay reads.
const replayPage = 500

// Replay replays every letter f selects (f.Limit and f.After are its own:
// it reads page by page), oldest first, and calls report for each. It
// returns the counts, or an error when the store cannot be read; a letter
// that fails is reported and counted, and the replay goes on.
func (r Replayer) Replay(ctx context.Context, f store.DeadLetterFilter, report func(ReplayEvent)) (ReplayCounts, error) {
	var counts ReplayCounts
	f.Limit, f.After = replayPage, ""
	for {
		letters, err := r.Store.DeadLetters(ctx, f)
		if err != nil {
			return counts, fmt.Errorf("read dead letters: %w", err)
		}
		for _, d := range letters {
			ev := r.replay(ctx, d)
			switch ev.Outcome {
			case Replayed, WouldReplay:
				counts.Replayed++
			case Expired:
				counts.Expired++
			case ReplayError:
				counts.Errors++
			}
			report(ev)
		}
		if len(letters) < f.Limit {
			return counts, nil
		}
		f.After = letters[len(letters)-1].ID
	}
}

func (r Replayer) replay(ctx context.Context, d store.DeadLetter) ReplayEvent {
	ev := ReplayEvent{Letter: d}
	msg, over, err := ReplayMessage(d, r.Rules)
	switch {
	case err != nil:
		ev.Outcome, ev.Err = ReplayError, err
	case !over.IsZero():
		ev.Outcome, ev.Minute = Expired, over
	case r.DryRun:
		ev.Outcome = WouldReplay
	default:
		if err := r.Publisher.Publish(d.OriginalTopic, msg); err != nil {
			ev.Outcome, ev.Err = ReplayError, fmt.Errorf("publish to %s: %w", d.OriginalTopic, err)
		} else if err := r.Store.MarkReplayed(ctx, d.ID, r.Rules.Now); err != nil {
			ev.Outcome, ev.Err = ReplayError, fmt.Errorf("replayed to %s but not marked: %w", d.OriginalTopic, err)
		} else {
			ev.Outcome = Replayed
		}
	}
	return ev
}
