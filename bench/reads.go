package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

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
// A 404 (a pk without a stored sample yet) is an answer, not an error. With
// db (a Postgres wiring's database) it also times a primary-key lookup of
// influencer_summary straight on the database (dbLookups), the floor under
// any read of the API there. It returns nil when readers is 0 or ctx ends
// before from.
func readLoad(ctx context.Context, base, db string, readers int, rate float64, pks influencer.Range, from, until time.Time) *Reads {
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
	var (
		wg       sync.WaitGroup
		dbLat    *Latency
		dbErrors int64
	)
	if db != "" {
		wg.Go(func() {
			dbLat, dbErrors = dbLookups(ctx, db, rate*dbLookupShare, pks, until)
		})
	}
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
	reads := &Reads{Influencer: latency(results[0]), Stats: latency(results[1]), Database: dbLat, Errors: dbErrors}
	for _, r := range results {
		reads.Errors += r.Errors - r.NotFound
	}
	return reads
}

// dbLookupShare is the rate of dbLookups relative to the API's read rate.
const dbLookupShare = 0.5

// dbLookupSQL is the cheapest read of the store: one primary-key lookup.
const dbLookupSQL = `SELECT follower_count FROM influencer_summary WHERE pk = $1`

// dbLookups times dbLookupSQL of random pks at rate per second on one
// connection of its own to db until ctx ends or until: how long the
// database takes to answer the simplest read while the pipeline writes
// (its CPU and locks shared with the recorders and, on the Postgres broker,
// the queues). A pk without a row yet is an answer; any other failure
// counts as an error (the connection failing to open: one). It returns nil
// when no lookup was answered.
func dbLookups(ctx context.Context, db string, rate float64, pks influencer.Range, until time.Time) (*Latency, int64) {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return nil, 1
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tick := time.NewTicker(time.Duration(float64(time.Second) / max(rate, 1)))
	defer tick.Stop()
	var (
		lat    []time.Duration
		failed int64
	)
	for {
		select {
		case <-ctx.Done():
			return latencyOf(lat), failed
		case <-tick.C:
		}
		pk := pks.From + rand.Int64N(pks.To-pks.From+1)
		start := time.Now()
		var followers int64
		err := conn.QueryRow(ctx, dbLookupSQL, pk).Scan(&followers)
		switch {
		case ctx.Err() != nil:
			return latencyOf(lat), failed
		case err == nil || errors.Is(err, pgx.ErrNoRows):
			lat = append(lat, time.Since(start))
		default:
			failed++
		}
	}
}

// latencyOf is the median and 99th percentile of lat (weightedQuantile,
// the freshness quantiles' definition), nil when lat is empty.
func latencyOf(lat []time.Duration) *Latency {
	if len(lat) == 0 {
		return nil
	}
	xs := make([]weighted, len(lat))
	for i, d := range lat {
		xs[i] = weighted{v: d, w: 1}
	}
	return &Latency{N: int64(len(lat)), P50: Dur(weightedQuantile(xs, 0.50)), P99: Dur(weightedQuantile(xs, 0.99))}
}
