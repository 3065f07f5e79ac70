package migrations_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/migrations"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestForwardOnly(t *testing.T) {
	files, err := filepath.Glob("*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.Contains(t, string(b), "-- +goose Up", f)
		assert.NotContains(t, string(b), "-- +goose Down", f)
	}
}

func TestUpTwice(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	logger := slog.New(slog.DiscardHandler)

	require.NoError(t, migrations.Up(ctx, db, logger))
	require.NoError(t, migrations.Up(ctx, db, logger), "nothing pending the second time")

	var tables []string
	rows, err := db.QueryContext(ctx, `
SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'samples\_%'
ORDER BY tablename`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{
		"dead_letters", "global_stats", "goose_db_version", "influencer_summary", "influencers", "minute_progress", "missed_batches", "movers", "movers_runs",
		"rank_buckets", "registry_history", "registry_meta", "rollup_daily", "rollup_hourly", "rollup_watermark", "samples", "suspicion",
	}, tables)
	var views []string
	vrows, err := db.QueryContext(ctx, `SELECT viewname FROM pg_views WHERE schemaname = 'public' ORDER BY viewname`)
	require.NoError(t, err)
	defer vrows.Close()
	for vrows.Next() {
		var name string
		require.NoError(t, vrows.Scan(&name))
		views = append(views, name)
	}
	require.NoError(t, vrows.Err())
	assert.Equal(t, []string{"missed"}, views, "missed is a view over missed_batches")
}
