package httpapi_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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

// now is the fake clock's time: half a minute into 12:00.
var now = time.Date(2026, 11, 25, 12, 0, 30, 0, time.UTC)

func at(hh, mm int) time.Time { return time.Date(2026, 11, 25, hh, mm, 0, 0, time.UTC) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newStore fills a memory store (nothing is tracked, so no rank):
//
//	pk 1000000: 11:00 100/10 "alice", 11:01 110/10 "alice", 11:59 120/0 "alice", 12:00 130/20 "alice2"
//	pk 2000000: 12:00 50/0 "bob", checked suspicious at 08:00
func newStore(t *testing.T, clock clockwork.Clock) *memory.Store {
	t.Helper()
	s := memory.New(clock)
	type row struct {
		pk                  int64
		user                string
		follower, following int64
		minute              time.Time
	}
	rows := []row{
		{1000000, "alice", 100, 10, at(11, 0)},
		{1000000, "alice", 110, 10, at(11, 1)},
		{1000000, "alice", 120, 0, at(11, 59)},
		{1000000, "alice2", 130, 20, at(12, 0)},
		{2000000, "bob", 50, 0, at(12, 0)},
	}
	byMinute := map[time.Time][]influencer.Sample{}
	var order []time.Time
	for _, r := range rows {
		if _, ok := byMinute[r.minute]; !ok {
			order = append(order, r.minute)
		}
		byMinute[r.minute] = append(byMinute[r.minute], influencer.Sample{
			PK: r.pk, Username: r.user, FollowerCount: r.follower, FollowingCount: r.following,
			Minute: r.minute, FetchedAt: r.minute.Add(5 * time.Second),
		})
	}
	for _, m := range order {
		res, err := s.Record(context.Background(), influencer.Batch{Minute: m, Samples: byMinute[m]})
		require.NoError(t, err)
		require.Equal(t, len(byMinute[m]), res.Inserted)
	}
	require.NoError(t, s.SaveSuspicion(context.Background(), []influencer.Suspicion{{PK: 2000000, Suspicious: true, CheckedAt: at(8, 0)}}))
	return s
}

func newHandler(t *testing.T, ready httpapi.Ready, withAPI bool) http.Handler {
	t.Helper()
	clock := clockwork.NewFakeClockAt(now)
	return httpapi.New(newStore(t, clock), clock, discard(), ready, httpapi.Options{}).Handler(nil, withAPI)
}

type response struct {
	status      int
	contentType string
	body        string
}

func do(t *testing.T, h http.Handler, method, target string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return response{status: rec.Code, contentType: rec.Header().Get("Content-Type"), body: string(body)}
}

func TestInfluencer(t *testing.T) {
	t.Parallel()
	h := newHandler(t, nil, true)
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
	}{
		{"latest with history", "/api/v1/influencers/1000000", http.StatusOK, `{
			"pk": 1000000, "username": "alice2", "followerCount": 130, "followingCount": 20,
			"followerRatio": 6.5, "averageFollowerCount": 115, "rank": null, "suspicious": null, "suspicionCheckedAt": null, "lastMinute": "2026-11-25T12:00:00Z", "samples": 4}`},
		{"ratio null when following is 0", "/api/v1/influencers/2000000", http.StatusOK, `{
			"pk": 2000000, "username": "bob", "followerCount": 50, "followingCount": 0,
			"followerRatio": null, "averageFollowerCount": 50, "rank": null, "suspicious": true, "suspicionCheckedAt": "2026-11-25T08:00:00Z", "lastMinute": "2026-11-25T12:00:00Z", "samples": 1}`},
		{"no data", "/api/v1/influencers/1000001", http.StatusNotFound, `{"error": "influencer 1000001 has no data"}`},
		{"letters", "/api/v1/influencers/abc", http.StatusBadRequest, `{"error": "pk must be a positive integer"}`},
		{"zero", "/api/v1/influencers/0", http.StatusBadRequest, `{"error": "pk must be a positive integer"}`},
		{"negative", "/api/v1/influencers/-5", http.StatusBadRequest, `{"error": "pk must be a positive integer"}`},
		{"fraction", "/api/v1/influencers/1.5", http.StatusBadRequest, `{"error": "pk must be a positive integer"}`},
		{"overflow", "/api/v1/influencers/99999999999999999999", http.StatusBadRequest, `{"error": "pk must be a positive integer"}`},
		{"timeline bad pk", "/api/v1/influencers/abc/timeline", http.StatusBadRequest, `{"error": "pk must be a positive integer"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, h, http.MethodGet, tc.path)
			assert.Equal(t, tc.status, r.status)
			assert.Equal(t, "application/json", r.contentType)
			assert.JSONEq(t, tc.body, r.body)
		})
	}
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	h := newHandler(t, nil, true)
	const base = "/api/v1/influencers/1000000/timeline"
	tooLongFrom := now.Add(-(httpapi.MaxPoints + 1) * time.Minute).Format(time.RFC3339)
	maxFrom := now.Add(-httpapi.MaxPoints * time.Minute).Format(time.RFC3339)
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
	}{
		{"explicit range, to exclusive", base + "?from=2026-11-25T11:01:00Z&to=2026-11-25T12:00:00Z", http.StatusOK, `{
			"pk": 1000000, "from": "2026-11-25T11:01:00Z", "to": "2026-11-25T12:00:00Z", "step": "1m",
			"points": [
				{"minute": "2026-11-25T11:01:00Z", "followerCount": 110, "followingCount": 10, "followerRatio": 11},
				{"minute": "2026-11-25T11:59:00Z", "followerCount": 120, "followingCount": 0, "followerRatio": null}
			]}`},
		{"offsets are converted to UTC", base + "?from=2026-11-25T12:59:00%2B02:00&to=2026-11-25T12:01:00Z&step=1m", http.StatusOK, `{
			"pk": 1000000, "from": "2026-11-25T10:59:00Z", "to": "2026-11-25T12:01:00Z", "step": "1m",
			"points": [
				{"minute": "2026-11-25T11:00:00Z", "followerCount": 100, "followingCount": 10, "followerRatio": 10},
				{"minute": "2026-11-25T11:01:00Z", "followerCount": 110, "followingCount": 10, "followerRatio": 11},
				{"minute": "2026-11-25T11:59:00Z", "followerCount": 120, "followingCount": 0, "followerRatio": null},
				{"minute": "2026-11-25T12:00:00Z", "followerCount": 130, "followingCount": 20, "followerRatio": 6.5}
			]}`},
		{"default is the last hour before now", base, http.StatusOK, `{
			"pk": 1000000, "from": "2026-11-25T11:00:30Z", "to": "2026-11-25T12:00:30Z", "step": "1m",
			"points": [
				{"minute": "2026-11-25T11:01:00Z", "followerCount": 110, "followingCount": 10, "followerRatio": 11},
				{"minute": "2026-11-25T11:59:00Z", "followerCount": 120, "followingCount": 0, "followerRatio": null},
				{"minute": "2026-11-25T12:00:00Z", "followerCount": 130, "followingCount": 20, "followerRatio": 6.5}
			]}`},
		{"no data is an empty list", "/api/v1/influencers/1000001/timeline?from=2026-11-25T11:00:00Z&to=2026-11-25T12:00:00Z", http.StatusOK, `{
			"pk": 1000001, "from": "2026-11-25T11:00:00Z", "to": "2026-11-25T12:00:00Z", "step": "1m", "points": []}`},
		{"exactly MaxPoints minutes", base + "?from=" + maxFrom + "&to=" + now.Format(time.RFC3339), http.StatusOK, `{
			"pk": 1000000, "from": "` + maxFrom + `", "to": "2026-11-25T12:00:30Z", "step": "1m",
			"points": [
				{"minute": "2026-11-25T11:00:00Z", "followerCount": 100, "followingCount": 10, "followerRatio": 10},
				{"minute": "2026-11-25T11:01:00Z", "followerCount": 110, "followingCount": 10, "followerRatio": 11},
				{"minute": "2026-11-25T11:59:00Z", "followerCount": 120, "followingCount": 0, "followerRatio": null},
				{"minute": "2026-11-25T12:00:00Z", "followerCount": 130, "followingCount": 20, "followerRatio": 6.5}
			]}`},
		{"bad from", base + "?from=yesterday", http.StatusBadRequest,
			`{"error": "from: want an RFC 3339 time like 2026-11-25T11:00:00Z"}`},
		{"bad to", base + "?to=2026-11-25", http.StatusBadRequest,
			`{"error": "to: want an RFC 3339 time like 2026-11-25T12:00:00Z"}`},
		{"from after to", base + "?from=2026-11-25T12:00:00Z&to=2026-11-25T11:00:00Z", http.StatusBadRequest,
			`{"error": "from must be before to"}`},
		{"from equals to", base + "?from=2026-11-25T12:00:00Z&to=2026-11-25T12:00:00Z", http.StatusBadRequest,
			`{"error": "from must be before to"}`},
		{"unknown step", base + "?step=5m", http.StatusBadRequest,
			`{"error": "step must be 1m, 1h or 1d"}`},
		{"step is case-sensitive", base + "?step=1H", http.StatusBadRequest,
			`{"error": "step must be 1m, 1h or 1d"}`},
		{"range over MaxPoints", base + "?from=" + tooLongFrom + "&to=" + now.Format(time.RFC3339), http.StatusBadRequest,
			`{"error": "range too long: at most 10080 points per response at step 1m"}`},
		{"1h: range over MaxPoints hours", base + "?step=1h&from=" + now.Add(-(httpapi.MaxPoints+1)*time.Hour).Format(time.RFC3339) + "&to=" + now.Format(time.RFC3339),
			http.StatusBadRequest, `{"error": "range too long: at most 10080 points per response at step 1h"}`},
		{"1d: range over MaxPoints days", base + "?step=1d&from=0001-01-01T00:00:00Z&to=2026-11-25T00:00:00Z",
			http.StatusBadRequest, `{"error": "range too long: at most 10080 points per response at step 1d"}`},
		{"1h: a week of minutes is fine at 1h", base + "?step=1h&from=" + tooLongFrom + "&to=" + now.Format(time.RFC3339), http.StatusOK, `{
			"pk": 1000000, "from": "` + tooLongFrom + `", "to": "2026-11-25T12:00:30Z", "step": "1h",
			"points": [
				{"minute": "2026-11-25T11:00:00Z", "followerCount": 110, "followingCount": 6.666666666666667, "followerRatio": 16.5, "samples": 3,
				 "followerCountMin": 100, "followerCountMax": 120, "followerCountLast": 120,
				 "followingCountMin": 0, "followingCountMax": 10, "followingCountLast": 0},
				{"minute": "2026-11-25T12:00:00Z", "followerCount": 130, "followingCount": 20, "followerRatio": 6.5, "samples": 1,
				 "followerCountMin": 130, "followerCountMax": 130, "followerCountLast": 130,
				 "followingCountMin": 20, "followingCountMax": 20, "followingCountLast": 20}
			]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, h, http.MethodGet, tc.path)
			assert.Equal(t, tc.status, r.status, r.body)
			assert.Equal(t, "application/json", r.contentType)
			assert.JSONEq(t, tc.body, r.body)
		})
	}
}

func TestHealthAndRouting(t *testing.T) {
	t.Parallel()
	notReady := func(context.Context) error { return errors.New("router not running") }
	ready := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name    string
		ready   httpapi.Ready
		withAPI bool
		method  string
		path    string
		status  int
		body    string
	}{
		{"healthz", nil, true, http.MethodGet, "/healthz", http.StatusOK, `{"status": "ok"}`},
		{"readyz without a ready func", nil, true, http.MethodGet, "/readyz", http.StatusOK, `{"status": "ready"}`},
		{"readyz ready", ready, true, http.MethodGet, "/readyz", http.StatusOK, `{"status": "ready"}`},
		{"readyz not ready", notReady, true, http.MethodGet, "/readyz", http.StatusServiceUnavailable, `{"error": "router not running"}`},
		{"healthz while not ready", notReady, true, http.MethodGet, "/healthz", http.StatusOK, `{"status": "ok"}`},
		{"unknown route", nil, true, http.MethodGet, "/nope", http.StatusNotFound, `{"error": "no such endpoint"}`},
		{"POST on a GET route", nil, true, http.MethodPost, "/api/v1/influencers/1000000", http.StatusMethodNotAllowed, `{"error": "method not allowed"}`},
		{"DELETE on healthz", nil, true, http.MethodDelete, "/healthz", http.StatusMethodNotAllowed, `{"error": "method not allowed"}`},
		{"stage: healthz", nil, false, http.MethodGet, "/healthz", http.StatusOK, `{"status": "ok"}`},
		{"stage: readyz", nil, false, http.MethodGet, "/readyz", http.StatusOK, `{"status": "ready"}`},
		{"stage: no api", nil, false, http.MethodGet, "/api/v1/influencers/1000000", http.StatusNotFound, `{"error": "no such endpoint"}`},
		{"stage: no timeline", nil, false, http.MethodGet, "/api/v1/influencers/1000000/timeline", http.StatusNotFound, `{"error": "no such endpoint"}`},
		{"no metrics handler", nil, true, http.MethodGet, "/metrics", http.StatusNotFound, `{"error": "no such endpoint"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, newHandler(t, tc.ready, tc.withAPI), tc.method, tc.path)
			assert.Equal(t, tc.status, r.status)
			assert.Equal(t, "application/json", r.contentType)
			assert.JSONEq(t, tc.body, r.body)
		})
	}
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metric 1\n") })
	h := httpapi.New(memory.New(clock), clock, discard(), nil, httpapi.Options{}).Handler(metrics, false)
	r := do(t, h, http.MethodGet, "/metrics")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "metric 1\n", r.body)
}

// failing is a Reader whose every call fails.
type failing struct{ err error }

func (f failing) Summary(context.Context, int64) (influencer.Summary, error) {
	return influencer.Summary{}, f.err
}

func (f failing) Timeline(context.Context, int64, time.Time, time.Time, int) ([]influencer.Point, error) {
	return nil, f.err
}

func (f failing) Rollup(context.Context, int64, time.Duration, time.Time, time.Time, int) ([]store.Bucket, error) {
	return nil, f.err
}

func (f failing) Rank(context.Context, int64) (int64, error) { return 0, f.err }

func (f failing) Stats(context.Context, time.Time) (store.Stats, error) {
	return store.Stats{}, f.err
}

func (f failing) Leaderboard(context.Context, *store.Cursor, int) ([]store.Ranked, error) {
	return nil, f.err
}

func (f failing) Ping(context.Context) error { return f.err }

// rankFailing is the memory store whose Rank fails: the influencer endpoint
// must not answer 200 with a null rank when the rank lookup broke.
type rankFailing struct{ *memory.Store }

func (rankFailing) Rank(context.Context, int64) (int64, error) {
	return 0, errors.New("rank index unavailable")
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	h := httpapi.New(failing{errors.New("connection refused")}, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/api/v1/influencers/1", http.StatusInternalServerError, `{"error": "internal error"}`},
		{"/api/v1/influencers/1/timeline", http.StatusInternalServerError, `{"error": "internal error"}`},
		{"/api/v1/influencers/1/timeline?step=1h", http.StatusInternalServerError, `{"error": "internal error"}`},
		{"/api/v1/influencers/1/timeline?step=1d", http.StatusInternalServerError, `{"error": "internal error"}`},
		{"/api/v1/influencers", http.StatusInternalServerError, `{"error": "internal error"}`},
		{"/api/v1/stats", http.StatusInternalServerError, `{"error": "internal error"}`},
		{"/readyz", http.StatusServiceUnavailable, `{"error": "store unreachable"}`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			r := do(t, h, http.MethodGet, tc.path)
			assert.Equal(t, tc.status, r.status)
			assert.Equal(t, "application/json", r.contentType)
			assert.JSONEq(t, tc.body, r.body)
		})
	}
}

func TestRankErrorIsInternal(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	h := httpapi.New(rankFailing{newStore(t, clock)}, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	r := do(t, h, http.MethodGet, "/api/v1/influencers/1000000")
	assert.Equal(t, http.StatusInternalServerError, r.status)
	assert.JSONEq(t, `{"error": "internal error"}`, r.body)
}

func TestParseTimelineQuery(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("UTC-5", -5*60*60)
	localNow := now.In(loc)
	for _, tc := range []struct {
		name           string
		from, to, step string
		want           httpapi.TimelineQuery
		wantErr        string
	}{
		{name: "defaults", want: httpapi.TimelineQuery{From: now.Add(-time.Hour), To: now, Step: "1m"}},
		{name: "explicit step", step: "1m", want: httpapi.TimelineQuery{From: now.Add(-time.Hour), To: now, Step: "1m"}},
		{name: "only to", to: "2026-11-24T08:00:00Z",
			want: httpapi.TimelineQuery{From: time.Date(2026, 11, 24, 7, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), Step: "1m"}},
		{name: "only from", from: "2026-11-25T09:00:00Z",
			want: httpapi.TimelineQuery{From: at(9, 0), To: now, Step: "1m"}},
		{name: "offsets naming the same instant", from: "2026-11-25T06:00:00-05:00", to: "2026-11-25T12:00:00+01:00",
			wantErr: "from must be before to"},
		{name: "offsets converted", from: "2026-11-25T06:00:00-05:00", to: "2026-11-25T13:00:00+01:00",
			want: httpapi.TimelineQuery{From: at(11, 0), To: at(12, 0), Step: "1m"}},
		{name: "fractional seconds", from: "2026-11-25T11:00:00.5Z", to: "2026-11-25T11:00:01Z",
			want: httpapi.TimelineQuery{From: at(11, 0).Add(500 * time.Millisecond), To: at(11, 0).Add(time.Second), Step: "1m"}},
		{name: "exactly MaxPoints", from: "2026-11-18T12:00:00Z", to: "2026-11-25T12:00:00Z",
			want: httpapi.TimelineQuery{From: time.Date(2026, 11, 18, 12, 0, 0, 0, time.UTC), To: at(12, 0), Step: "1m"}},
		{name: "one minute", from: "2026-11-25T11:59:00Z", to: "2026-11-25T12:00:00Z",
			want: httpapi.TimelineQuery{From: at(11, 59), To: at(12, 0), Step: "1m"}},
		{name: "MaxPoints plus a second", from: "2026-11-18T11:59:59Z", to: "2026-11-25T12:00:00Z",
			wantErr: "range too long: at most 10080 points per response at step 1m"},
		{name: "step 1h: default span a week", step: "1h",
			want: httpapi.TimelineQuery{From: now.Add(-7 * 24 * time.Hour), To: now, Step: "1h", StepDuration: time.Hour}},
		{name: "step 1d: default span 90 days", step: "1d",
			want: httpapi.TimelineQuery{From: now.Add(-90 * 24 * time.Hour), To: now, Step: "1d", StepDuration: 24 * time.Hour}},
		{name: "step 1h: exactly MaxPoints hours", step: "1h", from: "2025-11-30T12:00:00Z", to: "2027-01-24T12:00:00Z",
			want: httpapi.TimelineQuery{From: time.Date(2025, 11, 30, 12, 0, 0, 0, time.UTC), To: time.Date(2027, 1, 24, 12, 0, 0, 0, time.UTC), Step: "1h", StepDuration: time.Hour}},
		{name: "step 1h: MaxPoints hours plus a second", step: "1h", from: "2025-11-30T11:59:59Z", to: "2027-01-24T12:00:00Z",
			wantErr: "range too long: at most 10080 points per response at step 1h"},
		{name: "step 1d: exactly MaxPoints days", step: "1d", from: "2000-01-01T00:00:00Z", to: "2027-08-07T00:00:00Z",
			want: httpapi.TimelineQuery{From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2027, 8, 7, 0, 0, 0, 0, time.UTC), Step: "1d", StepDuration: 24 * time.Hour}},
		{name: "step 1d: MaxPoints days plus a second", step: "1d", from: "1999-12-31T23:59:59Z", to: "2027-08-07T00:00:00Z",
			wantErr: "range too long: at most 10080 points per response at step 1d"},
		{name: "step 5m", step: "5m", wantErr: "step must be 1m, 1h or 1d"},
		{name: "step 60m", step: "60m", wantErr: "step must be 1m, 1h or 1d"},
		{name: "step 24h", step: "24h", wantErr: "step must be 1m, 1h or 1d"},
		{name: "unknown step before a bad from", step: "1w", from: "garbage", wantErr: "step must be 1m, 1h or 1d"},
		{name: "bad from", from: "2026-11-25 11:00:00", wantErr: "from: want an RFC 3339 time like 2026-11-25T11:00:00Z"},
		{name: "unix from", from: "1764068400", wantErr: "from: want an RFC 3339 time like 2026-11-25T11:00:00Z"},
		{name: "bad to", to: "now", wantErr: "to: want an RFC 3339 time like 2026-11-25T12:00:00Z"},
		{name: "from equals to", from: "2026-11-25T11:00:00Z", to: "2026-11-25T11:00:00Z", wantErr: "from must be before to"},
		{name: "from after to", from: "2026-11-25T11:00:01Z", to: "2026-11-25T11:00:00Z", wantErr: "from must be before to"},
		{name: "from after default to", from: "2026-11-25T13:00:00Z", wantErr: "from must be before to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := httpapi.ParseTimelineQuery(tc.from, tc.to, tc.step, localNow)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want.Step, got.Step)
			wantDur := tc.want.StepDuration
			if wantDur == 0 {
				wantDur = time.Minute
			}
			assert.Equal(t, wantDur, got.StepDuration)
			assert.True(t, tc.want.From.Equal(got.From), "from %s, want %s", got.From, tc.want.From)
			assert.True(t, tc.want.To.Equal(got.To), "to %s, want %s", got.To, tc.want.To)
			assert.Equal(t, time.UTC, got.From.Location())
			assert.Equal(t, time.UTC, got.To.Location())
		})
	}
}

func FuzzParseTimelineQuery(f *testing.F) {
	nowUnix := now.Unix()
	f.Add("", "", "", nowUnix)
	f.Add("2026-11-25T11:00:00Z", "2026-11-25T12:00:00Z", "1m", nowUnix)
	f.Add("2026-11-18T12:00:00Z", "2026-11-25T12:00:00Z", "", nowUnix)
	f.Add("2026-11-18T11:59:59Z", "2026-11-25T12:00:00Z", "", nowUnix)
	f.Add("2026-11-25T06:00:00-05:00", "2026-11-25T13:00:00+01:00", "", nowUnix)
	f.Add("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1m", nowUnix)
	f.Add("2026-11-25T12:00:00Z", "", "", int64(0))
	f.Add("", "2026-11-25T12:00:00.999999999Z", "5m", int64(-62135596800))
	f.Add("garbage", "", "1h", nowUnix)
	f.Add("", "", "1d", nowUnix)
	f.Add("2025-11-30T11:59:59Z", "2027-01-24T12:00:00Z", "1h", nowUnix)
	f.Fuzz(func(t *testing.T, from, to, step string, nowSec int64) {
		q, err := httpapi.ParseTimelineQuery(from, to, step, time.Unix(nowSec, 0))
		if err != nil {
			return
		}
		if !q.From.Before(q.To) {
			t.Fatalf("accepted from %s not before to %s", q.From, q.To)
		}
		stepDur := map[string]time.Duration{"1m": time.Minute, "1h": time.Hour, "1d": 24 * time.Hour}
		d, ok := stepDur[q.Step]
		if !ok || q.StepDuration != d {
			t.Fatalf("accepted step %q (duration %s)", q.Step, q.StepDuration)
		}
		if step != "" && step != q.Step {
			t.Fatalf("step %q became %q", step, q.Step)
		}
		if span := q.To.Sub(q.From); span > httpapi.MaxPoints*d {
			t.Fatalf("accepted a range of %s at step %s", span, q.Step)
		}
		if q.From.Location() != time.UTC || q.To.Location() != time.UTC {
			t.Fatalf("times not UTC: %s %s", q.From, q.To)
		}
	})
}

func TestNewServer(t *testing.T) {
	t.Parallel()
	h := http.NewServeMux()
	srv := httpapi.NewServer(":0", h)
	assert.Equal(t, ":0", srv.Addr)
	assert.Equal(t, 5*time.Second, srv.ReadHeaderTimeout)
	assert.Equal(t, 64<<10, srv.MaxHeaderBytes)
	assert.NotZero(t, srv.ReadTimeout)
	assert.NotZero(t, srv.WriteTimeout)
	assert.NotZero(t, srv.IdleTimeout)

	// The body limit applies.
	big := strings.NewReader(strings.Repeat("x", 2<<20))
	var readErr error
	h.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, readErr = io.ReadAll(r.Body) })
	srv.Handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", big))
	var maxErr *http.MaxBytesError
	assert.ErrorAs(t, readErr, &maxErr)
}

// hangingPing is the memory store over a silent network: Ping returns only
// when its context ends.
type hangingPing struct{ *memory.Store }

func (hangingPing) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// /readyz answers not-ready within ReadyzStoreTimeout when the store's
// connection hangs, instead of hanging with it.
func TestReadyzStoreHangs(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	h := httpapi.New(hangingPing{newStore(t, clock)}, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	r := do(t, h, http.MethodGet, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.JSONEq(t, `{"error": "store unreachable"}`, r.body)
}
