package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mockstagram/pipeline/bench"
	"github.com/mockstagram/pipeline/config"
)

// BenchCmd is 'mockstagram bench': the limits (simulator GET rate, store
// write rates), then the pipeline for whole minutes in each selected
// wiring, every process a child of this one (package bench).
type BenchCmd struct {
	Influencers   int           `env:"MOCKSTAGRAM_BENCH_INFLUENCERS" default:"1000000" help:"Number of influencers (pks 1000000..)."`
	Minutes       int           `env:"MOCKSTAGRAM_BENCH_MINUTES" default:"3" help:"Whole minutes to measure per wiring (the partial first minute is not counted)."`
	Wirings       string        `env:"MOCKSTAGRAM_BENCH_WIRINGS" default:"all" help:"Comma-separated wirings: all, or some of memory,gochannel-pg,kafka-pg,pg-pg,staged-kafka-pg and the capacity scenarios capacity-90,overload-2x."`
	Capacity      float64       `default:"4800" env:"MOCKSTAGRAM_BENCH_CAPACITY" help:"The capacity scenarios' simulator capacity, requests per second (simulate --capacity); capacity-90 tracks 0.9 × capacity × 60 influencers, overload-2x twice as many (--influencers does not apply to them)."`
	Readers       int           `env:"MOCKSTAGRAM_BENCH_READERS" default:"4" help:"Concurrent API readers during the measured minutes (GET /api/v1/influencers/{pk}, one in ten GET /api/v1/stats); 0 = none."`
	ReadRate      float64       `env:"MOCKSTAGRAM_BENCH_READ_RATE" default:"20" help:"Total read requests per second."`
	LimitDuration time.Duration `env:"MOCKSTAGRAM_BENCH_LIMIT_DURATION" default:"10s" help:"Duration of each limit measurement."`
	JSON          string        `name:"json" env:"-" help:"Also write the result as JSON to this file."`
	LogDir        string        `env:"-" help:"Keep the child processes' logs in this directory (default: a temporary one, removed unless a wiring fails)."`
	DatabaseURL   string        `name:"database-url" help:"PostgreSQL URL (postgres://...) of a database of the server the Postgres wirings create their databases on (default: bench.DefaultAdminURL)."`
}

// Validate checks --database-url as config.Config does.
func (c BenchCmd) Validate() error {
	cfg := config.Default()
	cfg.DatabaseURL = c.DatabaseURL
	return cfg.Validate()
}

// Run runs the benchmark and prints the tables. The Postgres wirings
// create their databases on --database-url (any database of the server;
// default bench.DefaultAdminURL).
func (c BenchCmd) Run(e env) error {
	wirings, err := bench.ParseWirings(c.Wirings)
	if err != nil {
		return usageError{err}
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: own binary: %w", err)
	}
	admin := c.DatabaseURL
	if admin == "" {
		admin = bench.DefaultAdminURL
	}
	bc := bench.Config{
		Influencers: c.Influencers, Minutes: c.Minutes, Wirings: wirings, Capacity: c.Capacity, AdminURL: admin,
		Readers: c.Readers, ReadRate: c.ReadRate, LimitDuration: c.LimitDuration,
		Binary: bin, Env: os.Environ(), Progress: 10 * time.Second,
	}
	if err := bc.Validate(); err != nil {
		return usageError{err}
	}
	dir, keep := c.LogDir, c.LogDir != ""
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mockstagram-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bc.WorkDir = dir
	res, runErr := bench.Run(e.ctx, bc, e.stderr)
	failed := runErr != nil
	for _, w := range res.Wirings {
		failed = failed || w.Error != ""
	}
	if failed || keep {
		fmt.Fprintf(e.stderr, "bench: child logs in %s\n", dir)
	} else {
		_ = os.RemoveAll(dir)
	}
	if len(res.Wirings) == 0 && runErr != nil {
		return runErr
	}
	scenarios := ""
	if slices.ContainsFunc(wirings, bench.Wiring.Scenario) {
		scenarios = fmt.Sprintf(" (capacity scenarios: simulator --capacity %g)", c.Capacity)
	}
	fmt.Fprintf(e.stdout, "bench: %d influencers%s, %d measured minutes per wiring, %d CPUs, %s\n",
		res.Influencers, scenarios, res.Minutes, res.Machine.CPUs, res.Machine.GoVersion)
	if err := res.WriteText(e.stdout); err != nil {
		return err
	}
	if c.JSON != "" {
		if err := writeJSON(c.JSON, res); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if failed {
		return errors.New("bench: a wiring failed (see its error above)")
	}
	return nil
}

func writeJSON(path string, res bench.Result) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// BenchNodeCmd is 'mockstagram bench-node' (hidden): a pipeline process of
// 'mockstagram bench', 'run' or one stage with a meter around its store.
// Its own flags have no variables: 'bench' passes them on its command line.
type BenchNodeCmd struct {
	Stage         string `env:"-" default:"run" enum:"run,recorder,scheduler,fetcher,api" help:"run (every stage) or one stage."`
	Influencers   int    `env:"-" required:"" help:"Registry size (a minute is complete at this many stored or missed)."`
	MeterAddr     string `env:"-" required:"" help:"Where to serve the meter (127.0.0.1:port)."`
	config.Config `embed:"" group:"pipeline"`
}

// Run runs the node until interrupted.
func (c BenchNodeCmd) Run(e env) error {
	return bench.RunNode(e.ctx, c.Config, bench.NodeConfig{Stage: c.Stage, Influencers: c.Influencers, MeterAddr: c.MeterAddr}, e.stdout)
}
