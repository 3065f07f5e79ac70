package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store/postgres"
)

// SimulateCmd is 'mockstagram simulate'. Its variables are
// MOCKSTAGRAM_SIMULATOR_*: MOCKSTAGRAM_SIMULATOR_MODE is also the built-in
// simulator's mode (run --simulator-mode), the same setting.
type SimulateCmd struct {
	Addr                 string        `env:"MOCKSTAGRAM_SIMULATOR_ADDR" default:":3000" help:"Listen address."`
	Mode                 string        `env:"MOCKSTAGRAM_SIMULATOR_MODE" default:"random-walk" enum:"random-walk,deterministic" help:"random-walk (like the real server) or deterministic (counts are a pure function of pk and minute)."`
	Range                string        `env:"MOCKSTAGRAM_SIMULATOR_RANGE" default:"1000000-1999999" help:"Known pks (FROM-TO); others answer InfluencerNotFoundError."`
	Seed                 int64         `env:"MOCKSTAGRAM_SIMULATOR_SEED" default:"1" help:"Random seed."`
	ErrorRate            float64       `env:"MOCKSTAGRAM_SIMULATOR_ERROR_RATE" help:"Fraction of GETs answered 5xx."`
	RateLimitRate        float64       `env:"MOCKSTAGRAM_SIMULATOR_RATE_LIMIT_RATE" name:"rate-limit-rate" help:"Fraction of GETs answered 429 with Retry-After."`
	RetryAfter           time.Duration `env:"MOCKSTAGRAM_SIMULATOR_RETRY_AFTER" default:"1s" help:"Retry-After of 429 answers."`
	Latency              time.Duration `env:"MOCKSTAGRAM_SIMULATOR_LATENCY" help:"Latency added to every GET."`
	LatencyJitter        time.Duration `env:"MOCKSTAGRAM_SIMULATOR_LATENCY_JITTER" help:"Plus a uniform random latency below this."`
	SpikeRate            float64       `env:"MOCKSTAGRAM_SIMULATOR_SPIKE_RATE" help:"Fraction of GETs with a latency spike."`
	SpikeLatency         time.Duration `env:"MOCKSTAGRAM_SIMULATOR_SPIKE_LATENCY" help:"Latency of a spike."`
	TimeoutRate          float64       `env:"MOCKSTAGRAM_SIMULATOR_TIMEOUT_RATE" help:"Fraction of GETs that never answer."`
	MalformedRate        float64       `env:"MOCKSTAGRAM_SIMULATOR_MALFORMED_RATE" help:"Fraction of GETs answered with a malformed body."`
	OversizeRate         float64       `env:"MOCKSTAGRAM_SIMULATOR_OVERSIZE_RATE" help:"Fraction of GETs answered with an oversized body."`
	HugeHeaderRate       float64       `env:"MOCKSTAGRAM_SIMULATOR_HUGE_HEADER_RATE" help:"Fraction of GETs answered with a response header of more than 9 MiB (hostile server)."`
	AbsurdRetryAfterRate float64       `env:"MOCKSTAGRAM_SIMULATOR_ABSURD_RETRY_AFTER_RATE" name:"absurd-retry-after-rate" help:"Fraction of GETs answered 429 with Retry-After: 99999999999999999 (hostile server)."`
	UnknownRate          float64       `env:"MOCKSTAGRAM_SIMULATOR_UNKNOWN_RATE" help:"Fraction of known pks answered as not found."`
	MaxInFlight          int           `env:"MOCKSTAGRAM_SIMULATOR_MAX_IN_FLIGHT" help:"Requests served at once (0 = unlimited); the rest queue."`
	Capacity             float64       `env:"MOCKSTAGRAM_SIMULATOR_CAPACITY" help:"Requests served per second, one at a time in arrival order, like the real single-process server (0 = unlimited); the rest queue."`
}

// Run serves the simulator until interrupted.
func (c SimulateCmd) Run(e env) error {
	r, err := influencer.ParseRange(c.Range)
	if err != nil {
		return usageError{err}
	}
	sim, err := simulator.New(simulator.Config{
		Mode: simulator.Mode(c.Mode), Range: r, Seed: c.Seed,
		ErrorRate: c.ErrorRate, RateLimitRate: c.RateLimitRate, RetryAfter: c.RetryAfter,
		Latency: c.Latency, LatencyJitter: c.LatencyJitter, SpikeRate: c.SpikeRate, SpikeLatency: c.SpikeLatency,
		TimeoutRate: c.TimeoutRate, MalformedRate: c.MalformedRate, OversizeRate: c.OversizeRate,
		UnknownRate: c.UnknownRate, MaxInFlight: c.MaxInFlight, Capacity: c.Capacity,
		HugeHeaderRate: c.HugeHeaderRate, AbsurdRetryAfterRate: c.AbsurdRetryAfterRate,
	}, clockwork.NewRealClock())
	if err != nil {
		return usageError{err}
	}
	// Requests hanging on an injected timeout end when the server stops.
	baseCtx, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := simulator.NewHTTPServer(sim, &http.Server{Addr: c.Addr, Handler: sim, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return baseCtx }})
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(e.stdout, "Mockstagram simulator (%s) serving pks %s on %s\n", c.Mode, r, c.Addr)
	select {
	case err := <-errc:
		return err
	case <-e.ctx.Done():
	}
	cancelBase()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// MigrateCmd is 'mockstagram migrate'.
type MigrateCmd struct {
	DatabaseURL string `name:"database-url" help:"PostgreSQL URL (postgres://...) of the database to migrate."`
	LogLevel    string `name:"log-level" default:"info" help:"debug, info, warn or error."`
	LogFormat   string `name:"log-format" default:"auto" help:"auto (text on a terminal, else json), json or text."`
}

func (c MigrateCmd) config() config.Config {
	cfg := config.Default()
	cfg.DatabaseURL, cfg.LogLevel, cfg.LogFormat = c.DatabaseURL, c.LogLevel, c.LogFormat
	return cfg
}

// Validate checks the settings as config.Config does.
func (c MigrateCmd) Validate() error { return c.config().Validate() }

// Run applies the migrations.
func (c MigrateCmd) Run(e env) error {
	cfg := c.config()
	if cfg.DatabaseURL == "" {
		return usageError{errors.New("migrate needs --database-url (MOCKSTAGRAM_DATABASE_URL)")}
	}
	if err := postgres.Migrate(e.ctx, cfg.DatabaseURL, app.NewLogger(cfg)); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "migrations applied")
	return nil
}

// RegistryCmd is 'mockstagram registry add|remove|list'.
type RegistryCmd struct {
	Add    RegistryChange `cmd:"" help:"Track influencers."`
	Remove RegistryChange `cmd:"" help:"Stop tracking influencers."`
	List   RegistryList   `cmd:"" help:"List tracked influencers."`
}

// storeFlags are the settings of the tools that only open the store.
type storeFlags struct {
	DatabaseURL string        `name:"database-url" help:"PostgreSQL URL (postgres://...) of the pipeline's database."`
	Retention   time.Duration `name:"retention" default:"168h" help:"How long minute points are kept (opening the store drops older whole days)."`
}

func (f storeFlags) config() config.Config {
	cfg := config.Default()
	cfg.DatabaseURL, cfg.Retention = f.DatabaseURL, f.Retention
	return cfg
}

// Validate checks the settings as config.Config does.
func (f storeFlags) Validate() error { return f.config().Validate() }

// RegistryChange selects pks by --range and/or --pk. They have no
// environment variables: a change names its pks on the command line.
type RegistryChange struct {
	Range string  `env:"-" help:"Inclusive pk range FROM-TO."`
	PK    []int64 `env:"-" name:"pk" help:"A pk (repeatable)."`
	storeFlags
}

// Run adds or removes pks, depending on the command; it goes through the
// same registry.Editor as the admin API. A change of more than one batch
// (registry.Batch pks) reports its progress on stderr at each whole percent.
func (c RegistryChange) Run(e env, kctx *kong.Context) error {
	cfg := c.config()
	change := registry.Change{Range: c.Range, PKs: c.PK}
	size, err := change.Size()
	if err != nil {
		return usageError{err}
	}
	s, closeStore, err := openStore(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	op, verb := registry.OpAdd, "added"
	if kctx.Command() == "registry remove" {
		op, verb = registry.OpRemove, "removed"
	}
	var progress func(registry.Progress)
	if size > registry.Batch {
		progress = progressPrinter(e.stderr, kctx.Command())
	}
	n, err := registry.New(s).Apply(e.ctx, op, change, progress)
	if err != nil {
		return err
	}
	st, err := s.Stats(e.ctx, time.Now())
	if err != nil {
		return fmt.Errorf("%s %d, then: %w", verb, n, err)
	}
	fmt.Fprintln(e.stdout, changeReport(verb, n, st.Tracked))
	return nil
}

// changeReport is the line a registry change prints: "added 10, 1010
// influencers now tracked".
func changeReport(verb string, changed int, tracked int64) string {
	noun := "influencers"
	if tracked == 1 {
		noun = "influencer"
	}
	return fmt.Sprintf("%s %d, %d %s now tracked", verb, changed, tracked, noun)
}

// progressPrinter prints a change's progress to w when it reaches a new
// whole percent.
func progressPrinter(w io.Writer, command string) func(registry.Progress) {
	last := int64(-1)
	return func(p registry.Progress) {
		pct := 100 * p.Done / p.Total
		if pct == last {
			return
		}
		last = pct
		fmt.Fprintf(w, "%s: %d/%d pks (%d%%), %d changed\n", command, p.Done, p.Total, pct, p.Changed)
	}
}

// RegistryList is 'mockstagram registry list'.
type RegistryList struct {
	After int64 `env:"-" help:"List pks greater than this."`
	Limit int   `env:"-" default:"100" help:"At most this many rows."`
	storeFlags
}

// Run prints registry rows.
func (c RegistryList) Run(e env) error {
	cfg := c.config()
	if c.Limit < 1 || c.Limit > 1_000_000 {
		return usageError{errors.New("--limit must be in [1, 1000000]")}
	}
	s, closeStore, err := openStore(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	rows, err := s.Tracked(e.ctx, c.After, c.Limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PK\tUSERNAME\tACTIVE\tUPDATED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.PK, r.Username, strconv.FormatBool(r.Active), r.UpdatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func openStore(ctx context.Context, cfg config.Config) (*postgres.Store, func(), error) {
	if cfg.DatabaseURL == "" {
		return nil, nil, usageError{errors.New("registry commands need --database-url (MOCKSTAGRAM_DATABASE_URL): the in-memory store lives only inside 'run'")}
	}
	// The configured retention: opening the store prunes the timeline.
	s, err := postgres.New(ctx, cfg.DatabaseURL, slog.New(slog.DiscardHandler), clockwork.NewRealClock(),
		postgres.WithRetention(cfg.Retention))
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}
