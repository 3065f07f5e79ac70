package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// recordStore answers Record with the next result of its list.
type recordStore struct {
	store.Store // nil: only Record is used
	results     []store.RecordResult
	err         error
}

func (s *recordStore) Record(context.Context, influencer.Batch) (store.RecordResult, error) {
	if s.err != nil {
		return store.RecordResult{}, s.err
	}
	r := s.results[0]
	s.results = s.results[1:]
	return r, nil
}

func TestMeterCountsPerMinute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(m1.Add(time.Minute + 500*time.Millisecond)) // 0.5 s after the end of m1
	next := &recordStore{results: []store.RecordResult{
		{Inserted: 6, Missed: 1}, // m1 at +0.5 s
		{Inserted: 3},            // m1 at +2.5 s: complete (6+1+3 = 10)
		{Inserted: 2},            // m2 at +1.5 s after m2's end
		{Inserted: 0, Missed: 0}, // m2: a redelivery that stored nothing
	}}
	m := NewMeter(10, clock)
	s := m.Wrap(next)

	_, err := s.Record(ctx, influencer.Batch{Minute: m1})
	require.NoError(t, err)
	assert.False(t, m.Complete(m1))
	clock.Advance(2 * time.Second)
	_, err = s.Record(ctx, influencer.Batch{Minute: m1})
	require.NoError(t, err)
	assert.True(t, m.Complete(m1))
	clock.Advance(time.Minute - time.Second) // m2's end + 1.5 s
	res, err := s.Record(ctx, influencer.Batch{Minute: m2})
	require.NoError(t, err)
	assert.Equal(t, store.RecordResult{Inserted: 2}, res, "the store's result is passed on")
	_, err = s.Record(ctx, influencer.Batch{Minute: m2})
	require.NoError(t, err)
	assert.False(t, m.Complete(m2))

	r := m.Report(m1, m2.Add(time.Minute))
	assert.Equal(t, []Minute{
		{Minute: m1, Stored: 9, Missed: 1, NotStored: 0, AllStored: true, AllStoredAfter: 2500 * time.Millisecond},
		{Minute: m2, Stored: 2, NotStored: 8},
		{Minute: m2.Add(time.Minute), NotStored: 10},
	}, r.Minutes)
	assert.Equal(t, 10, r.Influencers)
	// Samples by freshness: 6 at +0.5 s, 3 at +2.5 s, 2 at +1.5 s.
	assert.Equal(t, 500*time.Millisecond, r.FreshnessP50)
	assert.Equal(t, 2500*time.Millisecond, r.FreshnessP99)

	// Only the asked minutes count.
	only2 := m.Report(m2, m2)
	assert.Equal(t, 1500*time.Millisecond, only2.FreshnessP50)
	assert.Equal(t, 2, only2.Stored())
}

func TestMeterPassesErrorsOnWithoutCounting(t *testing.T) {
	t.Parallel()
	down := errors.New("database down")
	m := NewMeter(1, clockwork.NewFakeClock())
	_, err := m.Wrap(&recordStore{err: down}).Record(context.Background(), influencer.Batch{Minute: m1})
	require.ErrorIs(t, err, down)
	assert.Equal(t, []Minute{{Minute: m1, NotStored: 1}}, m.Report(m1, m1).Minutes)
}
