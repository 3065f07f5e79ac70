package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// moversTests are the contract tests of growth and movers.
var moversTests = []contractTest{
	{"PointAt", testPointAt},
	{"Movers", testMovers},
	{"MoversArguments", testMoversArguments},
}

func testPointAt(t *testing.T, s store.Store) {
	ctx := context.Background()
	// pk 1 has minutes 0, 10 and 100; pk 2 only minute 50.
	record(t, s, batch(0, sample(1, 0, 500, 10)))
	record(t, s, batch(10, sample(1, 10, 510, 11)))
	record(t, s, batch(50, sample(2, 50, 7, 7)))
	record(t, s, batch(100, sample(1, 100, 600, 12)))
	for _, tc := range []struct {
		name string
		pk   int64
		at   time.Time
		want int // minute of the point; -1 none
	}{
		{"exactly at a minute", 1, minute(10), 10},
		{"between minutes", 1, minute(10).Add(90 * time.Second), 10},
		{"a second before a minute", 1, minute(10).Add(-time.Second), 0},
		{"newest at the end", 1, minute(130), 100},
		{"lookback includes a minute just inside", 1, minute(100).Add(store.GrowthLookback - time.Second), 100},
		{"lookback excludes a minute exactly one lookback back", 1, minute(100).Add(store.GrowthLookback), -1},
		{"gap longer than the lookback", 1, minute(99), -1},
		{"before the first minute", 1, minute(0).Add(-time.Second), -1},
		{"other pk", 2, minute(60), 50},
		{"unknown pk", 3, minute(60), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.PointAt(ctx, tc.pk, tc.at)
			if tc.want < 0 {
				require.ErrorIs(t, err, store.ErrNotFound)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, minute(tc.want), p.Minute)
			if tc.pk == 1 {
				want := map[int]influencer.Point{0: {FollowerCount: 500, FollowingCount: 10},
					10: {FollowerCount: 510, FollowingCount: 11}, 100: {FollowerCount: 600, FollowingCount: 12}}[tc.want]
				assert.Equal(t, want.FollowerCount, p.FollowerCount)
				assert.Equal(t, want.FollowingCount, p.FollowingCount)
			}
		})
	}
}

func testMovers(t *testing.T, s store.Store) {
	ctx := context.Background()
	window := store.MoversWindow
	none, err := s.Movers(ctx, window, store.Up, 10)
	require.NoError(t, err)
	assert.True(t, none.ComputedAt.IsZero(), "no list computed yet")
	assert.NotNil(t, none.Items)
	assert.Empty(t, none.Items)

	// Base minute 0, now = minute 0 + 24 h + 30 min. pks 1..150 gain pk
	// followers (ties between odd/even pairs broken by pk), pks 151..160
	// lose, 161 stays, 162 has no base (first minute after the window's
	// base), 163 gains but is untracked.
	const n = 163
	pks := make([]int64, n)
	for i := range pks {
		pks[i] = int64(i + 1)
	}
	track(t, s, pks...)
	untrack(t, s, 163)
	growth := func(pk int64) int64 {
		switch {
		case pk <= 150:
			return (pk + 1) / 2 * 10 // pks 2k-1 and 2k tie
		case pk <= 160:
			return -(pk - 150) * 3
		case pk == 161:
			return 0
		default:
			return 1000
		}
	}
	day := int(window / time.Minute)
	var base, later, cur []influencer.Sample
	for _, pk := range pks {
		if pk != 162 {
			base = append(base, sample(pk, 0, 10_000, 1))
			later = append(later, sample(pk, 5, 5, 1)) // after the base instant: not the base
		}
		cur = append(cur, sample(pk, day+20, 10_000+growth(pk), 1))
	}
	record(t, s, influencer.Batch{Minute: minute(0), Shard: 1, Samples: base})
	record(t, s, influencer.Batch{Minute: minute(5), Shard: 1, Samples: later})
	record(t, s, influencer.Batch{Minute: minute(day + 20), Shard: 1, Samples: cur})
	now := minute(day).Add(4 * time.Minute).Add(30 * time.Second) // base instant = minute 4:30
	require.NoError(t, s.RecomputeMovers(ctx, now, window))

	up, err := s.Movers(ctx, window, store.Up, store.MaxMovers)
	require.NoError(t, err)
	assert.True(t, now.Equal(up.ComputedAt), "computed at %s", up.ComputedAt)
	require.Len(t, up.Items, store.MaxMovers, "150 gainers, the top 100 kept")
	// Growth descending, ties by pk: 149 and 150 (750), 147 and 148, ...
	for i, m := range up.Items {
		pair := int64(75 - i/2)
		wantPK := 2*pair - 1 + int64(i%2)
		assert.Equal(t, i+1, m.Rank)
		assert.Equal(t, wantPK, m.PK, "row %d", i)
		assert.Equal(t, growth(wantPK), m.Growth)
		assert.EqualValues(t, 10_000, m.BaseFollowerCount)
		assert.Equal(t, 10_000+growth(wantPK), m.FollowerCount)
		assert.Equal(t, minute(0), m.BaseMinute)
		assert.Equal(t, sample(wantPK, day+20, 0, 0).Username, m.Username)
	}
	down, err := s.Movers(ctx, window, store.Down, 3)
	require.NoError(t, err)
	require.Len(t, down.Items, 3)
	for i, m := range down.Items {
		assert.Equal(t, int64(160-i), m.PK, "largest loss first")
		assert.Equal(t, growth(int64(160-i)), m.Growth)
		assert.Equal(t, i+1, m.Rank)
	}
	all, err := s.Movers(ctx, window, store.Down, store.MaxMovers)
	require.NoError(t, err)
	assert.Len(t, all.Items, 10, "only the losers are in the down list")

	// A recompute replaces the lists: later, the base instant has no point
	// (minute 5 is more than a lookback before it) and nothing moves.
	later2 := minute(day).Add(time.Hour + 10*time.Minute)
	require.NoError(t, s.RecomputeMovers(ctx, later2, window))
	up, err = s.Movers(ctx, window, store.Up, 10)
	require.NoError(t, err)
	assert.True(t, later2.Equal(up.ComputedAt))
	assert.NotNil(t, up.Items)
	assert.Empty(t, up.Items)
}

func testMoversArguments(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		window time.Duration
		dir    store.Direction
		limit  int
	}{
		{0, store.Up, 10},
		{-time.Hour, store.Up, 10},
		{90 * time.Second, store.Up, 10},
		{store.MoversWindow, 0, 10},
		{store.MoversWindow, store.Up, 0},
		{store.MoversWindow, store.Down, store.MaxMovers + 1},
	} {
		_, err := s.Movers(ctx, tc.window, tc.dir, tc.limit)
		assert.ErrorIs(t, err, store.ErrInvalid, "%+v", tc)
	}
	assert.ErrorIs(t, s.RecomputeMovers(ctx, Now(), 0), store.ErrInvalid)
	assert.ErrorIs(t, s.RecomputeMovers(ctx, Now(), 30*time.Second), store.ErrInvalid)
}
