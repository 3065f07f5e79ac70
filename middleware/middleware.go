// Package middleware configures the Watermill router middleware of every
// stage, as configured values.
package middleware

import (
	"errors"
	"log/slog"
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
	return errors.Is(err, messages.ErrMalformed) || errors.As(err, &panicErr)
}

// Retry configures retries of transient handler errors.
type Retry struct {
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
}

// Chain returns the handler middleware, outermost first:
//
//  1. CorrelationID: every produced message keeps the correlation id.
//  2. PoisonQueue (filtered to permanent errors): a malformed message or a
//     panic goes to the stage's dead-letter topic with the reason in its
//     metadata, and the handler moves on. It sits outside Retry so that a
//     permanent error is not retried first.
//  3. Retry: transient errors (database down, broker hiccup) are retried
//     with exponential backoff; when retries run out the message is nacked
//     and redelivered later, never acked unstored.
//  4. Recoverer: innermost, so a panic becomes an error that PoisonQueue sees.
func Chain(logger *slog.Logger, poisonPub message.Publisher, poisonTopic string, retry Retry) ([]message.HandlerMiddleware, error) {
	poison, err := wmw.PoisonQueueWithFilter(poisonPub, poisonTopic, IsPermanent)
	if err != nil {
		return nil, err
	}
	r := wmw.Retry{
		MaxRetries:          retry.MaxRetries,
		InitialInterval:     retry.InitialInterval,
		MaxInterval:         retry.MaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		ShouldRetry:         func(p wmw.RetryParams) bool { return !IsPermanent(p.Err) },
		Logger:              watermill.NewSlogLogger(logger),
	}
	return []message.HandlerMiddleware{
		wmw.CorrelationID,
		poison,
		r.Middleware,
		wmw.Recoverer,
	}, nil
}
