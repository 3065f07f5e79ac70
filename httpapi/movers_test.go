package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/memory"
)

func (f failing) PointAt(context.Context, int64, time.Time) (influencer.Point, error) {
	return influencer.Point{}, f.err
}

func (f failing) Movers(context.Context, time.Duration, store.Direction, int) (store.Movers, error) {
	return store.Movers{}, f.err
}

// growthStore holds pk 1 at last = 12:00 and at minutes near each window's
// base, pk 2 (a loser) and pk 3 (no history a day back).
func growthStore(t *testing.T) (*memory.Store, *clockwork.FakeClock, time.Time) {
	t.Helper()
	last := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(last.Add(30 * time.Second))
	s := memory.New(clock)
	ctx := context.Background()
	_, err := s.Track(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	rec := func(m time.Time, pk, follower, following int64) {
		t.Helper()
		_, err := s.Record(ctx, influencer.Batch{Minute: m, Samples: []influencer.Sample{{PK: pk, Username: "user" + string(rune('0'+pk)),
			FollowerCount: follower, FollowingCount: following, Minute: m, FetchedAt: m}}})
		require.NoError(t, err)
	}
	rec(last.Add(-7*24*time.Hour-30*time.Minute), 1, 800, 50) // 7d base: 30 min before, inside the lookback
	rec(last.Add(-24*time.Hour), 1, 900, 55)                  // 24h base: exactly at it
	rec(last.Add(-24*time.Hour+time.Minute), 1, 1, 1)         // after the 24h base: not it
	rec(last.Add(-61*time.Minute), 1, 990, 58)                // 1h base: newest before last-1h
	rec(last, 1, 1000, 60)
	rec(last.Add(-24*time.Hour), 2, 500, 5)
	rec(last, 2, 400, 5)
	rec(last, 3, 10, 5)
	return s, clock, last
}

func TestGrowth(t *testing.T) {
	t.Parallel()
	s, clock, _ := growthStore(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	r := do(t, h, http.MethodGet, "/api/v1/influencers/1/growth")
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.JSONEq(t, `{"pk": 1, "followerCount": 1000, "followingCount": 60, "lastMinute": "2026-11-25T12:00:00Z", "windows": [
		{"window": "1h", "baseMinute": "2026-11-25T10:59:00Z", "baseFollowerCount": 990, "followerGrowth": 10, "followerGrowthPercent": 1.01, "followingGrowth": 2},
		{"window": "24h", "baseMinute": "2026-11-24T12:00:00Z", "baseFollowerCount": 900, "followerGrowth": 100, "followerGrowthPercent": 11.11, "followingGrowth": 5},
		{"window": "7d", "baseMinute": "2026-11-18T11:30:00Z", "baseFollowerCount": 800, "followerGrowth": 200, "followerGrowthPercent": 25, "followingGrowth": 10}]}`, r.body)

	r = do(t, h, http.MethodGet, "/api/v1/influencers/3/growth")
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.JSONEq(t, `{"pk": 3, "followerCount": 10, "followingCount": 5, "lastMinute": "2026-11-25T12:00:00Z", "windows": [
		{"window": "1h", "baseMinute": null, "baseFollowerCount": null, "followerGrowth": null, "followerGrowthPercent": null, "followingGrowth": null},
		{"window": "24h", "baseMinute": null, "baseFollowerCount": null, "followerGrowth": null, "followerGrowthPercent": null, "followingGrowth": null},
		{"window": "7d", "baseMinute": null, "baseFollowerCount": null, "followerGrowth": null, "followerGrowthPercent": null, "followingGrowth": null}]}`, r.body)
}

func TestMovers(t *testing.T) {
	t.Parallel()
	s, clock, last := growthStore(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	r := do(t, h, http.MethodGet, "/api/v1/movers")
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.JSONEq(t, `{"window": "24h", "direction": "up", "computedAt": null, "items": []}`, r.body)

	at := last.Add(30 * time.Second)
	require.NoError(t, s.RecomputeMovers(context.Background(), at, store.MoversWindow))
	for _, tc := range []struct{ target, body string }{
		{"/api/v1/movers", `{"window": "24h", "direction": "up", "computedAt": "2026-11-25T12:00:30Z", "items": [
			{"rank": 1, "pk": 1, "username": "user1", "followerCount": 1000, "baseFollowerCount": 900, "baseMinute": "2026-11-24T12:00:00Z", "followerGrowth": 100, "followerGrowthPercent": 11.11}]}`},
		{"/api/v1/movers?direction=down&limit=5&window=24h", `{"window": "24h", "direction": "down", "computedAt": "2026-11-25T12:00:30Z", "items": [
			{"rank": 1, "pk": 2, "username": "user2", "followerCount": 400, "baseFollowerCount": 500, "baseMinute": "2026-11-24T12:00:00Z", "followerGrowth": -100, "followerGrowthPercent": -20}]}`},
	} {
		r := do(t, h, http.MethodGet, tc.target)
		require.Equal(t, http.StatusOK, r.status, r.body)
		assert.JSONEq(t, tc.body, r.body, tc.target)
	}
	for _, target := range []string{"/api/v1/movers?window=7d", "/api/v1/movers?direction=sideways", "/api/v1/movers?limit=0", "/api/v1/movers?limit=x"} {
		assert.Equal(t, http.StatusBadRequest, do(t, h, http.MethodGet, target).status, target)
	}
}

func TestTimelineCSV(t *testing.T) {
	t.Parallel()
	s, clock, _ := growthStore(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	for _, tc := range []struct{ target, body string }{
		{"/api/v1/influencers/1/timeline.csv?from=2026-11-24T12:00:00Z&to=2026-11-24T12:02:00Z",
			"minute,followerCount,followingCount,followerRatio,samples,followerCountMin,followerCountMax,followerCountLast,followingCountMin,followingCountMax,followingCountLast\n" +
				"2026-11-24T12:00:00Z,900,55,16.363636363636363,,,,,,,\n" +
				"2026-11-24T12:01:00Z,1,1,1,,,,,,,\n"},
		{"/api/v1/influencers/1/timeline.csv?from=2026-11-24T12:00:00Z&to=2026-11-24T13:00:00Z&step=1h",
			"minute,followerCount,followingCount,followerRatio,samples,followerCountMin,followerCountMax,followerCountLast,followingCountMin,followingCountMax,followingCountLast\n" +
				"2026-11-24T12:00:00Z,450.5,28,16.089285714285715,2,1,900,1,1,55,1\n"},
		{"/api/v1/influencers/77/timeline.csv",
			"minute,followerCount,followingCount,followerRatio,samples,followerCountMin,followerCountMax,followerCountLast,followingCountMin,followingCountMax,followingCountLast\n"},
	} {
		r := do(t, h, http.MethodGet, tc.target)
		require.Equal(t, http.StatusOK, r.status, r.body)
		assert.Equal(t, "text/csv; charset=utf-8", r.contentType)
		assert.Equal(t, tc.body, r.body, tc.target)
	}
	r := do(t, h, http.MethodGet, "/api/v1/influencers/1/timeline.csv?step=1m&from=2026-11-01T00:00:00Z")
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Contains(t, r.body, "range too long")
}
