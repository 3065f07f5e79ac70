package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/memory"
	"github.com/mockstagram/pipeline/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return memory.New(clockwork.NewFakeClockAt(storetest.Now()))
	})
}

func TestTrackMillion(t *testing.T) {
	s := memory.New(clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	pks := influencer.Range{From: 1_000_000, To: 1_999_999}.PKs()

	start := time.Now()
	n, err := s.Track(ctx, pks)
	require.NoError(t, err)
	t.Logf("Track of %d pks took %s", len(pks), time.Since(start))
	assert.Equal(t, len(pks), n)

	start = time.Now()
	active, _, err := s.ActivePKs(ctx)
	require.NoError(t, err)
	t.Logf("ActivePKs of %d pks took %s", len(active), time.Since(start))
	assert.Equal(t, pks, active)
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
