package memory_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
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
