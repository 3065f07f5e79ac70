package postgres_test

import (
	"context"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The counter tables leave room for HOT updates and are vacuumed on demand.
func TestVacuumCounters(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClock())
	ctx := context.Background()
	require.NoError(t, s.VacuumCounters(ctx))

	for table, want := range map[string]string{
		"rank_buckets": "fillfactor=10", "global_stats": "fillfactor=10", "minute_progress": "fillfactor=50",
	} {
		var opts []string
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE relname = $1`, table).Scan(&opts))
		assert.Contains(t, opts, want, table)
	}
	var vacuumed int
	require.NoError(t, s.Pool().QueryRow(ctx,
		`SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('rank_buckets', 'global_stats', 'minute_progress') AND vacuum_count > 0`).Scan(&vacuumed))
	assert.Equal(t, 3, vacuumed)
}
