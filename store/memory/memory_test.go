package memory_test

import (
	"context"
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
