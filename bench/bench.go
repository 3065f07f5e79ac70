// Package bench is the harness of 'mockstagram bench': it runs the whole
// pipeline in one process (app.Start) on N influencers against the built-in
// deterministic simulator for whole minutes of wall time, counts what each
// commit stores per minute (Meter), loads the API with reads meanwhile
// (simulator/loadgen), and reports throughput, freshness and read
// latencies (Report, as text or JSON).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/influencer"
)

// MaxInfluencers bounds a run's registry.
const MaxInfluencers = 5_000_000

// FirstPK is the first influencer's pk; a run tracks FirstPK.. FirstPK+N-1.
const FirstPK = 1_000_000

// StartTimeout bounds the start of the pipeline (bootstrapping a large
// registry included).
const StartTimeout = 5 * time.Minute

// Config configures a run.
type Config struct {
	Influencers int     // pks FirstPK..
	Minutes     int     // whole minutes measured (the partial first minute is not)
	Readers     int     // concurrent API readers during the measured minutes; 0 = none
	ReadRate    float64 // read requests per second, all readers together
	CPUProfile  string  // write a CPU profile of the measured minutes here; "" = none
}

// Validate reports why the run cannot be made, or nil.
func (c Config) Validate() error {
	if c.Influencers < 1 || c.Influencers > MaxInfluencers || c.Minutes < 1 {
		return fmt.Errorf("want 1 <= --influencers <= %d and --minutes >= 1", MaxInfluencers)
	}
	if c.Readers < 0 || c.ReadRate < 0 {
		return errors.New("want --readers >= 0 and --read-rate >= 0")
	}
	return nil
}

// pks are the influencers of the run.
func (c Config) pks() influencer.Range {
	return influencer.Range{From: FirstPK, To: FirstPK + int64(c.Influencers) - 1}
}

// pipeline is cfg as the benchmark runs it: the built-in deterministic
// simulator, a registry of the run's pks, an HTTP port of its own unless
// one is set, and warnings only unless another log level is set.
func (c Config) pipeline(cfg config.Config) config.Config {
	cfg.APIURL = ""
	cfg.SimulatorMode = config.SimulatorDeterministic
	cfg.RegistryBootstrap = c.pks().String()
	if cfg.HTTPAddr == config.Default().HTTPAddr {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.LogLevel == "info" {
		cfg.LogLevel = "warn"
	}
	return cfg
}

// Run runs the benchmark on the pipeline configured by cfg and writes the
// report to out. It measures the whole minutes after the start and waits
// for the last of them to be complete (every influencer stored or missed),
// or two minutes past its start at most.
func Run(ctx context.Context, cfg config.Config, c Config, out io.Writer) error {
	if err := c.Validate(); err != nil {
		return err
	}
	cfg = c.pipeline(cfg)
	meter := NewMeter(c.Influencers, clockwork.NewRealClock())
	startCtx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	started := time.Now()
	p, err := app.Start(startCtx, cfg, app.AllRoles(), app.WrapStore(meter.Wrap), app.Quiet())
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		_ = p.Stop(stopCtx)
	}()
	first := started.Truncate(time.Minute).Add(time.Minute)
	last := first.Add(time.Duration(c.Minutes-1) * time.Minute)
	fmt.Fprintf(out, "bench: %d influencers, %d shards, store=%s; measuring minutes %s..%s\n",
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
	// Wait until the last measured minute is complete, or one minute past its end.
	deadline := last.Add(2 * time.Minute)
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	readsDone := make(chan *Reads, 1)
	go func() {
		readsDone <- readLoad(readCtx, "http://"+p.HTTPAddr, c.Readers, c.ReadRate, c.pks(), first, deadline)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for !meter.Complete(last) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	stopReaders()
	rep := meter.Report(first, last)
	rep.Reads = <-readsDone
	return rep.WriteText(out)
}

func storeName(cfg config.Config) string {
	if cfg.DatabaseURL == "" {
		return "memory"
	}
	return "postgres"
}
