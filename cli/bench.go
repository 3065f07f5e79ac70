package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"go.uber.org/fx"
	"golang.org/x/time/rate"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// BenchCmd is 'mockstagram bench': the whole pipeline in one process on N
// influencers against the built-in deterministic simulator, for several
// whole minutes of wall time.
type BenchCmd struct {
	Influencers int     `default:"100000" help:"Number of influencers (pks 1000000..)."`
	Minutes     int     `default:"3" help:"Whole minutes to measure (the partial first minute is not counted)."`
	Readers     int     `default:"4" help:"Concurrent API readers during the measured minutes (GET /api/v1/influencers/{pk} and /api/v1/stats); 0 = none."`
	ReadRate    float64 `default:"200" help:"Total read requests per second (10,000 viewers an hour is a few per second)."`
	CPUProfile  string  `name:"cpuprofile" env:"-" help:"Write a CPU profile of the measured minutes to this file (go tool pprof)."`
}

// Run runs the benchmark and prints per-minute and overall figures.
func (c BenchCmd) Run(e env, cfg config.Config) error {
	if c.Influencers < 1 || c.Influencers > 5_000_000 || c.Minutes < 1 {
		return usageError{fmt.Errorf("want 1 <= --influencers <= 5000000 and --minutes >= 1")}
	}
	cfg.APIURL = ""
	cfg.SimulatorMode = config.SimulatorDeterministic
	cfg.RegistryBootstrap = influencer.Range{From: 1_000_000, To: 1_000_000 + int64(c.Influencers) - 1}.String()
	if cfg.HTTPAddr == config.Default().HTTPAddr {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.LogLevel == "info" {
		cfg.LogLevel = "warn"
	}
	meter := &benchMeter{want: c.Influencers, minutes: map[int64]*minuteStat{}}
	var srv *app.HTTPServer
	a := fx.New(app.Options(cfg, app.AllRoles()),
		fx.Decorate(func(s store.Store) store.Store { meter.Store = s; return meter }),
		fx.Populate(&srv),
		fx.NopLogger, fx.StartTimeout(5*time.Minute))
	if err := a.Err(); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	started := time.Now()
	if err := a.Start(startCtx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		_ = a.Stop(stopCtx)
	}()
	first := started.Truncate(time.Minute).Add(time.Minute)
	last := first.Add(time.Duration(c.Minutes-1) * time.Minute)
	fmt.Fprintf(e.stdout, "bench: %d influencers, %d shards, store=%s; measuring minutes %s..%s\n",
		c.Influencers, cfg.Shards, storeName(cfg), first.Format("15:04"), last.Format("15:04"))
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	readCtx, stopReaders := context.WithCancel(e.ctx)
	defer stopReaders()
	readsDone := make(chan readStats, 1)
	go func() {
		readsDone <- readLoad(readCtx, "http://"+srv.Addr, c.Readers, rate.NewLimiter(rate.Limit(c.ReadRate), 1), c.Influencers, first)
	}()
	// Wait until the last measured minute is complete, or one minute past its end.
	deadline := last.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if meter.complete(last) {
			break
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(time.Second):
		}
	}
	stopReaders()
	reads := <-readsDone
	if err := meter.report(e, first, last, c.Influencers); err != nil {
		return err
	}
	reads.report(e)
	return nil
}

type readStats struct {
	influencer, stats []time.Duration
	errors            int
}

// readLoad runs readers that alternate GET /api/v1/influencers/{random pk}
// (9 in 10) and GET /api/v1/stats from the first measured minute until ctx
// ends, and records each request's latency.
func readLoad(ctx context.Context, base string, readers int, limit *rate.Limiter, n int, from time.Time) readStats {
	var (
		mu  sync.Mutex
		out readStats
		wg  sync.WaitGroup
	)
	if readers <= 0 {
		return out
	}
	select {
	case <-ctx.Done():
		return out
	case <-time.After(time.Until(from)):
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: readers}}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 42))
			for i := 0; limit.Wait(ctx) == nil; i++ {
				url, isStats := base+"/api/v1/stats", i%10 == 9
				if !isStats {
					url = fmt.Sprintf("%s/api/v1/influencers/%d", base, 1_000_000+rng.IntN(n))
				}
				start := time.Now()
				resp, err := client.Get(url)
				d := time.Since(start)
				ok := err == nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound)
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				switch {
				case !ok:
					if ctx.Err() == nil {
						out.errors++
					}
				case isStats:
					out.stats = append(out.stats, d)
				default:
					out.influencer = append(out.influencer, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func (r readStats) report(e env) {
	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	if len(r.influencer)+len(r.stats) == 0 {
		return
	}
	fmt.Fprintf(e.stdout, "reads while ingesting: GET /api/v1/influencers/{pk} n=%d p50 %s p99 %s; GET /api/v1/stats n=%d p50 %s p99 %s; errors %d\n",
		len(r.influencer), pct(r.influencer, 0.5).Round(10*time.Microsecond), pct(r.influencer, 0.99).Round(10*time.Microsecond),
		len(r.stats), pct(r.stats, 0.5).Round(10*time.Microsecond), pct(r.stats, 0.99).Round(10*time.Microsecond), r.errors)
}

func storeName(cfg config.Config) string {
	if cfg.DatabaseURL == "" {
		return "memory"
	}
	return "postgres"
}

type minuteStat struct {
	inserted, missed int
	completed        time.Time
	lags             []time.Duration // per batch: commit time - end of minute
	weights          []int
}

// benchMeter wraps the store and records when each minute's samples commit.
type benchMeter struct {
	store.Store
	want    int
	mu      sync.Mutex
	minutes map[int64]*minuteStat // by unix minute (time.Time keys compare locations)
}

func (m *benchMeter) Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
	res, err := m.Store.Record(ctx, b)
	if err != nil {
		return res, err
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.minutes[b.Minute.Unix()]
	if st == nil {
		st = &minuteStat{}
		m.minutes[b.Minute.Unix()] = st
	}
	st.inserted += res.Inserted
	st.missed += res.Missed
	if res.Inserted > 0 {
		st.lags = append(st.lags, now.Sub(b.Minute.Add(time.Minute)))
		st.weights = append(st.weights, res.Inserted)
	}
	if st.completed.IsZero() && st.inserted+st.missed >= m.want {
		st.completed = now
	}
	return res, nil
}

func (m *benchMeter) complete(minute time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.minutes[minute.Unix()]
	return st != nil && !st.completed.IsZero()
}

func (m *benchMeter) report(e env, first, last time.Time, n int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tstored\tmissed\tnot stored\tall stored at (s after minute end)\t")
	var stored, missed int
	type lw struct {
		lag time.Duration
		w   int
	}
	var all []lw
	for mi := first; !mi.After(last); mi = mi.Add(time.Minute) {
		st := m.minutes[mi.Unix()]
		if st == nil {
			st = &minuteStat{}
		}
		done := "never"
		if !st.completed.IsZero() {
			done = fmt.Sprintf("%+.1f", st.completed.Sub(mi.Add(time.Minute)).Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", mi.Format("15:04"), st.inserted, st.missed, n-st.inserted-st.missed, done)
		stored += st.inserted
		missed += st.missed
		for i := range st.lags {
			all = append(all, lw{st.lags[i], st.weights[i]})
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b lw) int { return int(a.lag - b.lag) })
	q := func(p float64) time.Duration {
		total := 0
		for _, x := range all {
			total += x.w
		}
		target, acc := int(p*float64(total)), 0
		for _, x := range all {
			acc += x.w
			if acc >= target {
				return x.lag
			}
		}
		return 0
	}
	minutes := int(last.Sub(first)/time.Minute) + 1
	expected := n * minutes
	fmt.Fprintf(e.stdout, "sustained %.0f samples/s stored (%d of %d expected, %.3f%%), %d missed\n",
		float64(stored)/float64(minutes*60), stored, expected, 100*float64(stored)/float64(expected), missed)
	fmt.Fprintf(e.stdout, "freshness (sample commit time minus end of its minute): p50 %+.1fs, p99 %+.1fs\n", q(0.50).Seconds(), q(0.99).Seconds())
	return nil
}
