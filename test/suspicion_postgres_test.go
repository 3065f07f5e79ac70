package test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/simulator"
)

// On the Postgres broker suspicion tasks waiting for slow is_suspicious
// answers (10 s each, on the fake clock) hold read transactions and
// connections of the suspicion subscription only: every (pk, minute) of two
// minutes is stored within its minute while checks are pending, and the
// answers are stored once the clock passes them.
func TestSuspicionSlowAnswersOnPostgres(t *testing.T) {
	cfg := testConfig(t, setup{config.BrokerPostgres, "postgres"})
	// Rounds at 12:00 and 12:03, shard s of a round at s × 11.25 s, each
	// answer 10 s after its request: round 12:00's shard 10 (12:01:52.5) and
	// shard 15 (12:02:48.75) are still waiting at 58 s of 12:01 and 12:02.
	cfg.SuspicionInterval = 3 * time.Minute
	cfg.SuspicionConcurrency = 32
	cfg.SimulatorSuspiciousDelayMin, cfg.SimulatorSuspiciousDelayMax = 10*time.Second, 10*time.Second
	p := startPipeline(t, cfg)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, cfg.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	pendingTasks := func() int {
		var n int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM watermill_queue_suspicion_tasks`).Scan(&n))
		return n
	}
	answered := func() int {
		n := 0
		for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
			s, err := p.store.Summary(ctx, pk)
			require.NoError(t, err)
			if s.Suspicion != nil {
				n++
			}
		}
		return n
	}

	p.runMinute(t, cfg, start, numPKs)
	for _, m := range []time.Time{start.Add(time.Minute), start.Add(2 * time.Minute)} {
		// runMinute returns at 58 s of m with every pk of m stored.
		p.runMinute(t, cfg, m, numPKs)
		assert.Equal(t, m.Add(58*time.Second), p.clock.Now())
		assert.Equal(t, numPKs, stored(t, p.store, m), "minute %s", m.Format(time.RFC3339))
		assert.Positive(t, pendingTasks(), "suspicion tasks in flight at %s", p.clock.Now().Format(time.RFC3339))
	}
	require.Less(t, answered(), numPKs, "shard 15 is not answered at 12:02:58")

	// The clock moves on, a second per 20 ms, until every pk is answered:
	// the pks without data at their shard's time in round 12:00 (the first
	// shards) in round 12:03.
	deadline := time.Now().Add(40 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for step := 0; step%10 != 0 || answered() < numPKs; step++ {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for every pk answered: %d of %d (clock %s)", answered(), numPKs, p.clock.Now())
		}
		if p.clock.Now().Before(start.Add(7 * time.Minute)) {
			p.clock.Advance(time.Second)
		}
		<-tick.C
	}
	for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
		s, err := p.store.Summary(ctx, pk)
		require.NoError(t, err)
		require.NotNil(t, s.Suspicion, "pk %d", pk)
		assert.Equal(t, simulator.Suspicious(pk), s.Suspicion.Suspicious, "pk %d", pk)
	}
}
