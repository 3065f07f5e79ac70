package handlers_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
)

// instantAPI answers every pk at once, as a cheap API would.
type instantAPI struct{}

func (instantAPI) Influencer(_ context.Context, pk int64, _ time.Time) (influencer.Sample, error) {
	return influencer.Sample{PK: pk, Username: "influencer", FollowerCount: pk, FollowingCount: 3}, nil
}

func benchCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFetcherHandle is the fetcher's own cost per sample (the fan-out
// of a 1,000-pk shard to the workers, the batch and its result message),
// with an API that answers at once: cpu-µs/sample, 4 shards in flight.
func BenchmarkFetcherHandle(b *testing.B) {
	const pks = 1000
	clock := clockwork.NewRealClock()
	f, err := handlers.NewFetcher(handlers.FetcherConfig{Concurrency: 256, RetryInitial: time.Millisecond, RetryMax: time.Second,
		DeadlineGrace: time.Hour}, instantAPI{}, &fakePublisher{}, clock, discardLogger(), newMetrics())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	now := clock.Now()
	tk := messages.Task{Minute: now.Truncate(time.Minute), Shard: 5, Deadline: now.Add(time.Hour)}
	for pk := int64(1); pk <= pks; pk++ {
		tk.PKs = append(tk.PKs, pk*1024+5)
	}
	msg, err := messages.NewTask(tk)
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(2) // x GOMAXPROCS shards at once
	b.ReportAllocs()
	b.ResetTimer()
	cpu := benchCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			out, err := f.Handle(msg)
			if err != nil || len(out) != 1 {
				b.Errorf("handle: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64((benchCPU(b)-cpu).Nanoseconds())/float64(b.N*pks)/1000, "cpu-µs/sample")
}
