package storetest

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// readSideTests are the contract tests of the read side (rank, leaderboard,
// stats, rollups, retention).
var readSideTests = []contractTest{
	{"RankTies", testRankTies},
	{"RankAgainstBruteForce", testRankBruteForce},
	{"RankMoves", testRankMoves},
	{"RankRegistry", testRankRegistry},
	{"GlobalAverage", testGlobalAverage},
	{"Stats", testStats},
	{"LeaderboardPagination", testLeaderboardPagination},
	{"LeaderboardLimits", testLeaderboardLimits},
	{"Rollups", testRollups},
	{"RollupArguments", testRollupArguments},
	{"Retention", testRetention},
	{"ConcurrentReadSide", testConcurrentReadSide},
}

func track(t *testing.T, s store.Store, pks ...int64) {
	t.Helper()
	_, err := s.Track(context.Background(), pks)
	require.NoError(t, err)
}

func untrack(t *testing.T, s store.Store, pks ...int64) {
	t.Helper()
	_, err := s.Untrack(context.Background(), pks)
	require.NoError(t, err)
}

func rankOf(t *testing.T, s store.Store, pk int64) int64 {
	t.Helper()
	r, err := s.Rank(context.Background(), pk)
	require.NoError(t, err, "rank of pk %d", pk)
	return r
}

func stats(t *testing.T, s store.Store, now time.Time) store.Stats {
	t.Helper()
	st, err := s.Stats(context.Background(), now)
	require.NoError(t, err)
	return st
}

// counts records one minute with the given current follower counts
// (following = pk).
func counts(t *testing.T, s store.Store, m int, shard int, c map[int64]int64) {
	t.Helper()
	b := influencer.Batch{Minute: minute(m), Shard: shard}
	for pk, n := range c {
		b.Samples = append(b.Samples, sample(pk, m, n, pk))
	}
	record(t, s, b)
}

// wantRanks is the brute-force rank of every pk in current.
func wantRanks(current map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(current))
	for pk, c := range current {
		r := int64(1)
		for _, o := range current {
			if o > c {
				r++
			}
		}
		out[pk] = r
	}
	return out
}

func assertRanks(t *testing.T, s store.Store, current map[int64]int64, msg string) {
	t.Helper()
	for pk, want := range wantRanks(current) {
		assert.Equal(t, want, rankOf(t, s, pk), "%s: pk %d (count %d)", msg, pk, current[pk])
	}
}

func testRankTies(t *testing.T, s store.Store) {
	// Counts around bucket edges and inside wide buckets: 2046/2047/2048
	// cross from exact to shared buckets, 1,000,000..1,000,300 share a
	// bucket (~0.1 % wide), 0 is the lowest possible count.
	current := map[int64]int64{
		1: 100, 2: 300, 3: 300, 4: 200, 5: 50, 6: 300, 7: 0, 8: 0,
		9: 2046, 10: 2047, 11: 2048, 12: 2049, 13: 2048,
		14: 1_000_000, 15: 1_000_001, 16: 1_000_300, 17: 1_000_001, 18: influencer.MaxCount,
	}
	pks := make([]int64, 0, len(current))
	for pk := range current {
		pks = append(pks, pk)
	}
	track(t, s, pks...)
	counts(t, s, 0, 1, current)
	assert.EqualValues(t, 1, rankOf(t, s, 18))
	assert.EqualValues(t, 2, rankOf(t, s, 16))
	assert.EqualValues(t, 3, rankOf(t, s, 15))
	assert.EqualValues(t, 3, rankOf(t, s, 17), "tie shares the rank")
	assert.EqualValues(t, 5, rankOf(t, s, 14))
	assert.EqualValues(t, 6, rankOf(t, s, 12))
	assert.EqualValues(t, 7, rankOf(t, s, 11))
	assert.EqualValues(t, 7, rankOf(t, s, 13))
	assertRanks(t, s, current, "ties")

	_, err := s.Rank(context.Background(), 99)
	assert.ErrorIs(t, err, store.ErrNotFound, "no data")
}

func testRankBruteForce(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 200
	pks := make([]int64, n)
	for i := range pks {
		pks[i] = int64(i + 1)
	}
	track(t, s, pks...)
	current := make(map[int64]int64, n)
	draw := func() int64 {
		switch rng.IntN(4) {
		case 0: // many exact ties
			return int64(rng.IntN(5)) * 1000
		case 1: // crowded wide buckets
			return 5_000_000 + int64(rng.IntN(3000))
		default:
			return int64(rng.IntN(20_000_000))
		}
	}
	for m := range 4 {
		batch := make(map[int64]int64)
		for _, pk := range pks {
			if m == 0 || rng.IntN(2) == 0 {
				batch[pk] = draw()
				current[pk] = batch[pk]
			}
		}
		counts(t, s, m, m, batch)
		assertRanks(t, s, current, fmt.Sprintf("after minute %d", m))
	}
}

func testRankMoves(t *testing.T, s store.Store) {
	track(t, s, 1, 2, 3)
	counts(t, s, 0, 0, map[int64]int64{1: 100, 2: 200, 3: 300})
	assert.Equal(t, []int64{3, 2, 1}, []int64{rankOf(t, s, 1), rankOf(t, s, 2), rankOf(t, s, 3)})

	counts(t, s, 1, 0, map[int64]int64{1: 400})
	assert.Equal(t, []int64{1, 3, 2}, []int64{rankOf(t, s, 1), rankOf(t, s, 2), rankOf(t, s, 3)}, "pk 1 moves up")

	counts(t, s, 2, 0, map[int64]int64{1: 10, 3: 200})
	assert.Equal(t, []int64{3, 1, 1}, []int64{rankOf(t, s, 1), rankOf(t, s, 2), rankOf(t, s, 3)}, "pk 1 moves down, 3 ties 2")

	// An older minute arriving late is stored but is not the current value.
	counts(t, s, 1, 0, map[int64]int64{3: 9_999})
	counts(t, s, -1, 0, map[int64]int64{2: 1})
	assert.Equal(t, []int64{3, 1, 1}, []int64{rankOf(t, s, 1), rankOf(t, s, 2), rankOf(t, s, 3)}, "out-of-order minute")
	assert.EqualValues(t, 200, summary(t, s, 3).FollowerCount)

	// Redelivery changes nothing.
	counts(t, s, 2, 0, map[int64]int64{1: 10, 3: 200})
	assert.Equal(t, []int64{3, 1, 1}, []int64{rankOf(t, s, 1), rankOf(t, s, 2), rankOf(t, s, 3)}, "redelivery")
}

func testRankRegistry(t *testing.T, s store.Store) {
	ctx := context.Background()
	track(t, s, 1, 2, 3)
	// pk 4 has data but was never tracked; pk 5 is tracked without data.
	track(t, s, 5)
	counts(t, s, 0, 0, map[int64]int64{1: 100, 2: 200, 3: 300, 4: 1000})
	for _, pk := range []int64{4, 5} {
		_, err := s.Rank(ctx, pk)
		assert.ErrorIs(t, err, store.ErrNotFound, "pk %d", pk)
	}
	assert.EqualValues(t, 1, rankOf(t, s, 3), "untracked pk 4 does not count")

	untrack(t, s, 3)
	_, err := s.Rank(ctx, 3)
	assert.ErrorIs(t, err, store.ErrNotFound, "untracked")
	assert.EqualValues(t, 1, rankOf(t, s, 2), "others improve")
	assert.EqualValues(t, 2, rankOf(t, s, 1))
	// An untracked influencer's new minutes do not bring it back.
	counts(t, s, 1, 0, map[int64]int64{3: 50, 1: 150})
	_, err = s.Rank(ctx, 3)
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.EqualValues(t, 2, rankOf(t, s, 1))

	track(t, s, 3, 4)
	assertRanks(t, s, map[int64]int64{1: 150, 2: 200, 3: 50, 4: 1000}, "re-tracked with its current count")
	st := stats(t, s, minute(1))
	assert.EqualValues(t, 5, st.Tracked)
	assert.EqualValues(t, 4, st.Influencers)
	assert.EqualValues(t, 1400, st.FollowerTotal)
}

func testGlobalAverage(t *testing.T, s store.Store) {
	track(t, s, 1, 2, 3)
	st := stats(t, s, minute(0))
	assert.Equal(t, store.Stats{Tracked: 3}, st, "tracked, no data")
	assert.Zero(t, st.AverageFollowerCount())

	b0 := batch(0, sample(1, 0, 100, 1), sample(2, 0, 200, 1))
	record(t, s, b0)
	st = stats(t, s, minute(0))
	assert.EqualValues(t, 2, st.Influencers)
	assert.InDelta(t, 150.0, st.AverageFollowerCount(), 1e-9)

	b1 := batch(1, sample(1, 1, 400, 1), sample(2, 1, 200, 1), sample(3, 1, 600, 1))
	record(t, s, b1)
	// Minute 0 has 2 of the 3 tracked: incomplete, so minute 1 is not the
	// last complete minute either (it never passes a gap).
	want := store.Stats{Tracked: 3, Influencers: 3, FollowerTotal: 1200}
	assert.Equal(t, want, stats(t, s, minute(1)))
	assert.InDelta(t, 400.0, stats(t, s, minute(1)).AverageFollowerCount(), 1e-9)

	for _, b := range []influencer.Batch{b0, b1, b1} {
		record(t, s, b)
		assert.Equal(t, want, stats(t, s, minute(1)), "redelivered batch changes nothing")
	}
	// An older minute is not a current value.
	record(t, s, batch(-5, sample(3, -5, 1_000_000, 1)))
	assert.EqualValues(t, 1200, stats(t, s, minute(1)).FollowerTotal)

	untrack(t, s, 3)
	st = stats(t, s, minute(1))
	assert.EqualValues(t, 2, st.Influencers)
	assert.InDelta(t, 300.0, st.AverageFollowerCount(), 1e-9)
	record(t, s, batch(2, sample(3, 2, 50, 1), sample(1, 2, 500, 1)))
	assert.EqualValues(t, 700, stats(t, s, minute(2)).FollowerTotal, "untracked pk's new values do not count")
	track(t, s, 3)
	st = stats(t, s, minute(2))
	assert.EqualValues(t, 3, st.Influencers)
	assert.EqualValues(t, 750, st.FollowerTotal)
	assert.InDelta(t, 250.0, st.AverageFollowerCount(), 1e-9)
}

func testStats(t *testing.T, s store.Store) {
	fail := func(pk int64, m int) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: minute(m), Class: "timeout", Reason: "deadline"}
	}
	now := minute(2).Add(30 * time.Second)
	assert.Equal(t, store.Stats{}, stats(t, s, now), "empty store")

	track(t, s, 1, 2, 3, 4)
	steps := []struct {
		name   string
		batch  influencer.Batch
		last   time.Time
		missed int64
	}{
		{"minute 0 complete with a missed pk",
			influencer.Batch{Minute: minute(0), Shard: 1, Samples: []influencer.Sample{sample(1, 0, 10, 1), sample(2, 0, 20, 1), sample(3, 0, 30, 1)}, Failures: []influencer.Failure{fail(4, 0)}},
			minute(0), 1},
		{"minute 1 partial",
			influencer.Batch{Minute: minute(1), Shard: 2, Samples: []influencer.Sample{sample(1, 1, 11, 1), sample(2, 1, 21, 1)}},
			minute(0), 1},
		{"minute 2 first shard",
			influencer.Batch{Minute: minute(2), Shard: 3, Samples: []influencer.Sample{sample(1, 2, 12, 1)}, Failures: []influencer.Failure{fail(2, 2)}},
			minute(0), 2},
		{"minute 2 second shard completes it, but minute 1 is still a gap",
			influencer.Batch{Minute: minute(2), Shard: 20, Samples: []influencer.Sample{sample(3, 2, 32, 1), sample(4, 2, 42, 1)}},
			minute(0), 2},
		{"redelivered shard changes nothing",
			influencer.Batch{Minute: minute(2), Shard: 20, Samples: []influencer.Sample{sample(3, 2, 32, 1), sample(4, 2, 42, 1)}},
			minute(0), 2},
		{"minute 1 completed late by failures",
			influencer.Batch{Minute: minute(1), Shard: 4, Failures: []influencer.Failure{fail(3, 1), fail(4, 1)}},
			minute(2), 4},
		{"a late sample fills a missed minute",
			influencer.Batch{Minute: minute(0), Shard: 5, Samples: []influencer.Sample{sample(4, 0, 40, 1)}},
			minute(2), 3},
	}
	for _, st := range steps {
		record(t, s, st.batch)
		got := stats(t, s, now)
		assert.Equal(t, st.last, got.LastCompleteMinute, st.name)
		assert.Equal(t, st.missed, got.MissedLastHour, st.name)
		assert.EqualValues(t, 4, got.Tracked, st.name)
	}
	got := stats(t, s, now)
	assert.EqualValues(t, 4, got.Influencers)
	assert.EqualValues(t, 12+21+32+42, got.FollowerTotal)
	n, err := s.MissedSince(context.Background(), now.Add(-time.Hour))
	require.NoError(t, err)
	assert.Equal(t, n, got.MissedLastHour, "MissedLastHour agrees with MissedSince")

	// The window is the last hour: [now-1h, now].
	got = stats(t, s, minute(61))
	assert.Equal(t, minute(2), got.LastCompleteMinute)
	assert.EqualValues(t, 3, got.MissedLastHour, "(3, 1), (4, 1), (2, 2)")
	got = stats(t, s, minute(62))
	assert.Equal(t, minute(2), got.LastCompleteMinute)
	assert.EqualValues(t, 1, got.MissedLastHour, "(2, 2)")
	got = stats(t, s, minute(200))
	assert.True(t, got.LastCompleteMinute.IsZero(), "nothing complete in the last hour")
	assert.Zero(t, got.MissedLastHour)
	// Minutes after now do not count.
	got = stats(t, s, minute(1).Add(59*time.Second))
	assert.Equal(t, minute(1), got.LastCompleteMinute)

	// Minute 3 has 3 of the 4 tracked influencers...
	record(t, s, batch(3, sample(1, 3, 13, 1), sample(2, 3, 23, 1), sample(3, 3, 33, 1)))
	assert.Equal(t, minute(2), stats(t, s, minute(3)).LastCompleteMinute)
	// ...and untracking the fourth lowers the bar from the minute the change
	// happened in on (the suite's clock stands at or before minute 0).
	untrack(t, s, 4)
	got = stats(t, s, minute(3))
	assert.Equal(t, minute(3), got.LastCompleteMinute)
	assert.EqualValues(t, 3, got.Tracked)
	assert.EqualValues(t, 3, got.Influencers)
	assert.EqualValues(t, 13+23+33, got.FollowerTotal)
}

func testLeaderboardPagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	// 30 influencers in tie groups of various sizes, one untracked and one
	// never tracked (both excluded), one tracked without data.
	current := map[int64]int64{}
	var pks []int64
	for i := range 30 {
		pk := int64(100 + (i*7)%30) // pks not in count order
		current[pk] = int64([]int{5, 5, 5, 4, 4, 3, 3, 3, 3, 3, 2, 1, 1}[i%13]) * 1000
		if i >= 26 {
			current[pk] = 1_000_000 + int64(i%2)
		}
		pks = append(pks, pk)
	}
	track(t, s, append(pks, 500)...)
	counts(t, s, 0, 0, current)
	untrack(t, s, 101)
	delete(current, 101)
	counts(t, s, 0, 0, map[int64]int64{400: 2_000_000})

	ranks := wantRanks(current)
	var want []store.Ranked
	for pk, c := range current {
		want = append(want, store.Ranked{Rank: ranks[pk], PK: pk, Username: fmt.Sprintf("user-%d-m0", pk), FollowerCount: c, FollowingCount: pk})
	}
	slices.SortFunc(want, func(a, b store.Ranked) int {
		if c := cmp.Compare(b.FollowerCount, a.FollowerCount); c != 0 {
			return c
		}
		return cmp.Compare(a.PK, b.PK)
	})

	for _, limit := range []int{1, 2, 3, 4, 7, 29, 30, 1000} {
		var (
			got   []store.Ranked
			after *store.Cursor
		)
		for range 100 {
			page, err := s.Leaderboard(ctx, after, limit)
			require.NoError(t, err)
			require.NotNil(t, page, "empty, not nil")
			assert.LessOrEqual(t, len(page), limit)
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			last := page[len(page)-1]
			after = &store.Cursor{FollowerCount: last.FollowerCount, PK: last.PK}
		}
		assert.Equal(t, want, got, "limit %d", limit)
	}

	// A cursor need not be a row: it is a position.
	page, err := s.Leaderboard(ctx, &store.Cursor{FollowerCount: 4000, PK: 0}, 3)
	require.NoError(t, err)
	i := slices.IndexFunc(want, func(r store.Ranked) bool { return r.FollowerCount == 4000 })
	assert.Equal(t, want[i:i+3], page)
	page, err = s.Leaderboard(ctx, &store.Cursor{FollowerCount: 0, PK: 1 << 40}, 3)
	require.NoError(t, err)
	assert.Empty(t, page)
}

func testLeaderboardLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, limit := range []int{0, -1, store.MaxLeaderboardLimit + 1} {
		_, err := s.Leaderboard(ctx, nil, limit)
		assert.ErrorIs(t, err, store.ErrInvalid, "limit %d", limit)
	}
	_, err := s.Leaderboard(ctx, &store.Cursor{FollowerCount: -1}, 10)
	assert.ErrorIs(t, err, store.ErrInvalid, "negative cursor count")
	page, err := s.Leaderboard(ctx, nil, store.MaxLeaderboardLimit)
	require.NoError(t, err)
	assert.NotNil(t, page)
	assert.Empty(t, page)
}

func testRollups(t *testing.T, s store.Store) {
	ctx := context.Background()
	hour := func(h int) time.Time { return Now().Add(time.Duration(h) * time.Hour) }
	at := func(m int) influencer.Sample { // pk 1 at minute m
		return sample(1, m, int64(1000+m*7%50), int64(100+m%13))
	}
	// Minutes over three hours and across midnight (Now is 12:00 UTC, so
	// minute 720 is the next day), recorded out of order, with redelivery.
	ms := []int{5, 0, 59, 30, 60, 150, 61, 119, 100, 719, 720, 725, 12}
	for _, m := range ms {
		record(t, s, batch(m, at(m)))
	}
	for _, m := range []int{59, 0, 720} {
		record(t, s, batch(m, sample(1, m, 1, 1))) // same (pk, minute), other values: ignored
	}
	record(t, s, batch(30, at(30), sample(2, 30, 5, 5)))

	want := func(step time.Duration) []store.Bucket {
		var (
			out  []store.Bucket
			sums [][2]int64
			idx  = map[time.Time]int{}
		)
		sorted := slices.Clone(ms)
		slices.Sort(sorted)
		for _, m := range sorted {
			smp := at(m)
			start := store.BucketStart(smp.Minute, step)
			i, ok := idx[start]
			if !ok {
				out = append(out, store.Bucket{Start: start,
					FollowerMin: smp.FollowerCount, FollowerMax: smp.FollowerCount,
					FollowingMin: smp.FollowingCount, FollowingMax: smp.FollowingCount})
				sums = append(sums, [2]int64{})
				i = len(out) - 1
				idx[start] = i
			}
			b := &out[i]
			b.Samples++
			b.FollowerMin, b.FollowerMax = min(b.FollowerMin, smp.FollowerCount), max(b.FollowerMax, smp.FollowerCount)
			b.FollowingMin, b.FollowingMax = min(b.FollowingMin, smp.FollowingCount), max(b.FollowingMax, smp.FollowingCount)
			b.FollowerLast, b.FollowingLast, b.LastMinute = smp.FollowerCount, smp.FollowingCount, smp.Minute
			sums[i][0] += smp.FollowerCount
			sums[i][1] += smp.FollowingCount
		}
		for i := range out {
			out[i].FollowerAvg = float64(sums[i][0]) / float64(out[i].Samples)
			out[i].FollowingAvg = float64(sums[i][1]) / float64(out[i].Samples)
		}
		return out
	}

	hourly := want(time.Hour)
	require.Len(t, hourly, 5)
	got, err := s.Rollup(ctx, 1, time.Hour, hour(-1), hour(48), 100)
	require.NoError(t, err)
	assertBuckets(t, hourly, got, "hourly")
	got, err = s.Rollup(ctx, 1, time.Hour, hour(1), hour(12), 100)
	require.NoError(t, err)
	assertBuckets(t, hourly[1:4], got, "hourly, starts in [from, to)")
	got, err = s.Rollup(ctx, 1, time.Hour, hour(0), hour(48), 2)
	require.NoError(t, err)
	assertBuckets(t, hourly[:2], got, "hourly, limit keeps the oldest")

	daily := want(24 * time.Hour)
	require.Len(t, daily, 2)
	got, err = s.Rollup(ctx, 1, 24*time.Hour, hour(-12), hour(48), 100)
	require.NoError(t, err)
	assertBuckets(t, daily, got, "daily")
	got, err = s.Rollup(ctx, 1, 24*time.Hour, hour(-11), hour(48), 100)
	require.NoError(t, err)
	assertBuckets(t, daily[1:], got, "daily, from after the first day's start")

	got, err = s.Rollup(ctx, 2, time.Hour, hour(-1), hour(1), 100)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, store.Bucket{Start: hour(0), Samples: 1, FollowerAvg: 5, FollowerMin: 5, FollowerMax: 5, FollowerLast: 5,
		FollowingAvg: 5, FollowingMin: 5, FollowingMax: 5, FollowingLast: 5, LastMinute: minute(30)}, got[0])
	got, err = s.Rollup(ctx, 3, time.Hour, hour(-1), hour(1), 100)
	require.NoError(t, err)
	assert.NotNil(t, got, "empty, not nil")
	assert.Empty(t, got)
}

func assertBuckets(t *testing.T, want, got []store.Bucket, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		w, g := want[i], got[i]
		assert.InDelta(t, w.FollowerAvg, g.FollowerAvg, 1e-9, "%s: bucket %d", msg, i)
		assert.InDelta(t, w.FollowingAvg, g.FollowingAvg, 1e-9, "%s: bucket %d", msg, i)
		w.FollowerAvg, g.FollowerAvg, w.FollowingAvg, g.FollowingAvg = 0, 0, 0, 0
		assert.Equal(t, w, g, "%s: bucket %d", msg, i)
	}
}

func testRollupArguments(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, step := range []time.Duration{0, time.Minute, 2 * time.Hour, -time.Hour, 7 * 24 * time.Hour} {
		_, err := s.Rollup(ctx, 1, step, minute(0), minute(10), 10)
		assert.ErrorIs(t, err, store.ErrInvalid, "step %s", step)
	}
	_, err := s.Rollup(ctx, 1, time.Hour, minute(0), minute(10), 0)
	assert.ErrorIs(t, err, store.ErrInvalid, "limit 0")
}

func testRetention(t *testing.T, s store.Store) {
	ctx := context.Background()
	const day = 24 * 60
	old, recent := -10*day, -6*day // minutes, relative to Now
	track(t, s, 1)
	record(t, s, batch(old, sample(1, old, 100, 10)))
	record(t, s, batch(old+1, sample(1, old+1, 110, 10)))
	record(t, s, influencer.Batch{Minute: minute(old + 2), Failures: []influencer.Failure{{PK: 1, Minute: minute(old + 2), Class: "timeout"}}})
	record(t, s, batch(recent, sample(1, recent, 200, 20)))
	record(t, s, batch(0, sample(1, 0, 300, 30)))
	before := summary(t, s, 1)
	hourlyBefore, err := s.Rollup(ctx, 1, time.Hour, minute(old-60), minute(60), 100)
	require.NoError(t, err)
	require.Len(t, hourlyBefore, 3)
	dailyBefore, err := s.Rollup(ctx, 1, 24*time.Hour, minute(old-day), minute(day), 100)
	require.NoError(t, err)
	require.Len(t, dailyBefore, 3)

	_, err = s.Timeline(ctx, 1, minute(old), minute(1), 100)
	require.NoError(t, err)
	require.ErrorIs(t, s.Prune(ctx, Now(), 0), store.ErrInvalid)
	require.NoError(t, s.Prune(ctx, Now(), 7*24*time.Hour))
	require.NoError(t, s.Prune(ctx, Now(), 7*24*time.Hour), "idempotent")

	tl, err := s.Timeline(ctx, 1, minute(old-day), minute(1), 100)
	require.NoError(t, err)
	assert.Equal(t, []influencer.Point{
		{Minute: minute(recent), FollowerCount: 200, FollowingCount: 20},
		{Minute: minute(0), FollowerCount: 300, FollowingCount: 30},
	}, tl, "the old day is gone, the 6-day-old one is kept")
	n, err := s.MissedSince(ctx, time.Time{})
	require.NoError(t, err)
	assert.Zero(t, n, "old missed entries go with their day")

	assert.Equal(t, before, summary(t, s, 1), "summary kept")
	assert.EqualValues(t, 1, rankOf(t, s, 1))
	hourly, err := s.Rollup(ctx, 1, time.Hour, minute(old-60), minute(60), 100)
	require.NoError(t, err)
	assert.Equal(t, hourlyBefore, hourly, "hourly rollups kept")
	daily, err := s.Rollup(ctx, 1, 24*time.Hour, minute(old-day), minute(day), 100)
	require.NoError(t, err)
	assert.Equal(t, dailyBefore, daily, "daily rollups kept")

	// A late sample for a dropped day is still accepted.
	res := record(t, s, batch(old+5, sample(1, old+5, 1, 1)))
	assert.Equal(t, 1, res.Inserted)
}

// testConcurrentReadSide records overlapping and redelivered batches while
// the registry flips, then checks that the maintained counters agree with
// the summaries.
func testConcurrentReadSide(t *testing.T, s store.Store) {
	ctx := context.Background()
	const (
		pks     = 40
		minutes = 6
	)
	all := make([]int64, pks)
	for i := range all {
		all[i] = int64(i + 1)
	}
	track(t, s, all[:pks/2]...)
	value := func(pk int64, m int) int64 { return (pk*7919+int64(m)*104729)%5000 + int64(m%2)*1_000_000 }
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for m := range minutes {
				mm := m
				if w%2 == 1 {
					mm = minutes - 1 - m // the other pair records backwards
				}
				b := influencer.Batch{Minute: minute(mm), Shard: w}
				for _, pk := range all {
					b.Samples = append(b.Samples, sample(pk, mm, value(pk, mm), 1))
				}
				if _, err := s.Record(ctx, b); !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			var err error
			if i%2 == 0 {
				_, err = s.Track(ctx, all[pks/2+i:])
			} else {
				_, err = s.Untrack(ctx, all[:i])
			}
			if !assert.NoError(t, err) {
				return
			}
		}
	})
	wg.Wait()
	track(t, s, all...)
	untrack(t, s, 3, 4)

	current := map[int64]int64{}
	var total int64
	for _, pk := range all {
		sum := summary(t, s, pk)
		assert.EqualValues(t, minutes, sum.Samples)
		assert.Equal(t, value(pk, minutes-1), sum.FollowerCount)
		if pk == 3 || pk == 4 {
			continue
		}
		current[pk] = sum.FollowerCount
		total += sum.FollowerCount
	}
	st := stats(t, s, minute(minutes))
	assert.EqualValues(t, pks-2, st.Tracked)
	assert.EqualValues(t, pks-2, st.Influencers)
	assert.Equal(t, total, st.FollowerTotal)
	assertRanks(t, s, current, "after concurrent records and registry changes")
	page, err := s.Leaderboard(ctx, nil, 100)
	require.NoError(t, err)
	assert.Len(t, page, pks-2)
}
