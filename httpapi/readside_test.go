package httpapi_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/memory"
)

// The read-side fixture (newReadStore) is tracked at t0 and read at readNow.
var (
	t0      = time.Date(2026, 11, 24, 23, 0, 0, 0, time.UTC)
	readNow = time.Date(2026, 11, 25, 1, 7, 40, 0, time.UTC)
)

func min24(hh, mm int) time.Time { return time.Date(2026, 11, 24, hh, mm, 0, 0, time.UTC) }
func min25(hh, mm int) time.Time { return time.Date(2026, 11, 25, hh, mm, 0, 0, time.UTC) }

// readMinutes are the fixture's minutes, in recording order (23:30 before
// 23:00: "last" of a bucket is the newest minute, not the newest write).
var readMinutes = []time.Time{
	min24(23, 30), min24(23, 0), min25(0, 0), min25(0, 10), min25(0, 20), min25(1, 5), min25(1, 6), min25(1, 7),
}

// newReadStore fills a memory store through Track and Record:
//
//   - pks 1..6 are tracked from t0 (23:00 on the 24th); pk 9 has data but is
//     never tracked.
//   - pk 1 (follower/following): 23:00 100/10, 23:30 300/30, 00:00 200/20,
//     00:10 400/60, 00:20 600/40, 01:05 500/50, 01:06 700/70, 01:07 900/90.
//   - pks 2..6 have constant counts: 2: 50/0, 3: 700/5, 4: 900/5, 5: 350/5,
//     6: 1000/5 — so the latest counts are 1: 900, 2: 50, 3: 700, 4: 900,
//     5: 350, 6: 1000 (average 650; ranks 6:1, 1:2, 4:2, 3:4, 5:5, 2:6).
//   - pk 6 missed 00:00 and 00:10, pk 5 missed 01:05; at 01:07 only pks 1, 2
//     and 3 are stored, so 01:06 is the last complete minute.
//   - pk 9: 23:00 5000/1.
func newReadStore(t testing.TB) (*memory.Store, *clockwork.FakeClock) {
	t.Helper()
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(t0)
	s := memory.New(clock)
	n, err := s.Track(ctx, []int64{1, 2, 3, 4, 5, 6})
	require.NoError(t, err)
	require.Equal(t, 6, n)

	pk1 := map[time.Time][2]int64{
		min24(23, 0): {100, 10}, min24(23, 30): {300, 30}, min25(0, 0): {200, 20}, min25(0, 10): {400, 60},
		min25(0, 20): {600, 40}, min25(1, 5): {500, 50}, min25(1, 6): {700, 70}, min25(1, 7): {900, 90},
	}
	constant := map[int64][2]int64{2: {50, 0}, 3: {700, 5}, 4: {900, 5}, 5: {350, 5}, 6: {1000, 5}}
	missed := map[time.Time][]int64{min25(0, 0): {6}, min25(0, 10): {6}, min25(1, 5): {5}}
	for _, m := range readMinutes {
		if d := m.Add(10 * time.Second).Sub(clock.Now()); d > 0 {
			clock.Advance(d) // the clock only moves forward
		}
		b := influencer.Batch{Minute: m}
		for pk := int64(1); pk <= 6; pk++ {
			if slices.Contains(missed[m], pk) {
				b.Failures = append(b.Failures, influencer.Failure{PK: pk, Minute: m, Class: "transient", Reason: "timeout"})
				continue
			}
			if m.Equal(min25(1, 7)) && pk > 3 {
				continue
			}
			c := constant[pk]
			if pk == 1 {
				c = pk1[m]
			}
			b.Samples = append(b.Samples, influencer.Sample{PK: pk, Username: "user" + strconv.FormatInt(pk, 10),
				FollowerCount: c[0], FollowingCount: c[1], Minute: m, FetchedAt: m.Add(5 * time.Second)})
		}
		if m.Equal(min24(23, 0)) {
			b.Samples = append(b.Samples, influencer.Sample{PK: 9, Username: "ghost", FollowerCount: 5000, FollowingCount: 1,
				Minute: m, FetchedAt: m.Add(5 * time.Second)})
		}
		_, err := s.Record(ctx, b)
		require.NoError(t, err)
	}
	clock.Advance(readNow.Sub(clock.Now()))
	require.Equal(t, readNow, clock.Now())
	return s, clock
}

func readHandler(t testing.TB) (http.Handler, *memory.Store) {
	t.Helper()
	s, clock := newReadStore(t)
	return httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true), s
}

func TestStats(t *testing.T) {
	t.Parallel()
	h, _ := readHandler(t)
	r := do(t, h, http.MethodGet, "/api/v1/stats")
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Equal(t, "application/json", r.contentType)
	// The last complete minute never passes an incomplete one: 00:10 is
	// accounted for (5 stored, pk 6 missed), 00:11 has neither samples nor
	// misses for its 6 tracked pks (nobody reconciled it), so 00:10 it is,
	// though 01:06 is complete too: freshness 01:07:40 - 00:10:00.
	// Missed in the last hour: 00:10 (pk 6) and 01:05 (pk 5); 00:00 is older.
	// pk 9 is not tracked: not among influencers nor in the average.
	assert.JSONEq(t, `{"tracked": 6, "influencers": 6, "averageFollowerCount": 650,
		"lastCompleteMinute": "2026-11-25T00:10:00Z", "freshnessSeconds": 3460, "missedLastHour": 2}`, r.body)
}

func TestStatsEmptyStore(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	h := httpapi.New(memory.New(clock), clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	r := do(t, h, http.MethodGet, "/api/v1/stats")
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"tracked": 0, "influencers": 0, "averageFollowerCount": 0,
		"lastCompleteMinute": null, "freshnessSeconds": null, "missedLastHour": 0}`, r.body)
}

func TestStatsFollowRegistryAndUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clock := newReadStore(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	// Untracking pk 6 (1000) leaves 2900 over 5.
	_, err := s.Untrack(ctx, []int64{6})
	require.NoError(t, err)
	var st httpapi.StatsResponse
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(5), st.Tracked)
	assert.Equal(t, int64(5), st.Influencers)
	assert.InDelta(t, 580.0, st.AverageFollowerCount, 1e-9)
	// A newer minute for pk 2 (50 -> 1050) moves the average; a redelivery does not.
	b := influencer.Batch{Minute: min25(1, 7), Samples: []influencer.Sample{{PK: 2, Username: "user2", FollowerCount: 1050,
		Minute: min25(1, 7), FetchedAt: min25(1, 7)}}}
	_, err = s.Record(ctx, b)
	require.NoError(t, err)
	_, err = s.Record(ctx, b)
	require.NoError(t, err)
	getJSON(t, h, "/api/v1/stats", &st)
	assert.InDelta(t, 580.0, st.AverageFollowerCount, 1e-9, "01:07 for pk 2 was already stored: duplicate")
	b.Minute, b.Samples[0].Minute = min25(1, 8), min25(1, 8)
	_, err = s.Record(ctx, b)
	require.NoError(t, err)
	_, err = s.Record(ctx, b)
	require.NoError(t, err)
	getJSON(t, h, "/api/v1/stats", &st)
	assert.InDelta(t, 780.0, st.AverageFollowerCount, 1e-9)
}

func getJSON(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	r := do(t, h, http.MethodGet, path)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.NoError(t, json.Unmarshal([]byte(r.body), v))
}

func TestInfluencerRankAndSuspicious(t *testing.T) {
	t.Parallel()
	h, _ := readHandler(t)
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
	}{
		{"tracked, tied with pk 4", "/api/v1/influencers/1", http.StatusOK, `{
			"pk": 1, "username": "user1", "followerCount": 900, "followingCount": 90, "followerRatio": 10,
			"averageFollowerCount": 462.5, "rank": 2, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-25T01:07:00Z", "samples": 8}`},
		{"tied", "/api/v1/influencers/4", http.StatusOK, `{
			"pk": 4, "username": "user4", "followerCount": 900, "followingCount": 5, "followerRatio": 180,
			"averageFollowerCount": 900, "rank": 2, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-25T01:06:00Z", "samples": 7}`},
		{"after a tie", "/api/v1/influencers/3", http.StatusOK, `{
			"pk": 3, "username": "user3", "followerCount": 700, "followingCount": 5, "followerRatio": 140,
			"averageFollowerCount": 700, "rank": 4, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-25T01:07:00Z", "samples": 8}`},
		{"top, despite missed minutes", "/api/v1/influencers/6", http.StatusOK, `{
			"pk": 6, "username": "user6", "followerCount": 1000, "followingCount": 5, "followerRatio": 200,
			"averageFollowerCount": 1000, "rank": 1, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-25T01:06:00Z", "samples": 5}`},
		{"last, ratio null", "/api/v1/influencers/2", http.StatusOK, `{
			"pk": 2, "username": "user2", "followerCount": 50, "followingCount": 0, "followerRatio": null,
			"averageFollowerCount": 50, "rank": 6, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-25T01:07:00Z", "samples": 8}`},
		{"data but never tracked: rank null", "/api/v1/influencers/9", http.StatusOK, `{
			"pk": 9, "username": "ghost", "followerCount": 5000, "followingCount": 1, "followerRatio": 5000,
			"averageFollowerCount": 5000, "rank": null, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-24T23:00:00Z", "samples": 1}`},
		{"tracked without data", "/api/v1/influencers/7", http.StatusNotFound, `{"error": "influencer 7 has no data"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, h, http.MethodGet, tc.path)
			assert.Equal(t, tc.status, r.status, r.body)
			assert.JSONEq(t, tc.body, r.body)
		})
	}
}

// rankedFixture tracks pks 1..40, records pks 1..45 (41..45 untracked, 38..40
// without data) with follower counts full of ties, and returns the store and
// the brute-force leaderboard: tracked with data, by count desc then pk asc,
// rank = 1 + the number with strictly more followers.
func rankedFixture(t testing.TB) (*memory.Store, clockwork.Clock, []httpapi.LeaderboardItem) {
	t.Helper()
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(now)
	s := memory.New(clock)
	tracked := make([]int64, 40)
	for i := range tracked {
		tracked[i] = int64(i + 1)
	}
	_, err := s.Track(ctx, tracked)
	require.NoError(t, err)
	// Two minutes; the second changes some counts (moves up and down).
	for minute := range 2 {
		m := at(11, minute)
		b := influencer.Batch{Minute: m}
		for pk := int64(1); pk <= 45; pk++ {
			if pk >= 38 && pk <= 40 {
				continue
			}
			c := (pk * 7) % 5 * 100
			if minute == 1 && pk%3 == 0 {
				c = (pk * 11) % 4 * 100 // changes, keeping ties
			}
			b.Samples = append(b.Samples, influencer.Sample{PK: pk, Username: fmt.Sprintf("u%d", pk),
				FollowerCount: c, FollowingCount: pk % 4, Minute: m, FetchedAt: m})
		}
		_, err := s.Record(ctx, b)
		require.NoError(t, err)
	}
	var want []httpapi.LeaderboardItem
	for pk := int64(1); pk <= 37; pk++ {
		sum, err := s.Summary(ctx, pk)
		require.NoError(t, err)
		want = append(want, httpapi.LeaderboardItem{PK: pk, Username: sum.Username, FollowerCount: sum.FollowerCount, FollowingCount: sum.FollowingCount})
	}
	for i := range want {
		want[i].Rank = 1
		for _, o := range want {
			if o.FollowerCount > want[i].FollowerCount {
				want[i].Rank++
			}
		}
		if want[i].FollowingCount != 0 {
			r := float64(want[i].FollowerCount) / float64(want[i].FollowingCount)
			want[i].FollowerRatio = &r
		}
	}
	slices.SortFunc(want, func(a, b httpapi.LeaderboardItem) int {
		return cmp.Or(cmp.Compare(b.FollowerCount, a.FollowerCount), cmp.Compare(a.PK, b.PK))
	})
	return s, clock, want
}

func TestLeaderboardPagination(t *testing.T) {
	t.Parallel()
	s, clock, want := rankedFixture(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	require.Len(t, want, 37)
	ties := 0
	for i := 1; i < len(want); i++ {
		if want[i].FollowerCount == want[i-1].FollowerCount {
			ties++
		}
	}
	require.Greater(t, ties, 20, "the fixture must be full of ties")

	for _, limit := range []int{1, 2, 3, 7, 36, 37, 38, 1000} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			t.Parallel()
			var got []httpapi.LeaderboardItem
			after := ""
			pages := 0
			for {
				path := "/api/v1/influencers?limit=" + strconv.Itoa(limit)
				if after != "" {
					path += "&after=" + after
				}
				var page httpapi.LeaderboardResponse
				getJSON(t, h, path, &page)
				require.LessOrEqual(t, len(page.Items), limit)
				got = append(got, page.Items...)
				pages++
				require.LessOrEqual(t, pages, 40, "pagination does not end")
				if page.Next == nil {
					assert.Less(t, len(page.Items), limit, "next is null only on a short page")
					break
				}
				require.Len(t, page.Items, limit, "a page with a next cursor is full")
				last := page.Items[len(page.Items)-1]
				assert.Equal(t, httpapi.FormatCursor(store.Cursor{FollowerCount: last.FollowerCount, PK: last.PK}), *page.Next)
				after = *page.Next
			}
			assert.Equal(t, want, got, "every row exactly once, in rank order, ranks shared on ties")
			assert.Equal(t, len(want)/limit+1, pages)
		})
	}

	t.Run("default limit is 50", func(t *testing.T) {
		t.Parallel()
		var page httpapi.LeaderboardResponse
		getJSON(t, h, "/api/v1/influencers", &page)
		assert.Equal(t, want, page.Items)
		assert.Nil(t, page.Next)
	})
	t.Run("a cursor in the middle of a tie", func(t *testing.T) {
		t.Parallel()
		// Find two consecutive rows with the same count and start after the first.
		for i := 0; i+1 < len(want); i++ {
			if want[i].FollowerCount != want[i+1].FollowerCount {
				continue
			}
			c := httpapi.FormatCursor(store.Cursor{FollowerCount: want[i].FollowerCount, PK: want[i].PK})
			var page httpapi.LeaderboardResponse
			getJSON(t, h, "/api/v1/influencers?limit=1000&after="+c, &page)
			assert.Equal(t, want[i+1:], page.Items)
			return
		}
		t.Fatal("no tie")
	})
	t.Run("a cursor past the end", func(t *testing.T) {
		t.Parallel()
		var page httpapi.LeaderboardResponse
		getJSON(t, h, "/api/v1/influencers?after=0.999999", &page)
		assert.Empty(t, page.Items)
		assert.NotNil(t, page.Items, "items is [] not null")
		assert.Nil(t, page.Next)
	})
	t.Run("influencer rank matches brute force", func(t *testing.T) {
		t.Parallel()
		for _, w := range want {
			var got httpapi.InfluencerResponse
			getJSON(t, h, "/api/v1/influencers/"+strconv.FormatInt(w.PK, 10), &got)
			require.NotNil(t, got.Rank, "pk %d", w.PK)
			assert.Equal(t, w.Rank, *got.Rank, "pk %d", w.PK)
		}
		for pk := int64(41); pk <= 45; pk++ {
			var got httpapi.InfluencerResponse
			getJSON(t, h, "/api/v1/influencers/"+strconv.FormatInt(pk, 10), &got)
			assert.Nil(t, got.Rank, "untracked pk %d", pk)
		}
	})
}

func TestLeaderboardBadParameters(t *testing.T) {
	t.Parallel()
	h, _ := readHandler(t)
	const badLimit = `{"error": "limit must be an integer in [1, 1000]"}`
	const badCursor = `{"error": "after: not a cursor returned by this API (want the previous page's next)"}`
	for _, q := range []struct{ query, body string }{
		{"limit=0", badLimit},
		{"limit=1001", badLimit},
		{"limit=abc", badLimit},
		{"limit=-1", badLimit},
		{"limit=1.5", badLimit},
		{"limit=99999999999999999999", badLimit},
		{"after=x", badCursor},
		{"after=1.0", badCursor},
		{"after=-1.5", badCursor},
		{"after=5", badCursor},
		{"after=.5", badCursor},
		{"after=5.", badCursor},
		{"after=1.2.3", badCursor},
		{"after=10000000001.5", badCursor}, // over influencer.MaxCount: the store would refuse it
		{"limit=0&after=x", badLimit},
	} {
		t.Run(q.query, func(t *testing.T) {
			t.Parallel()
			r := do(t, h, http.MethodGet, "/api/v1/influencers?"+q.query)
			assert.Equal(t, http.StatusBadRequest, r.status)
			assert.Equal(t, "application/json", r.contentType)
			assert.JSONEq(t, q.body, r.body)
		})
	}
	r := do(t, h, http.MethodGet, "/api/v1/influencers?limit=1000&after=10000000000.1")
	assert.Equal(t, http.StatusOK, r.status, "MaxCount itself is a valid cursor")
}

func TestLeaderboardBody(t *testing.T) {
	t.Parallel()
	h, _ := readHandler(t)
	r := do(t, h, http.MethodGet, "/api/v1/influencers?limit=3")
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"items": [
		{"rank": 1, "pk": 6, "username": "user6", "followerCount": 1000, "followingCount": 5, "followerRatio": 200},
		{"rank": 2, "pk": 1, "username": "user1", "followerCount": 900, "followingCount": 90, "followerRatio": 10},
		{"rank": 2, "pk": 4, "username": "user4", "followerCount": 900, "followingCount": 5, "followerRatio": 180}
	], "next": "900.4"}`, r.body)
	r = do(t, h, http.MethodGet, "/api/v1/influencers?limit=3&after=900.4")
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"items": [
		{"rank": 4, "pk": 3, "username": "user3", "followerCount": 700, "followingCount": 5, "followerRatio": 140},
		{"rank": 5, "pk": 5, "username": "user5", "followerCount": 350, "followingCount": 5, "followerRatio": 70},
		{"rank": 6, "pk": 2, "username": "user2", "followerCount": 50, "followingCount": 0, "followerRatio": null}
	], "next": "50.2"}`, r.body)
	r = do(t, h, http.MethodGet, "/api/v1/influencers?limit=3&after=50.2")
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"items": [], "next": null}`, r.body)
}

func TestTimelineRollups(t *testing.T) {
	t.Parallel()
	h, _ := readHandler(t)
	const base = "/api/v1/influencers/1/timeline"
	hour23 := `{"minute": "2026-11-24T23:00:00Z", "followerCount": 200, "followingCount": 20, "followerRatio": 10, "samples": 2,
		"followerCountMin": 100, "followerCountMax": 300, "followerCountLast": 300,
		"followingCountMin": 10, "followingCountMax": 30, "followingCountLast": 30}`
	hour00 := `{"minute": "2026-11-25T00:00:00Z", "followerCount": 400, "followingCount": 40, "followerRatio": 10, "samples": 3,
		"followerCountMin": 200, "followerCountMax": 600, "followerCountLast": 600,
		"followingCountMin": 20, "followingCountMax": 60, "followingCountLast": 40}`
	hour01 := `{"minute": "2026-11-25T01:00:00Z", "followerCount": 700, "followingCount": 70, "followerRatio": 10, "samples": 3,
		"followerCountMin": 500, "followerCountMax": 900, "followerCountLast": 900,
		"followingCountMin": 50, "followingCountMax": 90, "followingCountLast": 90}`
	day24 := strings.Replace(hour23, "2026-11-24T23:00:00Z", "2026-11-24T00:00:00Z", 1)
	day25 := `{"minute": "2026-11-25T00:00:00Z", "followerCount": 550, "followingCount": 55, "followerRatio": 10, "samples": 6,
		"followerCountMin": 200, "followerCountMax": 900, "followerCountLast": 900,
		"followingCountMin": 20, "followingCountMax": 90, "followingCountLast": 90}`
	defaultFrom1d := readNow.Add(-90 * 24 * time.Hour).Format(time.RFC3339)
	defaultFrom1h := readNow.Add(-7 * 24 * time.Hour).Format(time.RFC3339)
	for _, tc := range []struct {
		name, path string
		body       string
	}{
		{"1h explicit range", base + "?step=1h&from=2026-11-24T23:00:00Z&to=2026-11-25T02:00:00Z", `{
			"pk": 1, "from": "2026-11-24T23:00:00Z", "to": "2026-11-25T02:00:00Z", "step": "1h",
			"points": [` + hour23 + `,` + hour00 + `,` + hour01 + `]}`},
		{"1h default range", base + "?step=1h", `{
			"pk": 1, "from": "` + defaultFrom1h + `", "to": "2026-11-25T01:07:40Z", "step": "1h",
			"points": [` + hour23 + `,` + hour00 + `,` + hour01 + `]}`},
		{"1h buckets whose start is in [from, to)", base + "?step=1h&from=2026-11-24T23:30:00Z&to=2026-11-25T01:00:00Z", `{
			"pk": 1, "from": "2026-11-24T23:30:00Z", "to": "2026-11-25T01:00:00Z", "step": "1h",
			"points": [` + hour00 + `]}`},
		{"1d default range", base + "?step=1d", `{
			"pk": 1, "from": "` + defaultFrom1d + `", "to": "2026-11-25T01:07:40Z", "step": "1d",
			"points": [` + day24 + `,` + day25 + `]}`},
		{"1d explicit range", base + "?step=1d&from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z", `{
			"pk": 1, "from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z", "step": "1d",
			"points": [` + day25 + `]}`},
		{"1h ratio null when following averages 0", "/api/v1/influencers/2/timeline?step=1h&from=2026-11-25T01:00:00Z&to=2026-11-25T02:00:00Z", `{
			"pk": 2, "from": "2026-11-25T01:00:00Z", "to": "2026-11-25T02:00:00Z", "step": "1h",
			"points": [{"minute": "2026-11-25T01:00:00Z", "followerCount": 50, "followingCount": 0, "followerRatio": null, "samples": 3,
				"followerCountMin": 50, "followerCountMax": 50, "followerCountLast": 50,
				"followingCountMin": 0, "followingCountMax": 0, "followingCountLast": 0}]}`},
		{"1h missed minutes are not samples", "/api/v1/influencers/6/timeline?step=1h&from=2026-11-25T00:00:00Z&to=2026-11-25T01:00:00Z", `{
			"pk": 6, "from": "2026-11-25T00:00:00Z", "to": "2026-11-25T01:00:00Z", "step": "1h",
			"points": [{"minute": "2026-11-25T00:00:00Z", "followerCount": 1000, "followingCount": 5, "followerRatio": 200, "samples": 1,
				"followerCountMin": 1000, "followerCountMax": 1000, "followerCountLast": 1000,
				"followingCountMin": 5, "followingCountMax": 5, "followingCountLast": 5}]}`},
		{"1d no data", "/api/v1/influencers/7/timeline?step=1d", `{
			"pk": 7, "from": "` + defaultFrom1d + `", "to": "2026-11-25T01:07:40Z", "step": "1d", "points": []}`},
		{"1m still serves stored minutes", base + "?from=2026-11-25T01:05:00Z&to=2026-11-25T01:07:00Z", `{
			"pk": 1, "from": "2026-11-25T01:05:00Z", "to": "2026-11-25T01:07:00Z", "step": "1m",
			"points": [
				{"minute": "2026-11-25T01:05:00Z", "followerCount": 500, "followingCount": 50, "followerRatio": 10},
				{"minute": "2026-11-25T01:06:00Z", "followerCount": 700, "followingCount": 70, "followerRatio": 10}
			]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, h, http.MethodGet, tc.path)
			assert.Equal(t, http.StatusOK, r.status, r.body)
			assert.Equal(t, "application/json", r.contentType)
			assert.JSONEq(t, tc.body, r.body)
		})
	}
}

// adminRequest sends method path with body and, unless auth is empty, an
// Authorization header.
func adminRequest(t *testing.T, h http.Handler, method, path, auth, body string) (response, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return response{status: rec.Code, contentType: rec.Header().Get("Content-Type"), body: string(b)}, rec.Header()
}

const adminToken = "s3cret-token"

func adminHandler(t *testing.T, token string, withRegistry bool) (http.Handler, *memory.Store) {
	t.Helper()
	s, clock := newReadStore(t)
	opts := httpapi.Options{AdminToken: token}
	if withRegistry {
		opts.Registry = registry.New(s)
	}
	return httpapi.New(s, clock, discard(), nil, opts).Handler(nil, true), s
}

func activePKs(t *testing.T, s *memory.Store) []int64 {
	t.Helper()
	pks, _, err := s.ActivePKs(context.Background())
	require.NoError(t, err)
	return pks
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	const (
		disabled = `{"error": "admin endpoints are disabled (set MOCKSTAGRAM_ADMIN_TOKEN)"}`
		missing  = `{"error": "missing bearer token"}`
		wrong    = `{"error": "wrong token"}`
	)
	for _, tc := range []struct {
		name         string
		token        string
		withRegistry bool
		auth         string
		status       int
		body         string
	}{
		{"no Authorization header", adminToken, true, "", http.StatusUnauthorized, missing},
		{"not a bearer token", adminToken, true, "Basic " + adminToken, http.StatusUnauthorized, missing},
		{"empty bearer token", adminToken, true, "Bearer ", http.StatusUnauthorized, missing},
		{"wrong token", adminToken, true, "Bearer nope", http.StatusForbidden, wrong},
		{"token prefix", adminToken, true, "Bearer " + adminToken[:5], http.StatusForbidden, wrong},
		{"token with a suffix", adminToken, true, "Bearer " + adminToken + "x", http.StatusForbidden, wrong},
		{"disabled: no token configured", "", true, "Bearer " + adminToken, http.StatusForbidden, disabled},
		{"disabled: no token configured, no header", "", true, "", http.StatusForbidden, disabled},
		{"disabled: empty bearer vs empty token", "", true, "Bearer ", http.StatusForbidden, disabled},
		{"disabled: no registry", adminToken, false, "Bearer " + adminToken, http.StatusForbidden, disabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, s := adminHandler(t, tc.token, tc.withRegistry)
			before := activePKs(t, s)
			for _, req := range []struct{ method, path, body string }{
				{http.MethodPost, "/api/v1/registry", `{"range": "100-199"}`},
				{http.MethodDelete, "/api/v1/registry/1", ""},
			} {
				r, hdr := adminRequest(t, h, req.method, req.path, tc.auth, req.body)
				assert.Equal(t, tc.status, r.status, "%s %s", req.method, req.path)
				assert.Equal(t, "application/json", r.contentType)
				assert.JSONEq(t, tc.body, r.body)
				if tc.status == http.StatusUnauthorized {
					assert.Equal(t, `Bearer realm="mockstagram"`, hdr.Get("WWW-Authenticate"))
				}
			}
			assert.Equal(t, before, activePKs(t, s), "a refused request changes nothing")
		})
	}
}

func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	h, s := adminHandler(t, adminToken, true)
	before := activePKs(t, s)
	for _, tc := range []struct {
		name, method, path, body string
		errContains              string
	}{
		{"unknown field", http.MethodPost, "/api/v1/registry", `{"range": "1-2", "extra": 1}`, `unknown field "extra"`},
		{"misspelt field", http.MethodPost, "/api/v1/registry", `{"pk": [1]}`, `unknown field "pk"`},
		{"range backwards", http.MethodPost, "/api/v1/registry", `{"range": "5-1"}`, "want 0 < FROM <= TO"},
		{"range not numbers", http.MethodPost, "/api/v1/registry", `{"range": "a-b"}`, "bad start"},
		{"range from zero", http.MethodPost, "/api/v1/registry", `{"range": "0-10"}`, "want 0 < FROM <= TO"},
		{"range too large", http.MethodPost, "/api/v1/registry", `{"range": "1-10000001"}`, "more than 10,000,000 pks"},
		{"zero pk", http.MethodPost, "/api/v1/registry", `{"pks": [0]}`, "pk 0 is not positive"},
		{"negative pk", http.MethodPost, "/api/v1/registry", `{"pks": [5, -3]}`, "pk -3 is not positive"},
		{"pk as string", http.MethodPost, "/api/v1/registry", `{"pks": ["5"]}`, "cannot unmarshal"},
		{"empty change", http.MethodPost, "/api/v1/registry", `{}`, "give a range (FROM-TO) and/or pks"},
		{"empty pks", http.MethodPost, "/api/v1/registry", `{"pks": []}`, "give a range (FROM-TO) and/or pks"},
		{"not JSON", http.MethodPost, "/api/v1/registry", `range=1-2`, "invalid character"},
		{"empty body", http.MethodPost, "/api/v1/registry", ``, "EOF"},
		{"array body", http.MethodPost, "/api/v1/registry", `[1, 2]`, "cannot unmarshal array"},
		{"delete letters", http.MethodDelete, "/api/v1/registry/abc", "", "pk must be a positive integer"},
		{"delete zero", http.MethodDelete, "/api/v1/registry/0", "", "pk must be a positive integer"},
		{"delete negative", http.MethodDelete, "/api/v1/registry/-1", "", "pk must be a positive integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, _ := adminRequest(t, h, tc.method, tc.path, "Bearer "+adminToken, tc.body)
			assert.Equal(t, http.StatusBadRequest, r.status, r.body)
			assert.Equal(t, "application/json", r.contentType)
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(r.body), &e))
			assert.Contains(t, e.Error, tc.errContains)
		})
	}
	t.Cleanup(func() { assert.Equal(t, before, activePKs(t, s), "bad input changes nothing") })
}

func TestAdminChangesTheRegistry(t *testing.T) {
	t.Parallel()
	h, s := adminHandler(t, adminToken, true)
	auth := "Bearer " + adminToken
	steps := []struct {
		method, path, body string
		changed            int
		active             []int64
	}{
		{http.MethodPost, "/api/v1/registry", `{"range": "10-14"}`, 5, []int64{1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14}},
		{http.MethodPost, "/api/v1/registry", `{"pks": [14, 15, 16]}`, 2, []int64{1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16}},
		{http.MethodPost, "/api/v1/registry", `{"range": "20-21", "pks": [22, 9]}`, 4, []int64{1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 20, 21, 22}},
		{http.MethodPost, "/api/v1/registry", `{"range": "10-11"}`, 0, []int64{1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 20, 21, 22}},
		{http.MethodDelete, "/api/v1/registry/12", "", 1, []int64{1, 2, 3, 4, 5, 6, 9, 10, 11, 13, 14, 15, 16, 20, 21, 22}},
		{http.MethodDelete, "/api/v1/registry/12", "", 0, []int64{1, 2, 3, 4, 5, 6, 9, 10, 11, 13, 14, 15, 16, 20, 21, 22}},
		{http.MethodDelete, "/api/v1/registry/999", "", 0, []int64{1, 2, 3, 4, 5, 6, 9, 10, 11, 13, 14, 15, 16, 20, 21, 22}},
		{http.MethodDelete, "/api/v1/registry/6", "", 1, []int64{1, 2, 3, 4, 5, 9, 10, 11, 13, 14, 15, 16, 20, 21, 22}},
	}
	for _, st := range steps {
		r, _ := adminRequest(t, h, st.method, st.path, auth, st.body)
		require.Equal(t, http.StatusOK, r.status, "%s %s %s: %s", st.method, st.path, st.body, r.body)
		assert.Equal(t, "application/json", r.contentType)
		assert.JSONEq(t, fmt.Sprintf(`{"changed": %d}`, st.changed), r.body, "%s %s %s", st.method, st.path, st.body)
		assert.Equal(t, st.active, activePKs(t, s), "%s %s %s", st.method, st.path, st.body)
	}
	// The read side follows: pk 9 (5000 followers) is now tracked and first,
	// pk 6 is untracked and has no rank.
	var inf httpapi.InfluencerResponse
	getJSON(t, h, "/api/v1/influencers/9", &inf)
	require.NotNil(t, inf.Rank)
	assert.Equal(t, int64(1), *inf.Rank)
	getJSON(t, h, "/api/v1/influencers/6", &inf)
	assert.Nil(t, inf.Rank)
	getJSON(t, h, "/api/v1/influencers/1", &inf)
	require.NotNil(t, inf.Rank)
	assert.Equal(t, int64(2), *inf.Rank, "9 above, 4 tied")
	var st httpapi.StatsResponse
	getJSON(t, h, "/api/v1/stats", &st)
	assert.Equal(t, int64(15), st.Tracked)
	assert.Equal(t, int64(6), st.Influencers, "1..5 and 9")
	assert.InDelta(t, (900+50+700+900+350+5000)/6.0, st.AverageFollowerCount, 1e-9)
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "dashboard "+r.URL.Path)
	})
	with := httpapi.New(memory.New(clock), clock, discard(), nil, httpapi.Options{Dashboard: dash})
	without := httpapi.New(memory.New(clock), clock, discard(), nil, httpapi.Options{})
	for _, tc := range []struct {
		name   string
		h      http.Handler
		path   string
		status int
		ctype  string
		body   string
		isJSON bool
	}{
		{name: "page", h: with.Handler(nil, true), path: "/", status: http.StatusOK, ctype: "text/html; charset=utf-8", body: "dashboard /"},
		{name: "static asset", h: with.Handler(nil, true), path: "/static/app.js", status: http.StatusOK, ctype: "text/html; charset=utf-8", body: "dashboard /static/app.js"},
		{name: "the API still wins", h: with.Handler(nil, true), path: "/api/v1/stats", status: http.StatusOK, ctype: "application/json", isJSON: true,
			body: `{"tracked": 0, "influencers": 0, "averageFollowerCount": 0, "lastCompleteMinute": null, "freshnessSeconds": null, "missedLastHour": 0}`},
		{name: "other paths are not the dashboard's", h: with.Handler(nil, true), path: "/other", status: http.StatusNotFound, ctype: "application/json", isJSON: true,
			body: `{"error": "no such endpoint"}`},
		{name: "no dashboard configured", h: without.Handler(nil, true), path: "/", status: http.StatusNotFound, ctype: "application/json", isJSON: true,
			body: `{"error": "no such endpoint"}`},
		{name: "stage processes serve no dashboard", h: with.Handler(nil, false), path: "/", status: http.StatusNotFound, ctype: "application/json", isJSON: true,
			body: `{"error": "no such endpoint"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, tc.h, http.MethodGet, tc.path)
			assert.Equal(t, tc.status, r.status)
			assert.Equal(t, tc.ctype, r.contentType)
			if tc.isJSON {
				assert.JSONEq(t, tc.body, r.body)
			} else {
				assert.Equal(t, tc.body, r.body)
			}
		})
	}
}
