// Package messages is the one place for topic names, handler names, metadata
// keys and the payloads that travel between the pipeline's stages.
package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/mockstagram/pipeline/influencer"
)

// Topics.
const (
	TopicFetchTasks     = "influencer_fetch_tasks"
	TopicFetcherResults = "fetcher_results"
	TopicFetcherDLQ     = "fetcher_dlq"
	TopicResultDLQ      = "result_handler_dlq"
	TopicSuspicionTasks = "suspicion_tasks"
	TopicSuspicionDLQ   = "suspicion_dlq"
)

// Handler names (also consumer group suffixes).
const (
	HandlerFetcher     = "fetcher"
	HandlerRecorder    = "recorder"
	HandlerSuspicion   = "suspicion"
	HandlerDeadLetters = "dead-letters" // the dead-letter archiver (consumer group of both DLQ topics)
)

// Metadata keys.
const (
	MetaShard  = "shard"  // partition key: the shard number
	MetaMinute = "minute" // RFC 3339 minute of the task or result
	MetaReason = "reason" // why a message was dead-lettered
	MetaClass  = "class"  // failure class of a dead letter
	MetaStage  = "stage"  // the stage that dead-lettered it
	// MetaAttempts is how many times the work was tried before it was
	// dead-lettered: API requests for a pk, handler runs for a poisoned message.
	MetaAttempts = "attempts"
	// MetaCount is how many failures a pk's dead letter stands for: this
	// one and those not dead-lettered since the pk's previous letter of the
	// same class.
	MetaCount = "count"
	// MetaReplayOf marks a message re-published by 'dlq replay' with the id
	// of the dead letter it replays.
	MetaReplayOf = "replay_of"
	// MetaDeadLetterKind says what a dead letter holds: DeadLetterPKFailure
	// or DeadLetterPoisoned. Letters archived before it existed lack it.
	MetaDeadLetterKind = "dead_letter_kind"
)

// Kinds of dead letter (the MetaDeadLetterKind metadata).
const (
	// DeadLetterPKFailure is one pk a stage gave up on: the payload is a
	// FetchDeadLetter (NewFetchDeadLetter, NewSuspicionDeadLetter).
	DeadLetterPKFailure = "pk-failure"
	// DeadLetterPoisoned is a message its handler failed on permanently
	// (malformed, or a panic), moved by the poison queue: the payload is
	// the original message's.
	DeadLetterPoisoned = "poisoned"
)

// deadLetterKeys are the metadata keys a dead letter adds to the original
// message's metadata (ours and those of Watermill's poison queue); a replay
// removes them.
var deadLetterKeys = []string{MetaReason, MetaClass, MetaStage, MetaAttempts, MetaCount, MetaDeadLetterKind,
	wmw.ReasonForPoisonedKey, wmw.PoisonedTopicKey, wmw.PoisonedHandlerKey, wmw.PoisonedSubscriberKey}

// IsDeadLetterKey reports whether key is an annotation a dead letter adds
// to the original metadata.
func IsDeadLetterKey(key string) bool {
	return slices.Contains(deadLetterKeys, key)
}

// InheritMetadata copies every entry of from that to does not set: a
// message produced from another keeps its trace context and correlation id.
func InheritMetadata(to, from message.Metadata) {
	for k, v := range from {
		if _, set := to[k]; !set {
			to.Set(k, v)
		}
	}
}

// MaxPayload bounds every decoded payload (a 1,000,000-pk shard is ~20 MB;
// realistic shards are far smaller).
const MaxPayload = 32 << 20

// Task asks the fetcher to fetch pks for one shard-minute.
type Task struct {
	Minute   time.Time `json:"minute"`
	Shard    int       `json:"shard"`
	Deadline time.Time `json:"deadline"`
	PKs      []int64   `json:"pks"`
}

// Validate reports why a task cannot be worked on.
func (t Task) Validate() error {
	var errs []error
	if !influencer.IsMinute(t.Minute) {
		errs = append(errs, errors.New("task minute missing or not minute-aligned"))
	}
	if t.Deadline.Before(t.Minute) {
		errs = append(errs, errors.New("task deadline before its minute"))
	}
	return errors.Join(append(errs, shardErrors("task", t.Shard, t.PKs)...)...)
}

// shardErrors are the problems of a shard task's shard and pks.
func shardErrors(kind string, shard int, pks []int64) []error {
	var errs []error
	if shard < 0 {
		errs = append(errs, fmt.Errorf("%s shard %d negative", kind, shard))
	}
	for _, pk := range pks {
		if pk <= 0 {
			errs = append(errs, fmt.Errorf("%s pk %d not positive", kind, pk))
			break
		}
	}
	return errs
}

// ErrMalformed marks a payload that can never be processed: it goes to the
// poison queue instead of being retried.
var ErrMalformed = errors.New("malformed message")

// NewTask builds the message for a task; the shard is the partition key.
func NewTask(t Task) (*message.Message, error) {
	return newJSON(t, t.Shard, t.Minute)
}

// DecodeTask decodes and validates a task payload.
func DecodeTask(payload []byte) (Task, error) {
	var t Task
	if err := decodeStrict(payload, &t); err != nil {
		return Task{}, err
	}
	if err := t.Validate(); err != nil {
		return Task{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return t, nil
}

// NewFetchDeadLetter builds a fetcher_dlq record: the payload is the
// failure, the metadata its kind, reason, class, stage and attempts (the fetcher
// adds the task's metadata with InheritMetadata).
func NewFetchDeadLetter(d FetchDeadLetter) (*message.Message, error) {
	return newPKDeadLetter(d, HandlerFetcher)
}

// newPKDeadLetter is the dead letter of one pk that stage gave up on.
func newPKDeadLetter(d FetchDeadLetter, stage string) (*message.Message, error) {
	msg, err := newJSON(d, d.Shard, d.Minute)
	if err != nil {
		return nil, err
	}
	msg.Metadata.Set(MetaReason, d.Reason)
	msg.Metadata.Set(MetaClass, d.Class)
	msg.Metadata.Set(MetaStage, stage)
	msg.Metadata.Set(MetaAttempts, strconv.Itoa(d.Attempts))
	msg.Metadata.Set(MetaDeadLetterKind, DeadLetterPKFailure)
	return msg, nil
}

func newJSON(v any, shard int, minute time.Time) (*message.Message, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return newMessage(payload, shard, minute), nil
}

func newMessage(payload []byte, shard int, minute time.Time) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(MetaShard, strconv.Itoa(shard))
	msg.Metadata.Set(MetaMinute, minute.UTC().Format(time.RFC3339))
	return msg
}

func decodeStrict(payload []byte, v any) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrMalformed, len(payload), MaxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %T: %w", ErrMalformed, v, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after %T", ErrMalformed, v)
	}
	return nil
}
