package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
)

func TestDBLookups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pks := influencer.Range{From: FirstPK, To: FirstPK + 9}
	s, db := trackedStore(t, pks)
	// Half the pks have a summary: a lookup of the others answers no row,
	// which is an answer too.
	_, err := s.Record(ctx, writeBatch(influencer.Range{From: FirstPK, To: FirstPK + 4}, time.Now().UTC().Truncate(time.Minute), 0))
	require.NoError(t, err)

	lat, failed := dbLookups(ctx, db, 200, pks, time.Now().Add(300*time.Millisecond))
	require.NotNil(t, lat)
	assert.Zero(t, failed)
	assert.Greater(t, lat.N, int64(5), "about 60 lookups at 200/s in 300 ms")
	assert.Positive(t, lat.P50)
	assert.GreaterOrEqual(t, lat.P99, lat.P50)

	lat, failed = dbLookups(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", 200, pks, time.Now().Add(time.Second))
	assert.Nil(t, lat, "no connection, no lookups")
	assert.Equal(t, int64(1), failed)
}

func TestLatencyOf(t *testing.T) {
	t.Parallel()
	assert.Nil(t, latencyOf(nil))
	lat := make([]time.Duration, 0, 200)
	for i := 200; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	// The smallest values with at least half and 99 % of the 200 at or below them.
	assert.Equal(t, &Latency{N: 200, P50: Dur(100 * time.Millisecond), P99: Dur(198 * time.Millisecond)}, latencyOf(lat))
}
