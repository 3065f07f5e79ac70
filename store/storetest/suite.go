package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Run runs the contract suite. newStore must return a fresh, empty store for
// each call (it is called once per subtest, possibly in parallel) and clean
// it up with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []contractTest{
		{"RecordAndSummary", testRecordAndSummary},
		{"Timeline", testTimeline},
		{"Redelivery", testRedelivery},
		{"OverlappingBatch", testOverlappingBatch},
		{"OutOfOrderMinutes", testOutOfOrder},
		{"Missed", testMissed},
		{"InvalidBatch", testInvalidBatch},
		{"Registry", testRegistry},
		{"TrackedPaging", testTrackedPaging},
		{"Bootstrap", testBootstrap},
		{"ConcurrentBootstrap", testConcurrentBootstrap},
		{"TryLead", testTryLead},
		{"ConcurrentRecord", testConcurrentRecord},
		{"Ping", testPing},
		{"TrackMillion", testTrackMillion},
	}
	tests = append(tests, readSideTests...)
	tests = append(tests, deadLetterTests...)
	tests = append(tests, suspicionTests...)
	tests = append(tests, missedTests...)
	tests = append(tests, retentionTests...)
	tests = append(tests, reconcileTests...)
	tests = append(tests, moversTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// contractTest is one named test of the suite.
type contractTest struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

func minute(i int) time.Time { return Now().Add(time.Duration(i) * time.Minute) }

func sample(pk int64, m int, follower, following int64) influencer.Sample {
	return influencer.Sample{
		PK:             pk,
		Username:       fmt.Sprintf("user-%d-m%d", pk, m),
		FollowerCount:  follower,
		FollowingCount: following,
		Minute:         minute(m),
		FetchedAt:      minute(m).Add(3 * time.Second),
	}
}

func batch(m int, samples ...influencer.Sample) influencer.Batch {
	return influencer.Batch{Minute: minute(m), Shard: 7, Samples: samples}
}

func record(t *testing.T, s store.Store, b influencer.Batch) store.RecordResult {
	t.Helper()
	res, err := s.Record(context.Background(), b)
	require.NoError(t, err)
	return res
}

func summary(t *testing.T, s store.Store, pk int64) influencer.Summary {
	t.Helper()
	sum, err := s.Summary(context.Background(), pk)
	require.NoError(t, err)
	return sum
}

func testRecordAndSummary(t *testing.T, s store.Store) {
	ctx := context.Background()
	res := record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20), sample(3, 0, 300, 0)))
	assert.Equal(t, store.RecordResult{Inserted: 3}, res)
	res = record(t, s, batch(1, sample(1, 1, 110, 11), sample(2, 1, 190, 21)))
	assert.Equal(t, store.RecordResult{Inserted: 2}, res)

	tests := []struct {
		pk   int64
		want influencer.Summary
		avg  float64
	}{
		{1, influencer.Summary{PK: 1, Username: "user-1-m1", FollowerCount: 110, FollowingCount: 11, LastMinute: minute(1), Samples: 2, FollowerSum: 210}, 105},
		{2, influencer.Summary{PK: 2, Username: "user-2-m1", FollowerCount: 190, FollowingCount: 21, LastMinute: minute(1), Samples: 2, FollowerSum: 390}, 195},
		{3, influencer.Summary{PK: 3, Username: "user-3-m0", FollowerCount: 300, FollowingCount: 0, LastMinute: minute(0), Samples: 1, FollowerSum: 300}, 300},
	}
	for _, tc := range tests {
		got := summary(t, s, tc.pk)
		assert.Equal(t, tc.want, got, "pk %d", tc.pk)
		assert.InDelta(t, tc.avg, got.AverageFollowerCount(), 1e-9, "pk %d", tc.pk)
	}

	_, err := s.Summary(ctx, 4)
	assert.ErrorIs(t, err, store.ErrNotFound)

	// A batch of failures only stores no sample.
	res = record(t, s, influencer.Batch{Minute: minute(2), Failures: []influencer.Failure{{PK: 4, Minute: minute(2), Class: "timeout", Reason: "deadline"}}})
	assert.Equal(t, store.RecordResult{Missed: 1}, res)
	_, err = s.Summary(ctx, 4)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func testTimeline(t *testing.T, s store.Store) {
	ctx := context.Background()
	for m := range 10 {
		record(t, s, batch(m, sample(1, m, int64(1000+m), int64(50+m)), sample(2, m, 5, 5)))
	}
	points := func(from, to int) []influencer.Point {
		out := []influencer.Point{}
		for m := from; m < to; m++ {
			out = append(out, influencer.Point{Minute: minute(m), FollowerCount: int64(1000 + m), FollowingCount: int64(50 + m)})
		}
		return out
	}
	tests := []struct {
		name     string
		pk       int64
		from, to time.Time
		limit    int
		want     []influencer.Point
	}{
		{"all", 1, minute(-5), minute(20), 100, points(0, 10)},
		{"range is half-open", 1, minute(2), minute(7), 100, points(2, 7)},
		{"limit keeps the oldest", 1, minute(2), minute(7), 3, points(2, 5)},
		{"from between minutes", 1, minute(2).Add(30 * time.Second), minute(4), 100, points(3, 4)},
		{"empty range", 1, minute(20), minute(30), 100, points(0, 0)},
		{"to before from", 1, minute(5), minute(2), 100, points(0, 0)},
		{"unknown pk", 99, minute(0), minute(10), 100, points(0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Timeline(ctx, tc.pk, tc.from, tc.to, tc.limit)
			require.NoError(t, err)
			assert.NotNil(t, got, "empty, not nil")
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := s.Timeline(ctx, 1, minute(0), minute(10), 0)
	assert.Error(t, err, "limit 0")
}

func testRedelivery(t *testing.T, s store.Store) {
	ctx := context.Background()
	b := batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20))
	b.Failures = []influencer.Failure{{PK: 3, Minute: minute(0), Class: "http_5xx", Reason: "502"}}
	assert.Equal(t, store.RecordResult{Inserted: 2, Missed: 1}, record(t, s, b))
	before1, before2 := summary(t, s, 1), summary(t, s, 2)
	tl, err := s.Timeline(ctx, 1, minute(-1), minute(1), 10)
	require.NoError(t, err)

	for range 3 {
		assert.Equal(t, store.RecordResult{Duplicates: 2}, record(t, s, b))
	}
	assert.Equal(t, before1, summary(t, s, 1))
	assert.Equal(t, before2, summary(t, s, 2))
	tl2, err := s.Timeline(ctx, 1, minute(-1), minute(1), 10)
	require.NoError(t, err)
	assert.Equal(t, tl, tl2)
	n, err := s.MissedSince(ctx, minute(0))
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
}

func testOverlappingBatch(t *testing.T, s store.Store) {
	record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20)))
	// pk 2 at minute 0 again, with other values: the stored one wins.
	res := record(t, s, batch(0, sample(2, 0, 999, 99), sample(3, 0, 300, 30)))
	assert.Equal(t, store.RecordResult{Inserted: 1, Duplicates: 1}, res)

	assert.Equal(t, influencer.Summary{PK: 2, Username: "user-2-m0", FollowerCount: 200, FollowingCount: 20, LastMinute: minute(0), Samples: 1, FollowerSum: 200}, summary(t, s, 2))
	assert.Equal(t, influencer.Summary{PK: 3, Username: "user-3-m0", FollowerCount: 300, FollowingCount: 30, LastMinute: minute(0), Samples: 1, FollowerSum: 300}, summary(t, s, 3))
	tl, err := s.Timeline(context.Background(), 2, minute(0), minute(1), 10)
	require.NoError(t, err)
	assert.Equal(t, []influencer.Point{{Minute: minute(0), FollowerCount: 200, FollowingCount: 20}}, tl)
}

func testOutOfOrder(t *testing.T, s store.Store) {
	record(t, s, batch(5, sample(1, 5, 500, 50)))
	res := record(t, s, batch(3, sample(1, 3, 300, 30)))
	assert.Equal(t, store.RecordResult{Inserted: 1}, res)

	assert.Equal(t, influencer.Summary{
		PK: 1, Username: "user-1-m5", FollowerCount: 500, FollowingCount: 50,
		LastMinute: minute(5), Samples: 2, FollowerSum: 800,
	}, summary(t, s, 1))
	assert.InDelta(t, 400.0, summary(t, s, 1).AverageFollowerCount(), 1e-9)

	record(t, s, batch(9, sample(1, 9, 900, 90)))
	assert.Equal(t, influencer.Summary{
		PK: 1, Username: "user-1-m9", FollowerCount: 900, FollowingCount: 90,
		LastMinute: minute(9), Samples: 3, FollowerSum: 1700,
	}, summary(t, s, 1))

	tl, err := s.Timeline(context.Background(), 1, minute(0), minute(10), 10)
	require.NoError(t, err)
	assert.Equal(t, []influencer.Point{
		{Minute: minute(3), FollowerCount: 300, FollowingCount: 30},
		{Minute: minute(5), FollowerCount: 500, FollowingCount: 50},
		{Minute: minute(9), FollowerCount: 900, FollowingCount: 90},
	}, tl)
}

func testMissed(t *testing.T, s store.Store) {
	ctx := context.Background()
	fail := func(pk int64, m int) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: minute(m), Class: "timeout", Reason: "context deadline exceeded"}
	}
	missedSince := func(m int) int64 {
		t.Helper()
		n, err := s.MissedSince(ctx, minute(m))
		require.NoError(t, err)
		return n
	}
	record(t, s, batch(0, sample(1, 0, 100, 10)))

	steps := []struct {
		name   string
		batch  influencer.Batch
		want   store.RecordResult
		since0 int64 // MissedSince(minute 0) afterwards
		since1 int64 // MissedSince(minute 1) afterwards
	}{
		{"failures become missed",
			influencer.Batch{Minute: minute(0), Failures: []influencer.Failure{fail(10, 0), fail(11, 0), fail(10, 1)}},
			store.RecordResult{Missed: 3}, 3, 1},
		{"redelivered failures count once",
			influencer.Batch{Minute: minute(0), Failures: []influencer.Failure{fail(10, 0), fail(11, 0), fail(11, 0)}},
			store.RecordResult{}, 3, 1},
		{"no missed entry where a sample exists",
			influencer.Batch{Minute: minute(0), Failures: []influencer.Failure{fail(1, 0)}},
			store.RecordResult{}, 3, 1},
		{"sample and failure for one (pk, minute) in one batch",
			influencer.Batch{Minute: minute(2), Samples: []influencer.Sample{sample(12, 2, 5, 5)}, Failures: []influencer.Failure{fail(12, 2)}},
			store.RecordResult{Inserted: 1}, 3, 1},
		{"a later sample removes the missed entry",
			batch(0, sample(10, 0, 7, 7)),
			store.RecordResult{Inserted: 1}, 2, 1},
		{"new failure and filled gap together",
			influencer.Batch{Minute: minute(1), Samples: []influencer.Sample{sample(10, 1, 8, 8)}, Failures: []influencer.Failure{fail(13, 1)}},
			store.RecordResult{Inserted: 1, Missed: 1}, 2, 1},
	}
	for _, st := range steps {
		assert.Equal(t, st.want, record(t, s, st.batch), st.name)
		assert.Equal(t, st.since0, missedSince(0), st.name)
		assert.Equal(t, st.since1, missedSince(1), st.name)
	}
	assert.EqualValues(t, 0, missedSince(2))
	assert.EqualValues(t, 2, missedSince(-100))
	assert.Equal(t, int64(2), summary(t, s, 10).Samples)
}

func testInvalidBatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	valid := sample(1, 0, 100, 10)
	mutate := func(f func(*influencer.Sample)) influencer.Sample {
		x := sample(2, 0, 200, 20)
		f(&x)
		return x
	}
	tests := []struct {
		name  string
		batch influencer.Batch
	}{
		{"duplicate pk", batch(0, valid, sample(2, 0, 1, 1), sample(1, 1, 5, 5))},
		{"negative follower count", batch(0, valid, mutate(func(x *influencer.Sample) { x.FollowerCount = -1 }))},
		{"negative following count", batch(0, valid, mutate(func(x *influencer.Sample) { x.FollowingCount = -1 }))},
		{"count too large", batch(0, valid, mutate(func(x *influencer.Sample) { x.FollowerCount = influencer.MaxCount + 1 }))},
		{"unaligned minute", batch(0, valid, mutate(func(x *influencer.Sample) { x.Minute = x.Minute.Add(time.Second) }))},
		{"zero minute", batch(0, valid, mutate(func(x *influencer.Sample) { x.Minute = time.Time{} }))},
		{"non-positive pk", batch(0, valid, mutate(func(x *influencer.Sample) { x.PK = 0 }))},
		{"empty username", batch(0, valid, mutate(func(x *influencer.Sample) { x.Username = "" }))},
		{"failure with bad pk", influencer.Batch{Minute: minute(0), Samples: []influencer.Sample{valid},
			Failures: []influencer.Failure{{PK: -3, Minute: minute(0), Class: "invalid"}}}},
		{"failure with unaligned minute", influencer.Batch{Minute: minute(0), Samples: []influencer.Sample{valid},
			Failures: []influencer.Failure{{PK: 3, Minute: minute(0).Add(time.Millisecond), Class: "invalid"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Record(ctx, tc.batch)
			require.Error(t, err)
			assert.ErrorIs(t, err, store.ErrInvalid)
		})
	}
	// Nothing of any rejected batch was stored.
	for _, pk := range []int64{1, 2, 3} {
		_, err := s.Summary(ctx, pk)
		assert.ErrorIs(t, err, store.ErrNotFound, "pk %d", pk)
		tl, err := s.Timeline(ctx, pk, minute(-10), minute(10), 10)
		require.NoError(t, err)
		assert.Empty(t, tl, "pk %d", pk)
	}
	n, err := s.MissedSince(ctx, time.Time{})
	require.NoError(t, err)
	assert.Zero(t, n)
}

func testRegistry(t *testing.T, s store.Store) {
	ctx := context.Background()
	version := func() int64 {
		t.Helper()
		v, err := s.RegistryVersion(ctx)
		require.NoError(t, err)
		return v
	}
	active := func() []int64 {
		t.Helper()
		pks, v, err := s.ActivePKs(ctx)
		require.NoError(t, err)
		assert.Equal(t, version(), v, "ActivePKs version")
		return pks
	}
	assert.Empty(t, active())

	steps := []struct {
		name       string
		untrack    bool
		pks        []int64
		changed    int
		bumped     bool
		wantActive []int64
	}{
		{"track new", false, []int64{3, 1, 2}, 3, true, []int64{1, 2, 3}},
		{"track again changes nothing", false, []int64{2, 3}, 0, false, []int64{1, 2, 3}},
		{"duplicates in input count once", false, []int64{5, 5, 4}, 2, true, []int64{1, 2, 3, 4, 5}},
		{"track nothing", false, nil, 0, false, []int64{1, 2, 3, 4, 5}},
		{"untrack", true, []int64{2, 4}, 2, true, []int64{1, 3, 5}},
		{"untrack again changes nothing", true, []int64{2}, 0, false, []int64{1, 3, 5}},
		{"untrack unknown", true, []int64{99}, 0, false, []int64{1, 3, 5}},
		{"re-track", false, []int64{2, 3}, 1, true, []int64{1, 2, 3, 5}},
	}
	for _, st := range steps {
		before := version()
		var (
			n   int
			err error
		)
		if st.untrack {
			n, err = s.Untrack(ctx, st.pks)
		} else {
			n, err = s.Track(ctx, st.pks)
		}
		require.NoError(t, err, st.name)
		assert.Equal(t, st.changed, n, st.name)
		if st.bumped {
			assert.NotEqual(t, before, version(), st.name)
		} else {
			assert.Equal(t, before, version(), st.name)
		}
		assert.Equal(t, st.wantActive, active(), st.name)
	}

	_, err := s.Track(ctx, []int64{7, 0})
	assert.ErrorIs(t, err, store.ErrInvalid, "non-positive pk")
	_, err = s.Untrack(ctx, []int64{-1})
	assert.ErrorIs(t, err, store.ErrInvalid, "non-positive pk")
	assert.Equal(t, []int64{1, 2, 3, 5}, active(), "a rejected call changes nothing")
}

func testTrackedPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Track(ctx, []int64{50, 10, 40, 20, 30})
	require.NoError(t, err)
	_, err = s.Untrack(ctx, []int64{20})
	require.NoError(t, err)
	record(t, s, batch(0, sample(30, 0, 1, 1)))

	var (
		all   []influencer.Tracked
		after int64
		pages int
	)
	for {
		page, err := s.Tracked(ctx, after, 2)
		require.NoError(t, err)
		require.NotNil(t, page, "empty, not nil")
		if len(page) == 0 {
			break
		}
		assert.LessOrEqual(t, len(page), 2)
		all = append(all, page...)
		after = page[len(page)-1].PK
		pages++
	}
	assert.Equal(t, 3, pages)
	require.Len(t, all, 5)
	for i, want := range []struct {
		pk       int64
		active   bool
		username string
	}{{10, true, ""}, {20, false, ""}, {30, true, "user-30-m0"}, {40, true, ""}, {50, true, ""}} {
		assert.Equal(t, want.pk, all[i].PK)
		assert.Equal(t, want.active, all[i].Active, "pk %d", want.pk)
		assert.Equal(t, want.username, all[i].Username, "pk %d", want.pk)
		assert.False(t, all[i].UpdatedAt.IsZero(), "pk %d", want.pk)
	}

	page, err := s.Tracked(ctx, 25, 10)
	require.NoError(t, err)
	require.Len(t, page, 3)
	assert.Equal(t, int64(30), page[0].PK)
	_, err = s.Tracked(ctx, 0, 0)
	assert.Error(t, err, "limit 0")
}

func testBootstrap(t *testing.T, s store.Store) {
	ctx := context.Background()
	did, err := s.Bootstrap(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	assert.True(t, did)
	v, err := s.RegistryVersion(ctx)
	require.NoError(t, err)

	// Even after the registry was emptied, a second bootstrap does nothing.
	_, err = s.Untrack(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	did, err = s.Bootstrap(ctx, []int64{4, 5})
	require.NoError(t, err)
	assert.False(t, did)
	pks, v2, err := s.ActivePKs(ctx)
	require.NoError(t, err)
	assert.Empty(t, pks)
	assert.NotEqual(t, v, v2)
	page, err := s.Tracked(ctx, 0, 10)
	require.NoError(t, err)
	assert.Len(t, page, 3)
}

func testConcurrentBootstrap(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 8
	var (
		wg  sync.WaitGroup
		did [n]bool
		err [n]error
	)
	for i := range n {
		wg.Go(func() {
			did[i], err[i] = s.Bootstrap(ctx, []int64{int64(100*i + 1), int64(100*i + 2)})
		})
	}
	wg.Wait()
	winner := -1
	for i := range n {
		require.NoError(t, err[i])
		if did[i] {
			assert.Equal(t, -1, winner, "two bootstraps seeded")
			winner = i
		}
	}
	require.NotEqual(t, -1, winner, "no bootstrap seeded")
	pks, _, e := s.ActivePKs(ctx)
	require.NoError(t, e)
	assert.Equal(t, []int64{int64(100*winner + 1), int64(100*winner + 2)}, pks)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func testTryLead(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, ok, err := s.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok)
	assert.False(t, isClosed(a.Lost()))

	_, ok, err = s.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	assert.False(t, ok, "second leader while the first holds the lock")

	other, ok, err := s.TryLead(ctx, "other")
	require.NoError(t, err)
	require.True(t, ok, "locks are per name")

	require.NoError(t, a.Release(ctx))
	assert.True(t, isClosed(a.Lost()), "Release closes Lost")
	assert.NoError(t, a.Release(ctx), "Release twice")

	b, ok, err := s.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok, "next leader after Release")
	assert.False(t, isClosed(b.Lost()))
	assert.False(t, isClosed(other.Lost()))
	require.NoError(t, b.Release(ctx))
	require.NoError(t, other.Release(ctx))
}

func testConcurrentRecord(t *testing.T, s store.Store) {
	ctx := context.Background()
	const (
		workers = 6
		batches = 8
		pks     = 50
	)
	// Worker w records minutes w/2*batches+i: workers come in pairs that
	// write the same batches (a redelivery racing the original).
	makeBatch := func(m int) influencer.Batch {
		b := influencer.Batch{Minute: minute(m)}
		for pk := int64(1); pk <= pks; pk++ {
			b.Samples = append(b.Samples, sample(pk, m, pk*1000+int64(m), pk))
		}
		// Reversed order in half of them to provoke lock-order trouble.
		if m%2 == 1 {
			for i, j := 0, len(b.Samples)-1; i < j; i, j = i+1, j-1 {
				b.Samples[i], b.Samples[j] = b.Samples[j], b.Samples[i]
			}
		}
		b.Failures = []influencer.Failure{{PK: 1000, Minute: minute(m), Class: "timeout"}}
		return b
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inserted int
		missed   int
	)
	for w := range workers {
		wg.Go(func() {
			for i := range batches {
				res, err := s.Record(ctx, makeBatch(w/2*batches+i))
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				inserted += res.Inserted
				missed += res.Missed
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	minutes := workers / 2 * batches
	assert.Equal(t, minutes*pks, inserted)
	assert.Equal(t, minutes, missed)
	for pk := int64(1); pk <= pks; pk++ {
		var sum int64
		for m := range minutes {
			sum += pk*1000 + int64(m)
		}
		assert.Equal(t, influencer.Summary{
			PK: pk, Username: fmt.Sprintf("user-%d-m%d", pk, minutes-1),
			FollowerCount: pk*1000 + int64(minutes-1), FollowingCount: pk,
			LastMinute: minute(minutes - 1), Samples: int64(minutes), FollowerSum: sum,
		}, summary(t, s, pk))
	}
	tl, err := s.Timeline(ctx, 7, minute(0), minute(minutes), 1000)
	require.NoError(t, err)
	assert.Len(t, tl, minutes)
	n, err := s.MissedSince(ctx, minute(0))
	require.NoError(t, err)
	assert.EqualValues(t, minutes, n)
}

func testPing(t *testing.T, s store.Store) {
	assert.NoError(t, s.Ping(context.Background()))
}

// testTrackMillion: the registry takes a million pks at once (the standard
// install), idempotently, and gives them back in order.
func testTrackMillion(t *testing.T, s store.Store) {
	if testing.Short() {
		t.Skip("slow")
	}
	ctx := context.Background()
	pks := influencer.Range{From: 1_000_000, To: 1_999_999}.PKs()

	start := time.Now()
	n, err := s.Track(ctx, pks)
	require.NoError(t, err)
	t.Logf("Track of %d new pks took %s", len(pks), time.Since(start))
	assert.Equal(t, len(pks), n)

	start = time.Now()
	n, err = s.Track(ctx, pks)
	require.NoError(t, err)
	t.Logf("Track of %d already active pks took %s", len(pks), time.Since(start))
	assert.Zero(t, n)

	start = time.Now()
	active, _, err := s.ActivePKs(ctx)
	require.NoError(t, err)
	t.Logf("ActivePKs of %d pks took %s", len(active), time.Since(start))
	assert.Equal(t, pks, active)

	start = time.Now()
	n, err = s.Untrack(ctx, pks[:500_000])
	require.NoError(t, err)
	t.Logf("Untrack of %d pks took %s", n, time.Since(start))
	assert.Equal(t, 500_000, n)
}
