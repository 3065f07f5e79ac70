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

// DefaultRetention is how long minute points are kept by default.
const DefaultRetention = 7 * 24 * time.Hour

// Partitions kept ahead: Maintain ensures yesterday through today+partitionDaysAhead.
const partitionDaysAhead = 2

// Store is the Postgres store. It is safe for concurrent use.
type Store struct {
	pool               *pgxpool.Pool
	logger             *slog.Logger
	clock              clockwork.Clock
	leaseCheckInterval time.Duration
	stale              staleSessions // sessions of leases lost without unlocking (lead.go)
	retention          time.Duration
	tracerProvider     trace.TracerProvider
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

// WithTracerProvider makes every query run under a traced context (the
// recorder's handler span) a child span of it (otelpgx).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Store) { s.tracerProvider = tp }
}

// New connects to dsn (a pgx/pgxpool connection string; pool_* parameters
// are honoured), applies pending migrations and creates the timeline
// partitions around the clock's today.
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
		logger:             logger,
		clock:              clock,
		leaseCheckInterval: DefaultLeaseCheckInterval,
		retention:          DefaultRetention,
	}
	for _, o := range opts {
		o(s)
	}
	if s.tracerProvider != nil {
		pcfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(s.tracerProvider),
			otelpgx.WithDisableAcquireTracer())
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	pool := s.pool
	if err := s.initWatermark(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.Maintain(ctx); err != nil {
		pool.Close()
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

// Close closes the pool. Held leases keep their own connections until
// released.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the connection pool (for the Postgres broker on the same
// database).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

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
// per-minute progress counters and old missed entries are pruned too.
// It is cheap when there is nothing to do and safe to call from many
// processes at once; call it hourly.
func (s *Store) Maintain(ctx context.Context) error {
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
	return s.prune(ctx, now, s.retention, !byPolicy)
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

// pruneSQL deletes what Prune deletes row by row: missed entries before $1
// (index range on minute; a row holds a group of a shard-minute's misses,
// so there are few), progress rows before $2, and registry_history
// rows before $2 except the newest of them (the tracked count in effect
// then).
const pruneSQL = `
WITH m AS (
    DELETE FROM missed_batches WHERE minute < $1 RETURNING 1
), p AS (
    DELETE FROM minute_progress WHERE minute < $2 RETURNING 1
), h AS (
    DELETE FROM registry_history WHERE at < $2
      AND (at, version) < (SELECT at, version FROM registry_history WHERE at < $2
                           ORDER BY at DESC, version DESC LIMIT 1)
    RETURNING 1
)
SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM p)`

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
	var missed, progress int64
	if err := s.pool.QueryRow(ctx, pruneSQL, cutoff, now.Add(-store.ProgressRetention)).Scan(&missed, &progress); err != nil {
		return fmt.Errorf("prune before %s: %w", cutoff.Format(time.DateOnly), err)
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
