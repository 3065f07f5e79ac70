// Package postgres is the PostgreSQL store (pgx/v5). The timeline is a
// TimescaleDB hypertable where the extension is available and a table
// partitioned by day otherwise; the schema comes from package migrations.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel/trace"

	"github.com/mockstagram/pipeline/migrations"
	"github.com/mockstagram/pipeline/store"
)

var _ store.Store = (*Store)(nil)

// DefaultLeaseCheckInterval is how often a held leadership lease pings its
// dedicated connection.
const DefaultLeaseCheckInterval = 5 * time.Second

// DefaultMaxConns is the pool size when the URL sets no pool_max_conns.
const DefaultMaxConns = 20

// DefaultReadConns is the size of the separate pool of the API's reads
// (see WithReadConns).
const DefaultReadConns = 4

// DefaultRetention is how long minute points are kept by default.
const DefaultRetention = 7 * 24 * time.Hour

// Partitions kept ahead: Maintain ensures yesterday through today+partitionDaysAhead.
const partitionDaysAhead = 2

// DefaultDeadLetterRetention is how long Maintain keeps dead letters by
// default.
const DefaultDeadLetterRetention = 7 * 24 * time.Hour

// DefaultMissedRetention is how long Maintain keeps missed entries by
// default (never longer than the minute points' whole days).
const DefaultMissedRetention = 7 * 24 * time.Hour

// Store is the Postgres store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// readPool serves the API's reads (Summary, Timeline, MissedSince,
	// Rank, Leaderboard, Stats) so that they never wait for a connection
	// behind the recorder's batch writes and the broker's subscriptions in
	// pool.
	readPool  *pgxpool.Pool
	readConns int32
	// writeSlots bounds the batch writes running at once (WithWriters).
	writeSlots          chan struct{}
	logger              *slog.Logger
	clock               clockwork.Clock
	leaseCheckInterval  time.Duration
	stale               staleSessions // sessions of leases lost without unlocking (lead.go)
	retention           time.Duration
	deadLetterRetention time.Duration
	missedRetention     time.Duration
	tracerProvider      trace.TracerProvider
}

// Option configures a Store.
type Option func(*Store)

// WithLeaseCheckInterval sets how often a held lease pings its connection to
// notice a lost lock (default DefaultLeaseCheckInterval).
func WithLeaseCheckInterval(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.leaseCheckInterval = d
		}
	}
}

// WithRetention sets how long minute points are kept (default
// DefaultRetention): Maintain drops the timeline's whole days that ended
// before now minus d. Rollups are kept regardless.
func WithRetention(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.retention = d
		}
	}
}

// WithReadConns sets the size of the pool of the API's reads (default
// DefaultReadConns), kept apart from the pool of writes and of the
// Postgres broker (pool_max_conns, default DefaultMaxConns).
func WithReadConns(n int32) Option {
	return func(s *Store) {
		if n > 0 {
			s.readConns = n
		}
	}
}

// DefaultWriters is how many batch writes (Record, RecordInTx) run at once
// by default (see WithWriters).
const DefaultWriters = 2

// WithWriters sets how many batch writes of this store run at once (default
// DefaultWriters); the others wait for a slot (their context bounds the
// wait). A batch write is CPU-bound on the server and updates a few shared
// counter rows (rank buckets, the batch's stripe): two writers already take
// ~50,000 samples/s on a 2-core server (BenchmarkRecordMillion, three times
// one million a minute), while more of them add no throughput but lengthen
// the server's run queue in bursts (a Kafka recorder consumes 16 partitions
// at once, the Postgres broker postgres-in-flight messages), and the API's
// reads on the same server wait behind them; on the Postgres broker a
// writer also keeps the counter rows locked until its message commits, so
// concurrent writers queue on each other's commits.
func WithWriters(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.writeSlots = make(chan struct{}, n)
		}
	}
}

// WithDeadLetterRetention sets how long Maintain keeps dead letters
// (default DefaultDeadLetterRetention), counted from their receive time.
func WithDeadLetterRetention(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.deadLetterRetention = d
		}
	}
}

// WithMissedRetention sets how long Maintain keeps missed entries (default
// DefaultMissedRetention), counted from their minute; the whole days that
// WithRetention drops take their missed entries along in any case.
func WithMissedRetention(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.missedRetention = d
		}
	}
}

// WithTracerProvider makes every query run under a traced context (the
// recorder's handler span) a child span of it (otelpgx).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Store) { s.tracerProvider = tp }
}

// New connects to dsn (a pgx/pgxpool connection string; pool_* parameters
// are honoured), applies pending migrations and runs Maintain's partition
// and timeline work (not its Expire).
func New(ctx context.Context, dsn string, logger *slog.Logger, clock clockwork.Clock, opts ...Option) (*Store, error) {
	if err := Migrate(ctx, dsn, logger); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgxpool's default (max(4, CPUs)) is too small when the Postgres
		// broker holds a connection per active subscription next to the
		// recorder's writes and the API's reads.
		pcfg.MaxConns = DefaultMaxConns
	}
	s := &Store{
		logger:              logger,
		clock:               clock,
		leaseCheckInterval:  DefaultLeaseCheckInterval,
		retention:           DefaultRetention,
		readConns:           DefaultReadConns,
		deadLetterRetention: DefaultDeadLetterRetention,
		missedRetention:     DefaultMissedRetention,
		writeSlots:          make(chan struct{}, DefaultWriters),
	}
	for _, o := range opts {
		o(s)
	}
	if s.tracerProvider != nil {
		pcfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(s.tracerProvider),
			otelpgx.WithDisableAcquireTracer())
	}
	rcfg := pcfg.Copy()
	rcfg.MaxConns = s.readConns
	rcfg.MinConns = 0 // opened on the first read: a store opened for a CLI command or a test holds no idle connection
	s.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	s.readPool, err = pgxpool.NewWithConfig(ctx, rcfg)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("connect to postgres (read pool): %w", err)
	}
	if err := s.initWatermark(ctx); err != nil {
		s.Close()
		return nil, err
	}
	// Not Expire: opening a store (say, for 'dlq list') deletes no letter
	// or miss; the processes' hourly Maintain does.
	if err := s.maintain(ctx, false); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies the schema migrations to the database at dsn with a
// connection of its own, which it closes. Concurrent callers are serialised
// by an advisory lock.
func Migrate(ctx context.Context, dsn string, logger *slog.Logger) error {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	if err := migrations.Up(ctx, db, logger); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Close closes the pools. Held leases keep their own connections until
// released.
func (s *Store) Close() {
	s.readPool.Close()
	s.pool.Close()
}

// Pool exposes the connection pool of writes (for the Postgres broker on
// the same database).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// ReadPoolStat is the statistics of the pool of the API's reads (acquire
// counts and waits).
func (s *Store) ReadPoolStat() *pgxpool.Stat { return s.readPool.Stat() }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Maintain creates the timeline partitions for yesterday through today+2
// days (UTC, from the clock), folds the hours that ended into the rollups
// (FoldRollups) and applies retention: minute points older
// than the retention window go by whole days (see Prune), or, on a
// TimescaleDB hypertable, by a retention policy it registers instead;
// per-minute progress counters are pruned too, and missed entries older
// than the missed retention (at most the retention's whole days) and dead
// letters older than the dead-letter retention are deleted in batches
// (Expire).
// It is cheap when there is nothing to do and safe to call from many
// processes at once; call it hourly.
func (s *Store) Maintain(ctx context.Context) error { return s.maintain(ctx, true) }

func (s *Store) maintain(ctx context.Context, expire bool) error {
	now := s.clock.Now()
	today := now.UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -1)
	days := 1 + 1 + partitionDaysAhead
	var created int
	err := s.pool.QueryRow(ctx, `SELECT ensure_sample_partitions($1::date, $2::integer)`, first, days).Scan(&created)
	if err != nil {
		return fmt.Errorf("ensure partitions from %s for %d days: %w", first.Format(time.DateOnly), days, err)
	}
	if created > 0 {
		s.logger.InfoContext(ctx, "timeline partitions created",
			slog.String("from", first.Format(time.DateOnly)), slog.Int("created", created))
	}
	var byPolicy bool
	if err := s.pool.QueryRow(ctx, `SELECT ensure_sample_retention($1::interval)`, s.retention).Scan(&byPolicy); err != nil {
		return fmt.Errorf("timeline retention policy: %w", err)
	}
	if err := s.prune(ctx, now, s.retention, !byPolicy); err != nil {
		return err
	}
	if !expire {
		return nil
	}
	dlBefore, missedBefore := now.Add(-s.deadLetterRetention), now.Add(-s.missedRetention)
	expired, err := s.Expire(ctx, dlBefore, missedBefore)
	if err != nil {
		return err
	}
	if expired.DeadLetters > 0 || expired.Missed > 0 {
		s.logger.InfoContext(ctx, "retention: expired dead letters and missed entries",
			slog.Int64("dead_letters", expired.DeadLetters), slog.Time("dead_letters_before", dlBefore),
			slog.Int64("missed", expired.Missed), slog.Time("missed_before", missedBefore))
	}
	return nil
}

// Prune applies retention as of now, keeping keep of minute data: it folds
// the hours that ended into the rollups, drops the timeline's partitions
// (TimescaleDB: chunks) of the UTC days before
// store.RetentionCutoff(now, keep) whole, never row by row (never a day
// not folded yet), and deletes the
// missed entries before the same cutoff and the per-minute progress
// counters older than store.ProgressRetention. Rollups, summaries and the
// rank and average counters are kept.
func (s *Store) Prune(ctx context.Context, now time.Time, keep time.Duration) error {
	if keep <= 0 {
		return fmt.Errorf("prune: %w: keep %s is not positive", store.ErrInvalid, keep)
	}
	return s.prune(ctx, now, keep, true)
}

// pruneSQL deletes what Prune deletes row by row besides the missed
// entries (expireMissed): progress rows before $1, and registry_history
// rows before $1 except the newest of them (the tracked count in effect
// then). Both are small (a row per stripe and minute, per registry change).
const pruneSQL = `
WITH p AS (
    DELETE FROM minute_progress WHERE minute < $1 RETURNING 1
), h AS (
    DELETE FROM registry_history WHERE at < $1
      AND (at, version) < (SELECT at, version FROM registry_history WHERE at < $1
                           ORDER BY at DESC, version DESC LIMIT 1)
    RETURNING 1
)
SELECT count(*) FROM p`

func (s *Store) prune(ctx context.Context, now time.Time, keep time.Duration, dropSamples bool) error {
	cutoff := store.RetentionCutoff(now, keep)
	if err := s.foldRollups(ctx, now); err != nil {
		return err
	}
	folded, err := s.foldedBefore(ctx)
	if err != nil {
		return err
	}
	// The day of the watermark and later ones hold minutes only the
	// timeline has.
	dropCutoff := cutoff
	if day := folded.Truncate(24 * time.Hour); day.Before(dropCutoff) {
		dropCutoff = day
	}
	if dropSamples && !folded.IsZero() {
		var dropped int
		if err := s.pool.QueryRow(ctx, `SELECT drop_sample_partitions($1)`, dropCutoff).Scan(&dropped); err != nil {
			return fmt.Errorf("drop timeline before %s: %w", dropCutoff.Format(time.DateOnly), err)
		}
		if dropped > 0 {
			s.logger.InfoContext(ctx, "timeline partitions dropped",
				slog.String("before", dropCutoff.Format(time.DateOnly)), slog.Int("dropped", dropped))
		}
	}
	var progress int64
	if err := s.pool.QueryRow(ctx, pruneSQL, now.Add(-store.ProgressRetention)).Scan(&progress); err != nil {
		return fmt.Errorf("prune before %s: %w", cutoff.Format(time.DateOnly), err)
	}
	missed, err := s.expireMissed(ctx, cutoff)
	if err != nil {
		return err
	}
	if missed > 0 {
		s.logger.InfoContext(ctx, "missed entries of dropped days deleted",
			slog.String("before", cutoff.Format(time.DateOnly)), slog.Int64("missed", missed))
	}
	return nil
}

// ensureDays creates the partitions of the given UTC days.
func (s *Store) ensureDays(ctx context.Context, days []time.Time) error {
	var created int
	err := s.pool.QueryRow(ctx,
		`SELECT coalesce(sum(ensure_sample_partitions(d, 1)), 0)::integer FROM unnest($1::date[]) AS d`,
		days).Scan(&created)
	if err != nil {
		return fmt.Errorf("ensure partitions for %d days: %w", len(days), err)
	}
	if created > 0 {
		s.logger.Info("timeline partitions created on demand", slog.Int("created", created))
	}
	return nil
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// SQLSTATE codes the store reacts to.
const (
	stateNoPartition = "23514" // check_violation: "no partition of relation found for row"
	stateDeadlock    = "40P01"
	stateSerialize   = "40001"
)
