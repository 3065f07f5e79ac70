package memory_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/memory"
	"github.com/mockstagram/pipeline/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return memory.New(clockwork.NewFakeClockAt(storetest.Now()))
	})
}

func BenchmarkRecord(b *testing.B) {
	s := memory.New(clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	const batchSize = 1000
	samples := make([]influencer.Sample, batchSize)
	m := 0
	for b.Loop() {
		minute := storetest.Now().Add(time.Duration(m) * time.Minute)
		for i := range samples {
			samples[i] = influencer.Sample{PK: int64(1_000_000 + i), Username: "u", FollowerCount: int64(m), FollowingCount: 1, Minute: minute}
		}
		if _, err := s.Record(ctx, influencer.Batch{Minute: minute, Samples: samples}); err != nil {
			b.Fatal(err)
		}
		m++
	}
	b.ReportMetric(float64(m*batchSize)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkRecordMissed records one shard's batch (about 977 pks of a
// million, 1024 shards) per iteration, shard after shard through the
// minutes, with a share of the pks failed. B/pk is the heap the store
// keeps per pk after a run (its steady-state cost).
func BenchmarkRecordMissed(b *testing.B) {
	const shards = 1024
	byShard := make([][]int64, shards)
	for pk := int64(1_000_000); pk < 2_000_000; pk++ {
		s := influencer.ShardOf(pk, shards)
		byShard[s] = append(byShard[s], pk)
	}
	for _, failedPct := range []int{0, 50, 100} {
		b.Run(fmt.Sprintf("failed=%d%%", failedPct), func(b *testing.B) {
			s := memory.New(clockwork.NewFakeClockAt(storetest.Now()))
			ctx := context.Background()
			var pks int64
			i := 0
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				shard := i % shards
				minute := storetest.Now().Add(time.Duration(i/shards) * time.Minute)
				batch := influencer.Batch{Minute: minute, Shard: shard}
				for j, pk := range byShard[shard] {
					if j*100 < failedPct*len(byShard[shard]) && (failedPct == 100 || j%2 == 0) {
						batch.Failures = append(batch.Failures, influencer.Failure{PK: pk, Minute: minute,
							Class: "timeout", Reason: "request still running; gave up at the minute's deadline", Attempts: 1})
						continue
					}
					batch.Samples = append(batch.Samples, influencer.Sample{PK: pk, Username: "u",
						FollowerCount: int64(j), FollowingCount: 1, Minute: minute})
				}
				if _, err := s.Record(ctx, batch); err != nil {
					b.Fatal(err)
				}
				pks += int64(len(byShard[shard]))
				i++
			}
			b.StopTimer()
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pks), "ns/pk")
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(pks), "heapB/pk")
			runtime.KeepAlive(s)
		})
	}
}

// BenchmarkFootprint measures what the store keeps for a run of one
// million tracked influencers over four minutes (4M samples, batches of
// one shard's ~1000 pks, a username per pk as the fetcher decodes it):
// the heap in use after a GC per sample and per pk. Run it once:
// go test -run - -bench Footprint -benchtime 1x ./store/memory/
func BenchmarkFootprint(b *testing.B) {
	const (
		pks     = 1_000_000
		minutes = 4
		batch   = 1000
	)
	ctx := context.Background()
	all := make([]int64, pks)
	names := make([]string, pks)
	for i := range all {
		all[i] = int64(1_000_000 + i)
		names[i] = fmt.Sprintf("influencer_%d", all[i])
	}
	for b.Loop() {
		s := memory.New(clockwork.NewFakeClockAt(storetest.Now()))
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := s.Bootstrap(ctx, all); err != nil {
			b.Fatal(err)
		}
		samples := make([]influencer.Sample, 0, batch)
		for m := range minutes {
			minute := storetest.Now().Add(time.Duration(m) * time.Minute)
			for lo := 0; lo < pks; lo += batch {
				samples = samples[:0]
				for j, pk := range all[lo:min(lo+batch, pks)] {
					samples = append(samples, influencer.Sample{PK: pk, Username: names[lo+j],
						FollowerCount: pk*7%100_000 + int64(m), FollowingCount: pk % 1000, Minute: minute})
				}
				if _, err := s.Record(ctx, influencer.Batch{Minute: minute, Samples: samples}); err != nil {
					b.Fatal(err)
				}
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		inuse := float64(int64(after.HeapInuse) - int64(before.HeapInuse))
		b.ReportMetric(inuse/(pks*minutes), "heapB/sample")
		b.ReportMetric(inuse/pks, "heapB/pk")
		b.ReportMetric(inuse/(1<<20), "heapMiB")
		runtime.KeepAlive(s)
	}
}

// TestRollupMergesPrunedAndLateMinutes: the buckets of a pruned day are
// kept apart from the timeline; a late minute of that day recorded after
// the prune is merged into them on read, as if nothing had been pruned.
func TestRollupMergesPrunedAndLateMinutes(t *testing.T) {
	ctx := context.Background()
	day := storetest.Now().UTC().Truncate(24 * time.Hour).Add(-10 * 24 * time.Hour)
	at := func(m int) time.Time { return day.Add(time.Duration(m) * time.Minute) }
	record := func(t *testing.T, s *memory.Store, m int, follower, following int64) {
		t.Helper()
		b := influencer.Batch{Minute: at(m), Samples: []influencer.Sample{{PK: 1, Username: "u",
			FollowerCount: follower, FollowingCount: following, Minute: at(m)}}}
		_, err := s.Record(ctx, b)
		require.NoError(t, err)
	}
	pruned := memory.New(clockwork.NewFakeClockAt(storetest.Now()))
	kept := memory.New(clockwork.NewFakeClockAt(storetest.Now()))
	for _, s := range []*memory.Store{pruned, kept} {
		record(t, s, 10, 100, 5)
		record(t, s, 20, 300, 7)
		record(t, s, 24*60+1, 50, 1) // the next day
	}
	require.NoError(t, pruned.Prune(ctx, storetest.Now(), 24*time.Hour))
	points, err := pruned.Timeline(ctx, 1, at(0), at(3*24*60), 10)
	require.NoError(t, err)
	assert.Empty(t, points, "minutes pruned")
	for _, s := range []*memory.Store{pruned, kept} {
		record(t, s, 15, 200, 9) // late, into the pruned hour
		record(t, s, 5, 10, 3)   // late, older than the pruned ones
	}
	for _, step := range []time.Duration{store.Hourly, store.Daily} {
		want, err := kept.Rollup(ctx, 1, step, at(0), at(3*24*60), 10)
		require.NoError(t, err)
		got, err := pruned.Rollup(ctx, 1, step, at(0), at(3*24*60), 10)
		require.NoError(t, err)
		assert.Equal(t, want, got, "step %s", step)
		require.Len(t, got, 2, "step %s", step)
		assert.Equal(t, store.Bucket{Start: day, Samples: 4, FollowerAvg: 152.5, FollowerMin: 10, FollowerMax: 300,
			FollowerLast: 300, FollowingAvg: 6, FollowingMin: 3, FollowingMax: 9, FollowingLast: 7, LastMinute: at(20)}, got[0])
	}
	first, err := pruned.Rollup(ctx, 1, store.Hourly, at(0), at(3*24*60), 1)
	require.NoError(t, err)
	assert.Len(t, first, 1, "limit")
}
