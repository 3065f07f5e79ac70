package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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

var (
	m1 = time.Date(2026, 11, 25, 12, 1, 0, 0, time.UTC)
	m2 = m1.Add(time.Minute)
)

// want is a fake simulator: follower = pk, following = minute of the hour.
func want(pk int64, minute time.Time) (int64, int64) { return pk, int64(minute.Minute()) }

func samples(minute time.Time, pks ...int64) []influencer.Sample {
	out := make([]influencer.Sample, len(pks))
	for i, pk := range pks {
		out[i] = influencer.Sample{PK: pk, Minute: minute, FollowerCount: pk, FollowingCount: int64(minute.Minute())}
	}
	return out
}

func minuteOf(t *testing.T, ms []MeterMinute, minute time.Time) MeterMinute {
	t.Helper()
	for _, m := range ms {
		if m.Minute.Equal(minute) {
			return m
		}
	}
	t.Fatalf("no minute %s", minute)
	return MeterMinute{}
}

func TestMeterCountsPerMinute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(m1.Add(time.Minute + 500*time.Millisecond)) // 0.5 s after the end of m1
	next := &recordStore{results: []store.RecordResult{
		{Inserted: 2, Missed: 1}, // m1 at +0.5 s
		{Inserted: 1},            // m1 at +2.5 s: complete (2+1+1 = 4)
		{Inserted: 1},            // m2 at +1.5 s after m2's end, one wrong value
		{Duplicates: 1},          // m2: a redelivery that stored nothing
	}}
	m := NewMeter(4, clock)
	m.CheckValues(want)
	s := m.Wrap(next)

	_, err := s.Record(ctx, influencer.Batch{Minute: m1, Samples: samples(m1, 1, 2),
		Failures: []influencer.Failure{{PK: 3, Minute: m1, Class: "timeout"}}})
	require.NoError(t, err)
	assert.False(t, m.Complete(m1))
	clock.Advance(2 * time.Second)
	_, err = s.Record(ctx, influencer.Batch{Minute: m1, Samples: samples(m1, 4)})
	require.NoError(t, err)
	assert.True(t, m.Complete(m1))
	clock.Advance(time.Minute - time.Second) // m2's end + 1.5 s
	bad := samples(m2, 5)
	bad[0].FollowerCount++
	res, err := s.Record(ctx, influencer.Batch{Minute: m2, Samples: bad,
		Failures: []influencer.Failure{{PK: 6, Minute: m2, Class: "expired"}}})
	require.NoError(t, err)
	assert.Equal(t, store.RecordResult{Inserted: 1}, res, "the store's result is passed on")
	_, err = s.Record(ctx, influencer.Batch{Minute: m2, Samples: samples(m2, 5)})
	require.NoError(t, err)
	assert.False(t, m.Complete(m2))

	ms := m.Minutes()
	require.Len(t, ms, 2)
	a := minuteOf(t, ms, m1)
	assert.Equal(t, 3, a.Stored)
	assert.Equal(t, 1, a.Missed)
	assert.Equal(t, map[string]int{"timeout": 1}, a.ByClass)
	assert.Equal(t, 3, a.Checked)
	assert.Zero(t, a.Wrong)
	require.NotNil(t, a.Completed)
	assert.Equal(t, m1.Add(time.Minute+2500*time.Millisecond), *a.Completed)
	assert.Equal(t, [][2]int64{{int64(500 * time.Millisecond), 2}, {int64(2500 * time.Millisecond), 1}}, a.Commits)

	b := minuteOf(t, ms, m2)
	assert.Equal(t, 1, b.Stored)
	assert.Zero(t, b.Missed)
	assert.Empty(t, b.ByClass, "a failure the store did not record as new is not counted")
	assert.Equal(t, 1, b.Checked, "a batch that stored nothing is not checked")
	assert.Equal(t, 1, b.Wrong)
	assert.Nil(t, b.Completed)
}

func TestMeterPassesErrorsOnWithoutCounting(t *testing.T) {
	t.Parallel()
	down := errors.New("database down")
	m := NewMeter(1, clockwork.NewFakeClock())
	_, err := m.Wrap(&recordStore{err: down}).Record(context.Background(), influencer.Batch{Minute: m1})
	require.ErrorIs(t, err, down)
	assert.Empty(t, m.Minutes())
}

// poolStore is a store that lends a pool, as the Postgres store does.
type poolStore struct {
	recordStore
	pool *pgxpool.Pool
}

func (s *poolStore) Pool() *pgxpool.Pool { return s.pool }

func TestMeterLendsTheStoresPool(t *testing.T) {
	t.Parallel()
	pool := &pgxpool.Pool{}
	wrapped := NewMeter(1, clockwork.NewFakeClock()).Wrap(&poolStore{pool: pool})
	p, ok := wrapped.(interface{ Pool() *pgxpool.Pool })
	require.True(t, ok, "the Postgres broker finds the pool through the meter")
	assert.Same(t, pool, p.Pool())

	_, ok = NewMeter(1, clockwork.NewFakeClock()).Wrap(&recordStore{}).(interface{ Pool() *pgxpool.Pool })
	assert.False(t, ok, "a store without a pool has none through the meter")
}
