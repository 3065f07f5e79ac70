// Package migrations holds the forward-only, versioned SQL schema of the
// Postgres store and applies it with goose. Several processes may call Up at
// once: a Postgres session advisory lock serialises them.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// files is the embedded schema. embed requires a package-level variable; it
// is never modified.
//
//go:embed *.sql
var files embed.FS

// Up applies every pending migration to db. It waits (up to five minutes) for
// another process that is migrating the same database to finish first.
func Up(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	return up(ctx, db, logger, 0)
}

// UpTo applies the pending migrations up to and including version, like Up
// (for tests of data migrations).
func UpTo(ctx context.Context, db *sql.DB, logger *slog.Logger, version int64) error {
	if version <= 0 {
		return fmt.Errorf("migrate up to %d: version is not positive", version)
	}
	return up(ctx, db, logger, version)
}

// up applies pending migrations up to version, or all when version is 0.
func up(ctx context.Context, db *sql.DB, logger *slog.Logger, version int64) error {
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockTimeout(1, 300), // probe every second, give up after 5 min
	)
	if err != nil {
		return fmt.Errorf("migration locker: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migration provider: %w", err)
	}
	var results []*goose.MigrationResult
	if version == 0 {
		results, err = provider.Up(ctx)
	} else {
		results, err = provider.UpTo(ctx, version)
	}
	for _, r := range results {
		if r.Error == nil {
			logger.InfoContext(ctx, "migration applied",
				slog.Int64("version", r.Source.Version),
				slog.String("file", r.Source.Path),
				slog.Duration("duration", r.Duration))
		}
	}
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}
