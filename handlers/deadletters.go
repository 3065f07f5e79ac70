package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/store"
)

// DeadLetterStore archives dead letters idempotently on their id.
type DeadLetterStore interface {
	SaveDeadLetter(ctx context.Context, d store.DeadLetter) error
}

// Limits on the text archived from a dead letter's metadata (it may come
// from anywhere, a hostile API body included).
const (
	maxReasonLength = 2000
	maxLabelLength  = 200
)

// DeadLetterArchiver stores every message of the dead-letter topics so
// that 'mockstagram dlq list|replay' can find it: a pk failure (one pk,
// with reason, class and attempts in its metadata) or a message the poison
// queue moved there (with Watermill's *_poisoned metadata and the
// annotations of middleware.Annotate). Each says which in its
// dead_letter_kind metadata, archived with the rest (DeadLetterKind reads
// it; Replayer is the way back). The message is acked only after the
// store has it; a message archived before (redelivery) changes nothing.
type DeadLetterArchiver struct {
	store   DeadLetterStore
	clock   clockwork.Clock
	logger  *slog.Logger
	metrics *metrics.Pipeline
}

// NewDeadLetterArchiver creates an archiver.
func NewDeadLetterArchiver(store DeadLetterStore, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) *DeadLetterArchiver {
	return &DeadLetterArchiver{store: store, clock: clock, logger: logger, metrics: m}
}

// Handler returns the Watermill handler for the dead-letter topic.
func (a *DeadLetterArchiver) Handler(topic string) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error { return a.Archive(msg.Context(), topic, msg) }
}

// Archive stores msg, received on the dead-letter topic.
func (a *DeadLetterArchiver) Archive(ctx context.Context, topic string, msg *message.Message) error {
	d := DeadLetterOf(topic, msg, a.clock.Now())
	if err := a.store.SaveDeadLetter(ctx, d); err != nil {
		return fmt.Errorf("archive dead letter %s from %s: %w", d.ID, topic, err)
	}
	a.metrics.DeadLettersArchived.WithLabelValues(topic).Inc()
	a.logger.InfoContext(ctx, "dead letter archived", "id", d.ID, "topic", topic, "class", d.Class, "reason", d.Reason)
	return nil
}

// DeadLetterOf is the archive record of msg received on topic at now. The
// reason, class, stage and attempts come from our metadata keys, else from
// the poison queue's; the original topic is the poisoned topic, else the
// topic whose failures the dead-letter topic holds. Text is made storable
// (valid UTF-8, no NUL) and bounded; the payload is kept as it is.
func DeadLetterOf(topic string, msg *message.Message, now time.Time) store.DeadLetter {
	meta := msg.Metadata
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := meta.Get(k); v != "" {
				return v
			}
		}
		return ""
	}
	d := store.DeadLetter{
		ID:            cleanText(msg.UUID, maxLabelLength),
		Topic:         cleanText(topic, maxLabelLength),
		OriginalTopic: cleanText(first(wmw.PoisonedTopicKey), maxLabelLength),
		Reason:        cleanText(first(messages.MetaReason, wmw.ReasonForPoisonedKey), maxReasonLength),
		Class:         cleanText(first(messages.MetaClass), maxLabelLength),
		Stage:         cleanText(first(messages.MetaStage, wmw.PoisonedHandlerKey), maxLabelLength),
		Payload:       msg.Payload,
		Metadata:      make(map[string]string, len(meta)),
		ReceivedAt:    now.UTC(),
	}
	if d.ID == "" {
		// A message without UUID (a foreign producer): an id derived from
		// its content keeps archiving idempotent.
		sum := sha256.Sum256(append([]byte(topic+"\x00"), msg.Payload...))
		d.ID = "sha256-" + hex.EncodeToString(sum[:16])
	}
	if d.OriginalTopic == "" {
		d.OriginalTopic = OriginalTopic(topic)
	}
	if d.Reason == "" {
		d.Reason = "no reason given"
	}
	if d.Class == "" {
		d.Class = "unknown"
	}
	if n, err := strconv.Atoi(meta.Get(messages.MetaAttempts)); err == nil && n >= 0 {
		d.Attempts = n
	}
	if n, err := strconv.Atoi(meta.Get(messages.MetaShard)); err == nil && n >= 0 && n <= 1<<30 {
		d.Shard = &n
	}
	if m, err := time.Parse(time.RFC3339, meta.Get(messages.MetaMinute)); err == nil {
		d.Minute = m.UTC()
	}
	for k, v := range maps.All(meta) {
		d.Metadata[cleanText(k, maxLabelLength)] = cleanText(v, maxReasonLength)
	}
	if fd, ok := pkFailure(d.Payload); ok && DeadLetterKind(d) == messages.DeadLetterPKFailure {
		d.PK = fd.PK
	}
	return d
}

// OriginalTopic is the topic whose failures the dead-letter topic holds.
func OriginalTopic(dlqTopic string) string {
	switch dlqTopic {
	case messages.TopicFetcherDLQ:
		return messages.TopicFetchTasks
	case messages.TopicResultDLQ:
		return messages.TopicFetcherResults
	case messages.TopicSuspicionDLQ:
		return messages.TopicSuspicionTasks
	}
	return strings.TrimSuffix(dlqTopic, "_dlq")
}

// cleanText makes s storable as text: invalid UTF-8 and NUL become U+FFFD,
// and it is cut to at most n bytes (at a rune boundary).
func cleanText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
