package adaptive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/mockstagramapi"
)

// InfluencerAPI is the API the fetcher calls (handlers.InfluencerAPI).
type InfluencerAPI interface {
	Influencer(ctx context.Context, pk int64, deadline time.Time) (influencer.Sample, error)
}

// Wrap returns api behind the limit: each request waits for a slot (until
// its deadline, the latest moment it may start), and reports its outcome
// (Classify) when it returns. A request that gets no slot in time is not
// sent; its error is mockstagramapi.ErrRateLimitDeadline, so the fetcher
// counts the pk as expired, as for a rate-limit token that comes too late.
// A mockstagramapi.Progress in the context hears Waiting before the wait
// and Sending once the slot is granted.
func Wrap(api InfluencerAPI, l *Limit) InfluencerAPI {
	return &limited{api: api, limit: l}
}

type limited struct {
	api   InfluencerAPI
	limit *Limit
}

func (a *limited) Influencer(ctx context.Context, pk int64, deadline time.Time) (influencer.Sample, error) {
	mockstagramapi.Waiting(ctx)
	tok, err := a.limit.Acquire(ctx, deadline)
	if err != nil {
		return influencer.Sample{}, fmt.Errorf("%w: %w", mockstagramapi.ErrRateLimitDeadline, err)
	}
	mockstagramapi.Sending(ctx)
	s, err := a.api.Influencer(ctx, pk, deadline)
	tok.Release(Classify(ctx, err))
	return s, err
}

// Classify is what a request's result says about the API's capacity: any
// answer (a sample, or a permanent answer such as an unknown pk or a bad
// body) is a Success; a timeout, 429, 5xx or connection error is an
// Overload; a request that was not sent (breaker open, rate limit) or that
// ctx cut short is Ignored.
func Classify(ctx context.Context, err error) Outcome {
	if err == nil {
		return Success
	}
	if errors.Is(err, mockstagramapi.ErrRateLimitDeadline) || ctx.Err() != nil {
		return Ignore
	}
	switch mockstagramapi.AsError(err).Class {
	case mockstagramapi.ClassCircuitOpen:
		return Ignore
	case mockstagramapi.ClassTimeout, mockstagramapi.ClassRateLimited, mockstagramapi.ClassServer, mockstagramapi.ClassConnection:
		return Overload
	}
	return Success
}
