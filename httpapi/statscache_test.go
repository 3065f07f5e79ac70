package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/store"
)

// countingStats wraps a Reader, counts its Stats calls and can fail them.
type countingStats struct {
	httpapi.Reader
	calls atomic.Int64
	err   error
}

func (c *countingStats) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	c.calls.Add(1)
	if c.err != nil {
		return store.Stats{}, c.err
	}
	return c.Reader.Stats(ctx, now)
}

func TestStatsCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clock := newReadStore(t)
	reader := &countingStats{Reader: s}
	h := httpapi.New(reader, clock, discard(), nil, httpapi.Options{StatsCacheTTL: 5 * time.Second}).Handler(nil, true)

	var st httpapi.StatsResponse
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(6), st.Tracked)
	require.NotNil(t, st.FreshnessSeconds)
	assert.InDelta(t, 3460.0, *st.FreshnessSeconds, 1e-9) // last complete minute 00:10 (TestStats)

	_, err := s.Untrack(ctx, []int64{6})
	require.NoError(t, err)
	clock.Advance(4 * time.Second)
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(6), st.Tracked, "answered from the cache")
	require.NotNil(t, st.FreshnessSeconds)
	assert.InDelta(t, 3464.0, *st.FreshnessSeconds, 1e-9, "freshness is computed at the request")
	assert.Equal(t, int64(1), reader.calls.Load())

	clock.Advance(time.Second)
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(5), st.Tracked, "expired: read again")
	assert.Equal(t, int64(2), reader.calls.Load())

	// A failed read is not cached.
	clock.Advance(5 * time.Second)
	reader.err = errors.New("connection refused")
	r := do(t, h, http.MethodGet, "/api/v1/stats")
	assert.Equal(t, http.StatusInternalServerError, r.status)
	reader.err = nil
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(5), st.Tracked)
	assert.Equal(t, int64(4), reader.calls.Load())
}

func TestStatsNotCachedByDefault(t *testing.T) {
	t.Parallel()
	s, clock := newReadStore(t)
	reader := &countingStats{Reader: s}
	h := httpapi.New(reader, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	var st httpapi.StatsResponse
	getJSON(t, h, "/api/v1/stats", &st)
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(2), reader.calls.Load())
}
