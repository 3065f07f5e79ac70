package bench

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

// trackedStore is a Postgres store on a database of its own (its URL
// returned too) that tracks pks.
func trackedStore(t *testing.T, pks influencer.Range) (*postgres.Store, string) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	s, err := postgres.New(ctx, db, slog.New(slog.DiscardHandler), clockwork.NewRealClock())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	_, err = s.Track(ctx, pks.PKs())
	require.NoError(t, err)
	return s, db
}

func TestCheckDB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pks := influencer.Range{From: FirstPK, To: FirstPK + 3}
	s, db := trackedStore(t, pks)

	a := time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Minute)
	b := a.Add(time.Minute)
	// Minute a: pks 0..2 stored (pk 2 with a wrong value), pk 3 missed.
	batch := writeBatch(influencer.Range{From: FirstPK, To: FirstPK + 2}, a, 0)
	batch.Samples[2].FollowerCount++
	batch.Failures = []influencer.Failure{{PK: FirstPK + 3, Minute: a, Class: "timeout", Reason: "deadline", Attempts: 2}}
	_, err := s.Record(ctx, batch)
	require.NoError(t, err)
	// Minute b: pk 0 stored; the others neither stored nor missed. A
	// minute before a is outside the checked minutes.
	_, err = s.Record(ctx, writeBatch(influencer.Range{From: FirstPK, To: FirstPK}, b, 0))
	require.NoError(t, err)
	_, err = s.Record(ctx, writeBatch(influencer.Range{From: FirstPK, To: FirstPK}, a.Add(-time.Minute), 0))
	require.NoError(t, err)

	c, err := CheckDB(ctx, db, pks, a, b.Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, []DBMinute{
		{Minute: a, Stored: 3, ByClass: map[string]int64{"timeout": 1}},
		{Minute: b, Stored: 1, ByClass: map[string]int64{}, Unaccounted: 3},
	}, c.Minutes)
	assert.Equal(t, int64(5), c.Rows)
	assert.Equal(t, int64(1), c.Outside)
	assert.Equal(t, int64(1), c.Wrong)
	f, g := simulator.Counts(FirstPK+2, a)
	assert.Equal(t, []string{"pk 1000002 minute " + a.Format(time.RFC3339) + ": stored " +
		itoa(f+1) + "/" + itoa(g) + ", simulator " + itoa(f) + "/" + itoa(g)}, c.WrongExample)
	assert.Zero(t, c.Duplicates)
	assert.Zero(t, c.Both)
	assert.Zero(t, c.BadSummaries, "the store keeps its summaries right")
	assert.Equal(t, int64(4), c.Stored())
	assert.Equal(t, int64(3), c.Unaccounted())
	assert.Equal(t, map[string]int64{"timeout": 1}, c.ByClass())
	assert.True(t, c.Broken())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
