package bench

import (
	"context"
	"sync"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator/loadgen"
)

// statsShare is the share of the reads that ask for /api/v1/stats; the
// others ask for one influencer.
const statsShare = 0.1

// readLoad reads the API at base from the time from until ctx ends (or
// until, at the latest) with loadgen: readers workers ask at rate (all
// together; 0 = unlimited) for GET /api/v1/influencers/{pk} over pks, one
// in ten requests for GET /api/v1/stats, and it reports their latencies.
// A 404 (a pk without a stored sample yet) is an answer, not an error. It
// returns nil when readers is 0 or ctx ends before from.
func readLoad(ctx context.Context, base string, readers int, rate float64, pks influencer.Range, from, until time.Time) *Reads {
	if readers <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Until(from)):
	}
	statsWorkers := max(1, readers/10)
	runs := []loadgen.Config{
		{BaseURL: base, PKs: pks, Concurrency: max(1, readers-statsWorkers), Rate: rate * (1 - statsShare)},
		{BaseURL: base, Path: "/api/v1/stats", Concurrency: statsWorkers, Rate: rate * statsShare},
	}
	results := make([]loadgen.Result, len(runs))
	var wg sync.WaitGroup
	for i, cfg := range runs {
		cfg.Duration = max(time.Until(until), time.Millisecond)
		wg.Go(func() {
			// The configurations are valid, so Run returns no error.
			results[i], _ = loadgen.Run(ctx, cfg)
		})
	}
	wg.Wait()
	latency := func(r loadgen.Result) Latency {
		return Latency{N: r.OK + r.NotFound, P50: Dur(r.P50), P99: Dur(r.P99)}
	}
	reads := &Reads{Influencer: latency(results[0]), Stats: latency(results[1])}
	for _, r := range results {
		reads.Errors += r.Errors - r.NotFound
	}
	return reads
}
