package adaptive_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/mockstagramapi/adaptive"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	live := context.Background()
	cut, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want adaptive.Outcome
	}{
		{"sample", live, nil, adaptive.Success},
		{"unknown pk is an answer", live, &mockstagramapi.Error{Class: mockstagramapi.ClassNotFound}, adaptive.Success},
		{"malformed body is an answer", live, &mockstagramapi.Error{Class: mockstagramapi.ClassMalformed}, adaptive.Success},
		{"4xx is an answer", live, &mockstagramapi.Error{Class: mockstagramapi.ClassClient}, adaptive.Success},
		{"timeout", live, &mockstagramapi.Error{Class: mockstagramapi.ClassTimeout, Retryable: true}, adaptive.Overload},
		{"429", live, &mockstagramapi.Error{Class: mockstagramapi.ClassRateLimited, Retryable: true}, adaptive.Overload},
		{"503", live, &mockstagramapi.Error{Class: mockstagramapi.ClassServer, Reason: "HTTP 503", Retryable: true}, adaptive.Overload},
		{"connection", live, &mockstagramapi.Error{Class: mockstagramapi.ClassConnection, Retryable: true}, adaptive.Overload},
		{"wrapped timeout", live, fmt.Errorf("get: %w", &mockstagramapi.Error{Class: mockstagramapi.ClassTimeout}), adaptive.Overload},
		{"breaker open: not sent", live, &mockstagramapi.Error{Class: mockstagramapi.ClassCircuitOpen, Retryable: true}, adaptive.Ignore},
		{"rate limit: not sent", live, mockstagramapi.ErrRateLimitDeadline, adaptive.Ignore},
		{"cut short by our deadline", cut, &mockstagramapi.Error{Class: mockstagramapi.ClassTimeout}, adaptive.Ignore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, adaptive.Classify(tc.ctx, tc.err))
		})
	}
}

// fakeAPI answers with err after waiting for release (if set), on clk.
type fakeAPI struct {
	calls   atomic.Int64
	release chan struct{}
	clk     *clockwork.FakeClock
	rtt     time.Duration
	err     error
}

func (f *fakeAPI) Influencer(ctx context.Context, pk int64, _ time.Time) (influencer.Sample, error) {
	f.calls.Add(1)
	if f.release != nil {
		<-f.release
	}
	if f.rtt > 0 {
		f.clk.Advance(f.rtt)
	}
	if f.err != nil {
		return influencer.Sample{}, f.err
	}
	return influencer.Sample{PK: pk, Username: "u", FollowerCount: 10, FollowingCount: 1}, nil
}

func TestWrapSendsNothingWithoutASlotBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	l, clk, _ := newLimit(t, gradientOnly(1, 1, 1, 1000))
	api := &fakeAPI{release: make(chan struct{})}
	wrapped := adaptive.Wrap(api, l)

	first := make(chan error, 1)
	go func() {
		_, err := wrapped.Influencer(context.Background(), 1, time.Time{})
		first <- err
	}()
	waitFor(t, func() bool { return api.calls.Load() == 1 }, "first request sent")

	_, err := wrapped.Influencer(context.Background(), 2, clk.Now())
	require.ErrorIs(t, err, mockstagramapi.ErrRateLimitDeadline, "the fetcher counts it as expired")
	require.ErrorIs(t, err, adaptive.ErrDeadline)
	assert.EqualValues(t, 1, api.calls.Load(), "the second request was not sent")

	close(api.release)
	require.NoError(t, <-first)
	assert.Zero(t, l.InFlight())
	s, err := wrapped.Influencer(context.Background(), 3, clk.Now())
	require.NoError(t, err, "a free slot is taken at once")
	assert.EqualValues(t, 3, s.PK)
}

func TestWrapReportsOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		rtt    time.Duration
		shrink bool
	}{
		{"timeouts shrink the limit", &mockstagramapi.Error{Class: mockstagramapi.ClassTimeout, Retryable: true}, 5 * time.Second, true},
		{"unknown pks answered fast let it grow", &mockstagramapi.Error{Class: mockstagramapi.ClassNotFound}, time.Millisecond, false},
		{"samples answered fast let it grow", nil, time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, clk, _ := newLimit(t, gradientOnly(1, 100, 1, 1))
			api := &fakeAPI{clk: clk, rtt: tc.rtt, err: tc.err}
			wrapped := adaptive.Wrap(api, l)
			// Limit 1, one request at a time: every answer is one window.
			for pk := range int64(20) {
				_, err := wrapped.Influencer(context.Background(), pk, time.Time{})
				if tc.err == nil {
					require.NoError(t, err)
				} else {
					require.True(t, errors.Is(err, tc.err), "the API's error is returned as is: %v", err)
				}
			}
			if tc.shrink {
				assert.Equal(t, 1.0, l.Current(), "at min")
			} else {
				assert.Greater(t, l.Current(), 1.0)
			}
			assert.Zero(t, l.InFlight())
		})
	}
}
