// Package middleware configures the Watermill router middleware of every
// stage, as configured values.
package middleware

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/mockstagram/pipeline/messages"
)

// IsPermanent reports whether retrying err cannot help: a malformed payload,
// or a panic in the handler (which would panic again).
func IsPermanent(err error) bool {
	var panicErr wmw.RecoveredPanicError
	return errors.Is(err, messages.ErrMalformed) || errors.Is(err, ErrGivenUp) || errors.As(err, &panicErr)
}

// Retry configures retries of transient handler errors.
type Retry struct {
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
}

// Classes of a poisoned message (the "class" metadata of its dead letter).
const (
	ClassMalformed = "malformed"
	ClassPanic     = "panic"
)

// Chain returns the handler middleware, outermost first:
//
//  1. CorrelationID: every produced message keeps the correlation id.
//  2. PoisonQueue (filtered to permanent errors): a malformed message or a
//     panic goes to the stage's dead-letter topic with the reason in its
//     metadata, and the handler moves on. It sits outside Retry so that a
//     permanent error is not retried first.
//  3. Redelivery: a message whose deliveries keep failing transiently is
//     given up (see Redelivery) and returned as ErrGivenUp, which the
//     poison queue moves to the dead-letter topic. Outside Retry, so it
//     counts deliveries, not attempts.
//  4. Retry: transient errors (database down, broker hiccup) are retried
//     with exponential backoff; when retries run out the message is nacked
//     and redelivered later, never acked unstored.
//  5. Annotate: counts the handler runs of the delivery and, on a permanent
//     error, writes reason, class, stage and the dead-letter kind (poisoned)
//     into the message's metadata, which the poison queue publishes with the
//     original metadata (trace context included). Inside Retry so it counts every attempt.
//  6. Recoverer: innermost, so a panic becomes an error that PoisonQueue sees.
func Chain(logger *slog.Logger, poisonPub message.Publisher, poisonTopic string, retry Retry, redelivery Redelivery) ([]message.HandlerMiddleware, error) {
	poison, err := wmw.PoisonQueueWithFilter(poisonPub, poisonTopic, IsPermanent)
	if err != nil {
		return nil, err
	}
	return []message.HandlerMiddleware{
		wmw.CorrelationID,
		poison,
		redelivery.Middleware(),
		retryMiddleware(logger, retry),
		Annotate,
		wmw.Recoverer,
	}, nil
}

// Retrying is the chain of a handler without a dead-letter topic (the
// dead-letter archiver itself), outermost first: Retry with backoff (then
// nack and redelivery), Recoverer.
func Retrying(logger *slog.Logger, retry Retry) []message.HandlerMiddleware {
	return []message.HandlerMiddleware{retryMiddleware(logger, retry), wmw.Recoverer}
}

func retryMiddleware(logger *slog.Logger, retry Retry) message.HandlerMiddleware {
	r := wmw.Retry{
		MaxRetries:          retry.MaxRetries,
		InitialInterval:     retry.InitialInterval,
		MaxInterval:         retry.MaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		ShouldRetry:         func(p wmw.RetryParams) bool { return !IsPermanent(p.Err) },
		Logger:              watermill.NewSlogLogger(logger),
	}
	return r.Middleware
}

// Annotate counts the runs of the handler on a message in its "attempts"
// metadata and, when the handler fails permanently, sets "reason", "class"
// (malformed or panic), "stage" (the handler's name) and the dead-letter
// kind "poisoned" (the poison queue publishes the message with them).
func Annotate(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		n, _ := strconv.Atoi(msg.Metadata.Get(messages.MetaAttempts))
		msg.Metadata.Set(messages.MetaAttempts, strconv.Itoa(n+1))
		out, err := h(msg)
		if err != nil && IsPermanent(err) {
			class := ClassMalformed
			var panicErr wmw.RecoveredPanicError
			if errors.As(err, &panicErr) {
				class = ClassPanic
			}
			msg.Metadata.Set(messages.MetaReason, err.Error())
			msg.Metadata.Set(messages.MetaClass, class)
			msg.Metadata.Set(messages.MetaStage, message.HandlerNameFromCtx(msg.Context()))
			msg.Metadata.Set(messages.MetaDeadLetterKind, messages.DeadLetterPoisoned)
		}
		return out, err
	}
}
