package cli

import (
	"github.com/mockstagram/pipeline/bench"
	"github.com/mockstagram/pipeline/config"
)

// BenchCmd is 'mockstagram bench': the whole pipeline in one process on N
// influencers against the built-in deterministic simulator, for several
// whole minutes of wall time (package bench).
type BenchCmd struct {
	Influencers int     `default:"100000" help:"Number of influencers (pks 1000000..)."`
	Minutes     int     `default:"3" help:"Whole minutes to measure (the partial first minute is not counted)."`
	Readers     int     `default:"4" help:"Concurrent API readers during the measured minutes (GET /api/v1/influencers/{pk} and /api/v1/stats); 0 = none."`
	ReadRate    float64 `default:"200" help:"Total read requests per second (10,000 viewers an hour is a few per second)."`
	CPUProfile  string  `name:"cpuprofile" env:"-" help:"Write a CPU profile of the measured minutes to this file (go tool pprof)."`
}

// Run runs the benchmark and prints per-minute and overall figures.
func (c BenchCmd) Run(e env, cfg config.Config) error {
	bc := bench.Config{Influencers: c.Influencers, Minutes: c.Minutes, Readers: c.Readers, ReadRate: c.ReadRate, CPUProfile: c.CPUProfile}
	if err := bc.Validate(); err != nil {
		return usageError{err}
	}
	return bench.Run(e.ctx, cfg, bc, e.stdout)
}
