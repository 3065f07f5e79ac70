package test

// Helpers of the multi-process tests (process_test.go): the real mockstagram
// binary, one process per stage, talking through a real broker and one
// PostgreSQL database, against 'mockstagram simulate --mode deterministic'.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds ./cmd/mockstagram once per test binary run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mockstagram-processtest-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mockstagram")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binPath, "./cmd/mockstagram")
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one running mockstagram process.
type proc struct {
	name     string
	httpAddr string // --http-addr of stages; "" for others
	cmd      *exec.Cmd
	logs     *syncBuffer
	done     chan struct{}
	exitErr  error
	exitedAt time.Time
}

// startProc starts the binary with args and env (added to a clean
// MOCKSTAGRAM_-free environment). The process is bounded by ctx and killed
// when the test ends; its output is printed if the test failed.
func startProc(t *testing.T, ctx context.Context, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, binary(t), args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	p.cmd.WaitDelay = 5 * time.Second
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() {
		p.exitErr = p.cmd.Wait()
		p.exitedAt = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() || testing.Verbose() && os.Getenv("PROCESS_TEST_LOGS") != "" {
			t.Logf("---- %s (%s) output (last 60 lines):\n%s", p.name, strings.Join(args, " "), tail(p.logs.String(), 60))
		}
	})
	return p
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOCKSTAGRAM_") {
			out = append(out, kv)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM and waits at most limit for the exit; it returns
// the exit code (-1 when killed or still running) and how long it took.
func (p *proc) terminate(limit time.Duration) (code int, took time.Duration) {
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		return -1, time.Since(start)
	}
	took = p.exitedAt.Sub(start)
	if p.exitErr == nil {
		return 0, took
	}
	var ee *exec.ExitError
	if errors.As(p.exitErr, &ee) {
		return ee.ExitCode(), took
	}
	return -1, took
}

// waitReady polls the stage's /readyz until it answers 200.
func (p *proc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, func() bool {
		if p.exited() {
			t.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.exitErr, tail(p.logs.String(), 40))
		}
		return httpOK("http://" + p.httpAddr + "/readyz")
	}, "%s ready on %s", p.name, p.httpAddr)
}

func httpOK(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// metric is the sum of every series of the named metric (a full series
// name such as mockstagram_fetch_duration_seconds_count) on the stage's
// /metrics; -1 when it cannot be read.
func (p *proc) metric(name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// Metric names the tests read.
const (
	metricFetches   = "mockstagram_fetch_duration_seconds_count"
	metricPublished = "mockstagram_scheduler_tasks_published_total"
	metricStored    = "mockstagram_samples_stored_total"
)

// clusterOpts configures a multi-process pipeline.
type clusterOpts struct {
	broker       string
	pks          int
	shards       int
	latency      time.Duration // added by the simulator to every GET
	concurrency  int           // --fetch-concurrency
	shutdownWait time.Duration // --shutdown-timeout
}

// cluster is the shared infrastructure of one test: database, broker,
// simulator, and the stage processes started on it.
type cluster struct {
	t      *testing.T
	ctx    context.Context
	opts   clusterOpts
	dbURL  string
	env    []string
	first  int64
	last   int64
	kafka  []string
	counts map[string]int
}

// newCluster creates a fresh database (migrated, registry of opts.pks pks),
// the broker (for kafka: 'mockstagram kafka-dev' on a random port, or an
// in-process kfake when the binary has no kafka-dev) and the deterministic
// simulator. ctx bounds every process.
func newCluster(t *testing.T, ctx context.Context, opts clusterOpts) *cluster {
	t.Helper()
	if opts.shards == 0 {
		opts.shards = 16
	}
	if opts.concurrency == 0 {
		opts.concurrency = 64
	}
	if opts.shutdownWait == 0 {
		opts.shutdownWait = 10 * time.Second
	}
	c := &cluster{t: t, ctx: ctx, opts: opts, first: firstPK, last: firstPK + int64(opts.pks) - 1, counts: map[string]int{}}
	c.dbURL = pgtest.NewDatabase(t)

	apiAddr := freeAddr(t)
	sim := startProc(t, ctx, "simulator", nil, "simulate", "--mode", "deterministic", "--addr", apiAddr,
		"--range", fmt.Sprintf("%d-%d", c.first, c.last), "--latency", opts.latency.String())

	c.env = []string{
		"MOCKSTAGRAM_DATABASE_URL=" + c.dbURL,
		"MOCKSTAGRAM_BROKER=" + opts.broker,
		"MOCKSTAGRAM_API_URL=http://" + apiAddr,
		"MOCKSTAGRAM_SHARDS=" + strconv.Itoa(opts.shards),
		"MOCKSTAGRAM_SPREAD_WINDOW=5s",
		"MOCKSTAGRAM_REGISTRY_BOOTSTRAP=",
		"MOCKSTAGRAM_FETCH_CONCURRENCY=" + strconv.Itoa(opts.concurrency),
		"MOCKSTAGRAM_SHUTDOWN_TIMEOUT=" + opts.shutdownWait.String(),
		"MOCKSTAGRAM_POSTGRES_POLL_INTERVAL=100ms",
		"MOCKSTAGRAM_LOG_FORMAT=text",
		"MOCKSTAGRAM_LOG_LEVEL=info",
	}
	if opts.broker == config.BrokerKafka {
		c.kafka = c.startKafka()
		c.env = append(c.env, "MOCKSTAGRAM_KAFKA_BROKERS="+strings.Join(c.kafka, ","))
	}

	// Migrate and fill the registry once, before any stage starts, so stages
	// do not race on the schema.
	c.runTool("migrate")
	c.runTool("registry", "add", "--range", fmt.Sprintf("%d-%d", c.first, c.last))
	waitFor(t, 20*time.Second, func() bool {
		return httpOK("http://" + apiAddr + "/api/v1/influencers/" + strconv.FormatInt(c.first, 10))
	},
		"simulator up")
	_ = sim
	return c
}

// startKafka starts 'mockstagram kafka-dev --addr 127.0.0.1:PORT' and waits
// until it accepts connections.
func (c *cluster) startKafka() []string {
	t := c.t
	addr := freeAddr(t)
	startProc(t, c.ctx, "kafka-dev", nil, "kafka-dev", "--addr", addr)
	waitFor(t, 20*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}, "kafka-dev on %s", addr)
	return []string{addr}
}

// runTool runs a short command (migrate, registry) to completion.
func (c *cluster) runTool(args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(c.t), args...)
	cmd.Env = append(cleanEnv(), c.env...)
	out, err := cmd.CombinedOutput()
	require.NoError(c.t, err, "mockstagram %s:\n%s", strings.Join(args, " "), out)
}

// stage starts one stage process (scheduler, fetcher, recorder, api) on a
// fresh loopback port, and waits until it is ready.
func (c *cluster) stage(stage string) *proc {
	c.t.Helper()
	p := c.stageNoWait(stage)
	p.waitReady(c.t, 90*time.Second)
	return p
}

func (c *cluster) stageNoWait(stage string) *proc {
	c.t.Helper()
	c.counts[stage]++
	addr := freeAddr(c.t)
	p := startProc(c.t, c.ctx, fmt.Sprintf("%s-%d", stage, c.counts[stage]), c.env, stage, "--http-addr", addr)
	p.httpAddr = addr
	return p
}

func (c *cluster) conn() *pgx.Conn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dbURL)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// storedIn is count(*) of samples in minute m.
func (c *cluster) storedIn(conn *pgx.Conn, m time.Time) int64 {
	c.t.Helper()
	var n int64
	require.NoError(c.t, conn.QueryRow(c.ctx, `SELECT count(*) FROM samples WHERE minute = $1`, m).Scan(&n))
	return n
}

// missedIn is count(*) of missed entries of minute m that have no sample.
func (c *cluster) missedIn(conn *pgx.Conn, m time.Time) int64 {
	c.t.Helper()
	var n int64
	require.NoError(c.t, conn.QueryRow(c.ctx,
		`SELECT count(*) FROM missed x WHERE minute = $1 AND NOT EXISTS (SELECT 1 FROM samples s WHERE s.pk = x.pk AND s.minute = x.minute)`, m).Scan(&n))
	return n
}

// waitComplete polls until every pk of minute m is stored (all: true) or
// stored or reported missed (all: false), before the deadline.
func (c *cluster) waitComplete(conn *pgx.Conn, m time.Time, all bool, deadline time.Time) {
	c.t.Helper()
	want := int64(c.opts.pks)
	for {
		stored, missed := c.storedIn(conn, m), c.missedIn(conn, m)
		if stored == want || !all && stored+missed >= want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("minute %s not complete by %s: stored %d, missed %d of %d (all stored required: %v)",
				m.Format(time.TimeOnly), deadline.Format(time.TimeOnly), stored, missed, want, all)
		}
		<-time.After(250 * time.Millisecond) // polling interval
	}
}

// checkInvariants checks the whole database: every stored sample has exactly
// the simulator's values, no (pk, minute) is stored twice, every pk of each
// minute in full is stored, every pk of each minute in partial is stored or
// reported missed, and each influencer's summary counts each stored minute
// exactly once (samples, follower_sum, last minute and values), and the
// per-minute progress counters agree with the samples.
func (c *cluster) checkInvariants(conn *pgx.Conn, full, partial []time.Time) {
	t := c.t
	t.Helper()
	ctx := c.ctx

	// Values and uniqueness.
	rows, err := conn.Query(ctx, `SELECT pk, minute, follower_count, following_count FROM samples`)
	require.NoError(t, err)
	type key struct {
		pk int64
		m  time.Time
	}
	seen := map[key]int{}
	perMinute := map[time.Time]int64{}
	byPK := map[int64][]key{}
	wrong := 0
	for rows.Next() {
		var (
			pk   int64
			m    time.Time
			f, g int64
		)
		require.NoError(t, rows.Scan(&pk, &m, &f, &g))
		m = m.UTC()
		k := key{pk, m}
		seen[k]++
		perMinute[m]++
		byPK[pk] = append(byPK[pk], k)
		wf, wg := simulator.Counts(pk, m)
		if f != wf || g != wg {
			if wrong < 5 {
				t.Errorf("pk %d minute %s: stored %d/%d, simulator served %d/%d", pk, m.Format(time.TimeOnly), f, g, wf, wg)
			}
			wrong++
		}
	}
	require.NoError(t, rows.Err())
	require.Zero(t, wrong, "samples with values other than the simulator's")
	for k, n := range seen {
		require.Equal(t, 1, n, "pk %d minute %s stored %d times", k.pk, k.m, n)
	}
	require.Positive(t, len(seen), "nothing stored")

	for _, m := range full {
		require.Equal(t, int64(c.opts.pks), perMinute[m], "minute %s: every pk stored exactly once", m.Format(time.TimeOnly))
	}
	for _, m := range partial {
		missed := c.missedIn(conn, m)
		require.Equal(t, int64(c.opts.pks), perMinute[m]+missed,
			"minute %s: every pk stored (%d) or reported missed (%d)", m.Format(time.TimeOnly), perMinute[m], missed)
	}

	// Summaries: each stored minute counted once.
	rows, err = conn.Query(ctx, `SELECT pk, samples, follower_sum, last_minute, follower_count, following_count FROM influencer_summary`)
	require.NoError(t, err)
	summaries := 0
	for rows.Next() {
		var (
			pk, samples, sum, f, g int64
			last                   time.Time
		)
		require.NoError(t, rows.Scan(&pk, &samples, &sum, &last, &f, &g))
		summaries++
		keys := byPK[pk]
		var want int64
		var newest time.Time
		for _, k := range keys {
			wf, _ := simulator.Counts(pk, k.m)
			want += wf
			if k.m.After(newest) {
				newest = k.m
			}
		}
		require.Equal(t, int64(len(keys)), samples, "pk %d: summary samples vs stored minutes", pk)
		require.Equal(t, want, sum, "pk %d: summary follower_sum vs sum of stored follower counts", pk)
		require.True(t, newest.Equal(last), "pk %d: last_minute %s, newest stored %s", pk, last, newest)
		wf, wg := simulator.Counts(pk, newest)
		require.Equal(t, [2]int64{wf, wg}, [2]int64{f, g}, "pk %d: current values are the newest minute's", pk)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(byPK), summaries, "one summary per stored pk")

	// Minute progress (the stats' completeness counters) counts each sample once.
	rows, err = conn.Query(ctx, `SELECT minute, sum(stored) FROM minute_progress GROUP BY minute`)
	require.NoError(t, err)
	for rows.Next() {
		var (
			m time.Time
			n int64
		)
		require.NoError(t, rows.Scan(&m, &n))
		require.Equal(t, perMinute[m.UTC()], n, "minute_progress.stored of %s", m.UTC().Format(time.TimeOnly))
	}
	require.NoError(t, rows.Err())
}

// firstMinute is the minute to measure from: the current one when at least
// margin of it is left (the scheduler publishes a minute's due shards at
// once when it starts), else the next one.
func firstMinute(margin time.Duration) time.Time {
	now := time.Now().UTC()
	m := now.Truncate(time.Minute)
	if m.Add(time.Minute).Sub(now) < margin {
		m = m.Add(time.Minute)
	}
	return m
}

// sleepUntil waits (bounded by ctx) until the wall clock reaches at. Used
// only to line an action up with a point of the minute, never to wait for
// a condition.
func sleepUntil(ctx context.Context, at time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(at)):
	}
}

// pollFetching waits until one of the fetchers' fetch count grows during a
// short window and returns it (the one doing work).
func pollFetching(t *testing.T, deadline time.Time, fetchers ...*proc) *proc {
	t.Helper()
	prev := make([]float64, len(fetchers))
	for i, f := range fetchers {
		prev[i] = f.metric(metricFetches)
	}
	for time.Now().Before(deadline) {
		<-time.After(50 * time.Millisecond) // sampling interval of the counter
		for i, f := range fetchers {
			v := f.metric(metricFetches)
			if prev[i] >= 0 && v > prev[i] {
				return f
			}
			prev[i] = v
		}
	}
	t.Fatalf("no fetcher did any work before %s", deadline.Format(time.TimeOnly))
	return nil
}
