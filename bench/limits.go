package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/simulator/loadgen"
	"github.com/mockstagram/pipeline/store"
)

// Limits are the raw rates the pipeline's rate is compared with.
type Limits struct {
	Duration Dur `json:"duration_s"` // of each measurement

	// The simulator process under a plain load generator.
	SimulatorGETs      float64 `json:"simulator_gets_per_s"`
	SimulatorP50       Dur     `json:"simulator_p50_s"`
	SimulatorP99       Dur     `json:"simulator_p99_s"`
	SimulatorErrors    int64   `json:"simulator_errors"`
	SimulatorCPUPerGET Dur     `json:"simulator_cpu_per_get_s"`

	// Store.Record with WriteBatch-sample batches from WriteWorkers goroutines.
	MemoryWrites   float64 `json:"memory_samples_per_s"`
	PostgresWrites float64 `json:"postgres_samples_per_s,omitempty"` // 0: not measured
	// PostgresServerCPUPerSample is the PostgreSQL server's CPU (backends of
	// the database and the server's own processes) per written sample.
	PostgresServerCPUPerSample Dur `json:"postgres_server_cpu_per_sample_s,omitempty"`
}

// The batch path of the write limit: batches as large as a shard-minute
// of a million influencers on 1024 shards, written concurrently.
const (
	WriteBatch   = 1000
	WriteWorkers = 4
)

// simulatorRate measures the simulator at base with loadgen (64
// keep-alive connections, no rate limit) for d.
func simulatorRate(ctx context.Context, base string, pks influencer.Range, d time.Duration) (loadgen.Result, error) {
	return loadgen.Run(ctx, loadgen.Config{BaseURL: base, PKs: pks, Concurrency: loadgen.DefaultConcurrency, Duration: d})
}

// writeRate writes batches of WriteBatch samples of pks (the simulator's
// values, consecutive pks, minutes going back from the current one) to s
// from WriteWorkers goroutines for d, and returns the samples written per
// second. A batch under way at the end is finished, not cancelled (a
// cancelled query costs the pool its connection).
func writeRate(ctx context.Context, s store.Store, pks influencer.Range, d time.Duration) (perSecond float64, written int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	until := time.Now().Add(d)
	n := pks.To - pks.From + 1
	blocks := (n + WriteBatch - 1) / WriteBatch
	base := time.Now().UTC().Truncate(time.Minute)
	var next, done atomic.Int64
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for range WriteWorkers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(until) {
				i := next.Add(1) - 1
				b := writeBatch(pks, base.Add(-time.Duration(i/blocks)*time.Minute), i%blocks)
				res, err := s.Record(ctx, b)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = cmpOr(firstErr, err)
						mu.Unlock()
						cancel()
					}
					return
				}
				done.Add(int64(res.Inserted))
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, fmt.Errorf("write rate: %w", firstErr)
	}
	return float64(done.Load()) / time.Since(start).Seconds(), done.Load(), nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// writeBatch is block (WriteBatch consecutive pks of pks) for minute.
func writeBatch(pks influencer.Range, minute time.Time, block int64) influencer.Batch {
	from := pks.From + block*WriteBatch
	to := min(from+WriteBatch-1, pks.To)
	b := influencer.Batch{Minute: minute, Shard: int(block % 1024), Samples: make([]influencer.Sample, 0, to-from+1)}
	for pk := from; pk <= to; pk++ {
		f, g := simulator.Counts(pk, minute)
		b.Samples = append(b.Samples, influencer.Sample{
			PK: pk, Username: simulator.Username(pk), FollowerCount: f, FollowingCount: g,
			Minute: minute, FetchedAt: minute.Add(30 * time.Second),
		})
	}
	return b
}
