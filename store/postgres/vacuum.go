package postgres

import (
	"context"
	"fmt"
)

// vacuumCounters vacuums the small counter tables that every batch write
// updates. SKIP_LOCKED: a table another process is vacuuming is skipped.
const vacuumCounters = `VACUUM (SKIP_LOCKED) rank_buckets, global_stats, minute_progress`

// VacuumCounters vacuums the counter tables every batch write updates
// (rank_buckets, global_stats, minute_progress; together a few MB). At a
// million samples a minute they collect dead row versions far faster than
// autovacuum's defaults clean them — and not at all on a server with
// autovacuum off — and reads of ranks and stats slow down with every dead
// version they step over. Cheap to run every minute; safe in several
// processes at once.
func (s *Store) VacuumCounters(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, vacuumCounters); err != nil {
		return fmt.Errorf("vacuum counter tables: %w", err)
	}
	return nil
}
