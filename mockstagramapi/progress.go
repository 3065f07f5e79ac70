package mockstagramapi

import "context"

// Progress is told where a request is while the call that makes it blocks:
// Waiting when it queues for a slot (a concurrency limit, the rate limit)
// and Sending when it leaves for the API. A caller that must tell "never
// sent" from "sent and unanswered" at a deadline (the fetcher: the first is
// expired work, the second a timeout) puts one in the request's context with
// WithProgress; without one, nothing is told.
type Progress interface {
	Waiting()
	Sending()
}

type progressKey struct{}

// WithProgress returns ctx carrying p.
func WithProgress(ctx context.Context, p Progress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

// Waiting tells ctx's Progress, if any, that its request queues.
func Waiting(ctx context.Context) {
	if p, ok := ctx.Value(progressKey{}).(Progress); ok {
		p.Waiting()
	}
}

// Sending tells ctx's Progress, if any, that its request leaves for the API.
func Sending(ctx context.Context) {
	if p, ok := ctx.Value(progressKey{}).(Progress); ok {
		p.Sending()
	}
}
