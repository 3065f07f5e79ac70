// Package bench is 'mockstagram bench': it measures the limits and then the
// pipeline, in one run. First the raw rates the pipeline is bounded by: the
// simulator's GET rate under a plain load generator (simulator/loadgen,
// the simulator in its own process) and the stores' write rate through
// their Record batch path. Then, for each selected wiring (memory; gochannel,
// Kafka or Postgres broker on the Postgres store; the staged layout on Kafka
// and Postgres), the pipeline for whole minutes of wall time on N
// influencers against the deterministic simulator in its own process: per
// minute what was stored and missed (by class) and when the minute was
// complete, freshness, read latencies under a read load, CPU per stored
// sample and peak memory of every process (from /proc), the ratio to the
// limits, and every stored value checked against the simulator.
//
// Every process of a wiring is a child of the benchmark (the same binary):
// the pipeline processes run 'bench-node' (the 'run' process or the
// recorder stage, with a Meter around their store that sees each commit)
// or a plain stage command; the simulator runs 'simulate', Kafka
// 'kafka-dev'. The readers, the sampler and the checks run in the
// benchmark's own process, so the pipeline's CPU is only the pipeline's.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/memory"
	"github.com/mockstagram/pipeline/store/postgres"
)

// MaxInfluencers bounds a run's registry.
const MaxInfluencers = 5_000_000

// FirstPK is the first influencer's pk; a run tracks FirstPK.. FirstPK+N-1.
const FirstPK = 1_000_000

// DefaultAdminURL is the PostgreSQL server the Postgres wirings create
// their databases on when no URL is given.
const DefaultAdminURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// Config configures a benchmark.
type Config struct {
	Influencers   int           // pks FirstPK..
	Minutes       int           // whole minutes measured per wiring (the partial first minute is not)
	Wirings       []Wiring      // in order
	Capacity      float64       // the capacity scenarios' simulator rate, requests per second
	AdminURL      string        // PostgreSQL server (any database) on which fresh databases are created
	Readers       int           // concurrent API readers during the measured minutes; 0 = none
	ReadRate      float64       // read requests per second, all readers together
	LimitDuration time.Duration // of each limit measurement
	Binary        string        // the mockstagram binary for the child processes
	WorkDir       string        // child logs; the caller removes it
	Env           []string      // environment of the child processes (MOCKSTAGRAM_* tuning passes on)
	Progress      time.Duration // interval of the progress lines
}

// Validate reports every problem of what the user chose, or nil.
func (c Config) Validate() error {
	var errs []error
	if c.Influencers < 1 || c.Influencers > MaxInfluencers || c.Minutes < 1 || c.Minutes > 60 {
		errs = append(errs, fmt.Errorf("want 1 <= --influencers <= %d and 1 <= --minutes <= 60", MaxInfluencers))
	}
	if len(c.Wirings) == 0 {
		errs = append(errs, errors.New("no wiring selected"))
	}
	for _, w := range c.Wirings {
		if !w.Scenario() {
			continue
		}
		if n := w.Influencers(c.Influencers, c.Capacity); !(c.Capacity > 0) || n < 1 || n > MaxInfluencers {
			errs = append(errs, fmt.Errorf("%s: --capacity %g makes %d influencers (%.0f%% of capacity × 60 s): want 1..%d",
				w.Name, c.Capacity, n, 100*w.Load, MaxInfluencers))
		}
	}
	if c.Readers < 0 || c.ReadRate < 0 {
		errs = append(errs, errors.New("want --readers >= 0 and --read-rate >= 0"))
	}
	if c.LimitDuration <= 0 || c.LimitDuration > 5*time.Minute {
		errs = append(errs, errors.New("want 0 < --limit-duration <= 5m"))
	}
	if c.needsPostgres() {
		if u, err := url.Parse(c.AdminURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			errs = append(errs, fmt.Errorf("database url %q: want postgres://user@host:port/db", c.AdminURL))
		}
	}
	return errors.Join(errs...)
}

func (c Config) needsPostgres() bool {
	return slices.ContainsFunc(c.Wirings, func(w Wiring) bool { return w.Postgres })
}

func (c Config) pks() influencer.Range {
	return influencer.Range{From: FirstPK, To: FirstPK + int64(c.Influencers) - 1}
}

// Run runs the benchmark: the limits, then every wiring in turn. Progress
// lines go to progress; a wiring that fails is reported with its error and
// the others still run. It returns an error only when no result can be made.
func Run(ctx context.Context, c Config, progress io.Writer) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	if c.Binary == "" || c.WorkDir == "" || c.Progress <= 0 {
		return Result{}, errors.New("bench: binary, work dir and progress interval are required")
	}
	host, _ := os.Hostname()
	res := Result{
		Started: time.Now().UTC(), Influencers: c.Influencers, Minutes: c.Minutes, ReadRate: c.ReadRate,
		Machine: Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Host: host},
	}
	r := runner{c: c, progress: progress}
	limits, err := r.limits(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("limits: %w", err)
	}
	res.Limits = limits
	for _, w := range c.Wirings {
		if ctx.Err() != nil {
			break
		}
		wr := r.wiring(ctx, w, limits)
		if wr.Error != "" {
			r.logf("%s: %s", w.Name, wr.Error)
		}
		res.Wirings = append(res.Wirings, wr)
	}
	relateBaselines(res.Wirings)
	return res, ctx.Err()
}

type runner struct {
	c        Config
	progress io.Writer
}

func (r runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// env is the children's environment with set applied (KEY=value each; a
// bare KEY unsets KEY).
func (r runner) env(set ...string) []string {
	return applyEnv(r.c.Env, set...)
}

func applyEnv(base []string, set ...string) []string {
	keys := map[string]bool{}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
	}
	var out []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !keys[k] {
			out = append(out, kv)
		}
	}
	for _, kv := range set {
		if strings.Contains(kv, "=") {
			out = append(out, kv)
		}
	}
	return out
}

// has reports whether the children's environment sets key.
func (r runner) has(key string) bool {
	return slices.ContainsFunc(r.c.Env, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
}

// childDefaults are settings of every child unless the environment sets them.
func (r runner) childDefaults() []string {
	var out []string
	for _, kv := range []string{"MOCKSTAGRAM_LOG_LEVEL=warn", "MOCKSTAGRAM_LOG_FORMAT=text", "MOCKSTAGRAM_SHUTDOWN_TIMEOUT=10s"} {
		if k, _, _ := strings.Cut(kv, "="); !r.has(k) {
			out = append(out, kv)
		}
	}
	return out
}

// simulatorEnv is the simulator's environment: the children's, without
// MOCKSTAGRAM_SIMULATOR_CAPACITY (simulate's --capacity), which would limit every
// wiring's simulator; the capacity comes from simulatorArgs only.
func (r runner) simulatorEnv() []string {
	return r.env(append(r.childDefaults(), "MOCKSTAGRAM_SIMULATOR_CAPACITY")...)
}

// startSimulator starts the deterministic simulator on pks; capacity > 0
// limits the requests it serves per second.
func (r runner) startSimulator(ctx context.Context, name string, pks influencer.Range, capacity float64) (*child, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	sim, err := startChild(ctx, r.c.WorkDir, name, r.c.Binary, r.simulatorEnv(), simulatorArgs(addr, pks, capacity)...)
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := waitHTTP(ctx, sim, fmt.Sprintf("%s/api/v1/influencers/%d", base, FirstPK), time.Minute); err != nil {
		sim.Stop()
		return nil, "", err
	}
	return sim, base, nil
}

// limits measures the simulator's GET rate and the stores' write rates.
func (r runner) limits(ctx context.Context) (Limits, error) {
	d := r.c.LimitDuration
	l := Limits{Duration: Dur(d)}
	sim, base, err := r.startSimulator(ctx, "limits-simulator", r.c.pks(), 0)
	if err != nil {
		return l, err
	}
	smp := newSampler(procGroup{Name: "simulator", PIDs: func(context.Context) []int { return []int{sim.PID()} }})
	before := smp.snapshot(ctx)
	r.logf("limits: simulator GET rate (loadgen, %d connections, %s)", 64, d)
	lg, err := simulatorRate(ctx, base, r.c.pks(), d)
	after := smp.snapshot(ctx)
	sim.Stop()
	if err != nil {
		return l, err
	}
	l.SimulatorGETs, l.SimulatorP50, l.SimulatorP99, l.SimulatorErrors = lg.PerSecond, Dur(lg.P50), Dur(lg.P99), lg.Errors
	if lg.Requests > 0 {
		l.SimulatorCPUPerGET = Dur((after["simulator"].CPU - before["simulator"].CPU) / time.Duration(lg.Requests))
	}

	r.logf("limits: memory store write rate (%s)", d)
	mem := memory.New(clockwork.NewRealClock())
	if _, err := mem.Track(ctx, r.c.pks().PKs()); err != nil {
		return l, err
	}
	if l.MemoryWrites, _, err = writeRate(ctx, mem, r.c.pks(), d); err != nil {
		return l, err
	}
	if !r.c.needsPostgres() {
		return l, nil
	}

	r.logf("limits: Postgres store write rate (%s, fresh database)", d)
	db, drop, err := createDB(ctx, r.c.AdminURL, "limits")
	if err != nil {
		return l, err
	}
	defer drop()
	s, err := postgres.New(ctx, db, slog.New(slog.DiscardHandler), clockwork.NewRealClock())
	if err != nil {
		return l, err
	}
	defer s.Close()
	if _, err := s.Track(ctx, r.c.pks().PKs()); err != nil {
		return l, err
	}
	// Sampled often, as the pool may open and close connections meanwhile.
	pg := newSampler(r.postgresGroup(db))
	before = pg.snapshot(ctx)
	sctx, stopSampler := context.WithCancel(ctx)
	go pg.run(sctx, 200*time.Millisecond)
	rate, written, err := writeRate(ctx, s, r.c.pks(), d)
	after = pg.snapshot(ctx)
	stopSampler()
	if err != nil {
		return l, err
	}
	l.PostgresWrites = rate
	if written > 0 {
		l.PostgresServerCPUPerSample = Dur((after[RolePostgres].CPU - before[RolePostgres].CPU) / time.Duration(written))
	}
	return l, nil
}

// postgresGroup is the PostgreSQL server as seen from db: the backends of
// db and the server's own processes (WAL writer, checkpointer, ...: they
// serve every database of the server, so other load on it counts too).
func (r runner) postgresGroup(db string) procGroup {
	name := dbName(db)
	return procGroup{Name: RolePostgres, Multi: true, PIDs: func(ctx context.Context) []int {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, r.c.AdminURL)
		if err != nil {
			return nil
		}
		defer conn.Close(context.WithoutCancel(ctx))
		rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE (datname = $1 OR datname IS NULL) AND pid <> pg_backend_pid()`, name)
		if err != nil {
			return nil
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return nil
		}
		out := make([]int, len(pids))
		for i, p := range pids {
			out[i] = int(p)
		}
		return out
	}}
}

func dbName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// createDB creates a fresh database on the server of admin and returns its
// URL and a function dropping it.
func createDB(ctx context.Context, admin, label string) (string, func(), error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("database url: %w", err)
	}
	name := fmt.Sprintf("mockstagram_bench_%s_%d", strings.ReplaceAll(label, "-", "_"), time.Now().UnixNano())
	ident := pgx.Identifier{name}.Sanitize()
	exec := func(ctx context.Context, sql string) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	db := *u
	db.Path = "/" + name
	drop := func() { _ = exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)") }
	return db.String(), drop, nil
}

// fetchMeter reads a node's meter.
func fetchMeter(ctx context.Context, url string) ([]MeterMinute, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("meter: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("meter: %s", resp.Status)
	}
	var ms []MeterMinute
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, fmt.Errorf("meter: %w", err)
	}
	return ms, nil
}
