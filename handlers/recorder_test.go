package handlers_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/store"
)

// fakeStore records the batches it is given.
type fakeStore struct {
	res     store.RecordResult
	err     error
	pingErr error // Ping's answer

	mu      sync.Mutex
	batches []influencer.Batch
}

var _ handlers.BatchStore = (*fakeStore)(nil)

func (s *fakeStore) Record(_ context.Context, b influencer.Batch) (store.RecordResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, b)
	return s.res, s.err
}

func (s *fakeStore) Ping(context.Context) error { return s.pingErr }

func sample(pk int64) influencer.Sample {
	return influencer.Sample{PK: pk, Username: "u" + string(rune('a'+pk%26)), FollowerCount: 1000 + pk, FollowingCount: 10 + pk,
		Minute: minute0, FetchedAt: minute0.Add(7 * time.Second)}
}

func resultMessage(t *testing.T, b influencer.Batch) *message.Message {
	t.Helper()
	msg, err := messages.NewResult(b)
	require.NoError(t, err)
	return msg
}

func TestRecorderStoresAGoodBatchUnchanged(t *testing.T) {
	t.Parallel()
	fake := &fakeStore{res: store.RecordResult{Inserted: 2, Duplicates: 1, Missed: 1}}
	m := newMetrics()
	r := handlers.NewRecorder(fake, discardLogger(), m)
	b := influencer.Batch{Minute: minute0, Shard: 5,
		Samples:  []influencer.Sample{sample(1), sample(2), sample(3)},
		Failures: []influencer.Failure{{PK: 4, Minute: minute0, Class: mockstagramapi.ClassServer, Reason: "HTTP 503", Attempts: 3}},
	}

	require.NoError(t, r.Handle(resultMessage(t, b)))

	assert.Equal(t, []influencer.Batch{b}, fake.batches)
	assert.Equal(t, 0.0, testutil.ToFloat64(m.SamplesRejected))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.SamplesStored))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.SamplesDuplicate))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.SamplesMissed))
	assert.Equal(t, float64(minute0.Unix()), testutil.ToFloat64(m.NewestMinute))
}

func TestRecorderRejectsInvalidSamples(t *testing.T) {
	t.Parallel()
	fake := &fakeStore{res: store.RecordResult{Inserted: 2, Missed: 4}}
	m := newMetrics()
	r := handlers.NewRecorder(fake, discardLogger(), m)
	negative := sample(2)
	negative.FollowerCount = -1
	unnamed := sample(3)
	unnamed.Username = ""
	otherMinute := sample(4)
	otherMinute.Minute = minute0.Add(-time.Minute)
	dup := sample(1)
	dup.FollowerCount = 5
	b := influencer.Batch{Minute: minute0, Shard: 5,
		Samples: []influencer.Sample{sample(1), negative, unnamed, otherMinute, dup, sample(6)}}

	require.NoError(t, r.Handle(resultMessage(t, b)))

	require.Len(t, fake.batches, 1)
	assert.Equal(t, influencer.Batch{Minute: minute0, Shard: 5,
		Samples: []influencer.Sample{sample(1), sample(6)},
		Failures: []influencer.Failure{
			{PK: 2, Minute: minute0, Class: influencer.ClassInvalid, Reason: "followerCount -1 out of range [0, 10000000000]"},
			{PK: 3, Minute: minute0, Class: influencer.ClassInvalid, Reason: "username is empty"},
			{PK: 4, Minute: minute0, Class: influencer.ClassInvalid, Reason: "sample minute 2025-03-14T09:25:00Z differs from batch minute"},
			{PK: 1, Minute: minute0, Class: influencer.ClassInvalid, Reason: "duplicate pk in batch"},
		},
	}, fake.batches[0])
	assert.Equal(t, 4.0, testutil.ToFloat64(m.SamplesRejected))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.SamplesStored))
	assert.Equal(t, 4.0, testutil.ToFloat64(m.SamplesMissed))
}

func TestRecorderStoreErrorNacks(t *testing.T) {
	t.Parallel()
	storeErr := errors.New("connection reset")
	fake := &fakeStore{err: storeErr}
	m := newMetrics()
	r := handlers.NewRecorder(fake, discardLogger(), m)

	err := r.Handle(resultMessage(t, influencer.Batch{Minute: minute0, Shard: 5, Samples: []influencer.Sample{sample(1)}}))

	require.ErrorIs(t, err, storeErr)
	assert.NotErrorIs(t, err, messages.ErrMalformed)
	assert.EqualError(t, err, "record shard 5 minute 2025-03-14T09:26:00Z: connection reset")
	assert.Equal(t, 0.0, testutil.ToFloat64(m.SamplesStored))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.NewestMinute))
}

func TestRecorderRejectsMalformedPayloads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
	}{
		{"not json", `{"minute":`},
		{"empty", ``},
		{"unknown field", `{"minute":"2025-03-14T09:26:00Z","shard":1,"samples":[],"bogus":true}`},
		{"trailing data", `{"minute":"2025-03-14T09:26:00Z","shard":1,"samples":[]}x`},
		{"minute not aligned", `{"minute":"2025-03-14T09:26:01Z","shard":1,"samples":[]}`},
		{"no minute", `{"shard":1,"samples":[]}`},
		{"negative shard", `{"minute":"2025-03-14T09:26:00Z","shard":-2,"samples":[]}`},
		{"sample of wrong type", `{"minute":"2025-03-14T09:26:00Z","shard":1,"samples":[{"pk":"1"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeStore{}
			r := handlers.NewRecorder(fake, discardLogger(), newMetrics())

			err := r.Handle(message.NewMessage(watermill.NewUUID(), []byte(tt.payload)))

			require.ErrorIs(t, err, messages.ErrMalformed)
			assert.Empty(t, fake.batches)
		})
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	at := func(s influencer.Sample, f func(*influencer.Sample)) influencer.Sample {
		f(&s)
		return s
	}
	invalid := func(pk int64, reason string) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: minute0, Class: influencer.ClassInvalid, Reason: reason}
	}
	tests := []struct {
		name     string
		in       influencer.Batch
		want     influencer.Batch
		rejected int
	}{
		{
			name: "empty",
			in:   influencer.Batch{Minute: minute0, Shard: 1},
			want: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{}},
		},
		{
			name: "all good",
			in:   influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(1), sample(2)}},
			want: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(1), sample(2)}},
		},
		{
			name: "non-positive pk is only counted",
			in: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{
				at(sample(1), func(s *influencer.Sample) { s.PK = 0 }), at(sample(1), func(s *influencer.Sample) { s.PK = -3 }), sample(2)}},
			want:     influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(2)}},
			rejected: 2,
		},
		{
			name: "invalid values",
			in: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{
				at(sample(1), func(s *influencer.Sample) { s.FollowingCount = influencer.MaxCount + 1 }),
				at(sample(2), func(s *influencer.Sample) { s.Username = "a\x00b" }),
				at(sample(3), func(s *influencer.Sample) { s.Username = "\xff" }),
				sample(4),
			}},
			want: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(4)}, Failures: []influencer.Failure{
				invalid(1, "followingCount 10000000001 out of range [0, 10000000000]"),
				invalid(2, "username contains control characters"),
				invalid(3, "username is not valid UTF-8"),
			}},
			rejected: 3,
		},
		{
			name: "sample minute differs",
			in: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{
				at(sample(1), func(s *influencer.Sample) { s.Minute = minute0.Add(time.Minute) }),
				at(sample(2), func(s *influencer.Sample) { s.Minute = time.Time{} }),
			}},
			want: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{}, Failures: []influencer.Failure{
				invalid(1, "sample minute 2025-03-14T09:27:00Z differs from batch minute"),
				invalid(2, "sample minute 0001-01-01T00:00:00Z differs from batch minute"),
			}},
			rejected: 2,
		},
		{
			name: "duplicate pk keeps the first",
			in: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{
				sample(1), at(sample(1), func(s *influencer.Sample) { s.FollowerCount = 1 }), sample(1)}},
			want: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(1)}, Failures: []influencer.Failure{
				invalid(1, "duplicate pk in batch"), invalid(1, "duplicate pk in batch"),
			}},
			rejected: 2,
		},
		{
			name: "failures are normalised",
			in: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(1)}, Failures: []influencer.Failure{
				{PK: 1, Minute: minute0, Class: mockstagramapi.ClassServer, Reason: "shadowed by the sample"},
				{PK: 2, Minute: minute0.Add(time.Hour), Class: strings.Repeat("c", 50), Reason: strings.Repeat("r", 600), Attempts: 4},
				{PK: 0, Minute: minute0, Class: mockstagramapi.ClassTimeout, Reason: "no pk"},
			}},
			want: influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(1)}, Failures: []influencer.Failure{
				{PK: 2, Minute: minute0, Class: strings.Repeat("c", 40) + "...", Reason: strings.Repeat("r", 500) + "...", Attempts: 4},
			}},
			rejected: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, rejected := handlers.Clean(tt.in)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.rejected, rejected)
		})
	}
}

// A transient error is marked ErrStoreUnavailable only when the store does
// not answer a Ping either (an outage, excused from the redelivery limit).
func TestRecorderMarksStoreOutages(t *testing.T) {
	t.Parallel()
	transient := errors.New("deadlock detected")
	for _, tc := range []struct {
		name        string
		err, ping   error
		unavailable bool
	}{
		{"store answers: the batch's problem", transient, nil, false},
		{"store down", transient, errors.New("connection refused"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := handlers.NewRecorder(&fakeStore{err: tc.err, pingErr: tc.ping}, discardLogger(), newMetrics())
			err := r.Handle(resultMessage(t, influencer.Batch{Minute: minute0, Shard: 1, Samples: []influencer.Sample{sample(1)}}))
			require.Error(t, err)
			assert.Equal(t, tc.unavailable, errors.Is(err, handlers.ErrStoreUnavailable), "%v", err)
		})
	}
}
