package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store/memory"
	"github.com/mockstagram/pipeline/tracing"
)

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestConditionalReads: each read answers 200 with a weak ETag of its body
// and Cache-Control up to 5 s past the next minute boundary (the fixture's
// clock is at 01:07:40, so 01:08:05 is 25 s away); If-None-Match with that
// tag (alone, in a list, weak or strong, or *) answers 304 without a body;
// another tag answers 200 again.
func TestConditionalReads(t *testing.T) {
	t.Parallel()
	s, clock := newReadStore(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{CacheMargin: httpapi.DefaultCacheMargin}).Handler(nil, true)
	for _, target := range []string{
		"/api/v1/influencers/1",
		"/api/v1/influencers/1/timeline?from=2026-11-24T23:00:00Z&to=2026-11-25T02:00:00Z",
		"/api/v1/influencers/1/timeline.csv?step=1h",
		"/api/v1/influencers/1/growth",
		"/api/v1/influencers?limit=3",
		"/api/v1/movers",
		"/api/v1/stats",
	} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			first := serve(h, httptest.NewRequest(http.MethodGet, target, nil))
			require.Equal(t, http.StatusOK, first.Code)
			etag := first.Header().Get("ETag")
			if !strings.HasPrefix(target, "/api/v1/stats") { // see TestStatsETag
				assert.Equal(t, httpapi.ETag(first.Body.Bytes()), etag)
			}
			assert.Regexp(t, `^W/"[A-Za-z0-9_-]{22}"$`, etag)
			assert.Equal(t, "public, max-age=25", first.Header().Get("Cache-Control"))
			assert.NotEmpty(t, first.Header().Get("Content-Type"))

			for _, tc := range []struct {
				name, ifNoneMatch string
				status            int
			}{
				{"same tag", etag, http.StatusNotModified},
				{"strong form of it", strings.TrimPrefix(etag, "W/"), http.StatusNotModified},
				{"in a list", `W/"other", ` + etag, http.StatusNotModified},
				{"any", "*", http.StatusNotModified},
				{"another tag", `W/"other"`, http.StatusOK},
			} {
				req := httptest.NewRequest(http.MethodGet, target, nil)
				req.Header.Set("If-None-Match", tc.ifNoneMatch)
				rec := serve(h, req)
				assert.Equal(t, tc.status, rec.Code, tc.name)
				assert.Equal(t, etag, rec.Header().Get("ETag"), tc.name)
				assert.Equal(t, "public, max-age=25", rec.Header().Get("Cache-Control"), tc.name)
				if tc.status == http.StatusNotModified {
					assert.Empty(t, rec.Body.String(), tc.name)
					assert.Empty(t, rec.Header().Get("Content-Type"), tc.name)
				} else {
					assert.Equal(t, first.Body.String(), rec.Body.String(), tc.name)
				}
			}
		})
	}

	// The answer changes with the data: a new minute of pk 1, a new tag.
	before := serve(h, httptest.NewRequest(http.MethodGet, "/api/v1/influencers/1", nil)).Header().Get("ETag")
	_, err := s.Record(context.Background(), influencer.Batch{Minute: min25(1, 8), Samples: []influencer.Sample{{
		PK: 1, Username: "user1", FollowerCount: 950, FollowingCount: 90, Minute: min25(1, 8), FetchedAt: min25(1, 8)}}})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/influencers/1", nil)
	req.Header.Set("If-None-Match", before)
	after := serve(h, req)
	assert.Equal(t, http.StatusOK, after.Code)
	assert.NotEqual(t, before, after.Header().Get("ETag"))
}

// TestStatsETag: the stats' tag is of their figures: the answer's
// freshnessSeconds grows with the clock and the tag stays; new figures
// change it.
func TestStatsETag(t *testing.T) {
	t.Parallel()
	s, clock := newReadStore(t)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	first := serve(h, httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil))
	require.Equal(t, http.StatusOK, first.Code)
	etag := first.Header().Get("ETag")
	require.NotEmpty(t, etag)

	clock.Advance(10 * time.Second) // same figures, 10 s older
	plain := serve(h, httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil))
	var before, after httpapi.StatsResponse
	require.NoError(t, json.Unmarshal(first.Body.Bytes(), &before))
	require.NoError(t, json.Unmarshal(plain.Body.Bytes(), &after))
	require.NotNil(t, after.FreshnessSeconds)
	assert.InDelta(t, *before.FreshnessSeconds+10, *after.FreshnessSeconds, 1e-9)
	assert.Equal(t, etag, plain.Header().Get("ETag"))
	req := httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil)
	req.Header.Set("If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, serve(h, req).Code)

	// pks 4..6 arrive for 01:07 with new counts: the average moves.
	var b influencer.Batch
	b.Minute = min25(1, 7)
	for pk := int64(4); pk <= 6; pk++ {
		b.Samples = append(b.Samples, influencer.Sample{PK: pk, Username: "user" + strconv.FormatInt(pk, 10),
			FollowerCount: 10, FollowingCount: 1, Minute: b.Minute, FetchedAt: b.Minute})
	}
	_, err := s.Record(context.Background(), b)
	require.NoError(t, err)
	req = httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil)
	req.Header.Set("If-None-Match", etag)
	changed := serve(h, req)
	assert.Equal(t, http.StatusOK, changed.Code)
	assert.Contains(t, changed.Body.String(), `"averageFollowerCount":280`)
	assert.NotEqual(t, etag, changed.Header().Get("ETag"))
}

// TestNotCached: errors, admin, health, readiness, metrics and the OpenAPI
// document get neither an ETag nor Cache-Control.
func TestNotCached(t *testing.T) {
	t.Parallel()
	s, clock := newReadStore(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") })
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{Registry: registry.New(s), AdminToken: adminToken, CacheMargin: time.Second}).Handler(metrics, true)
	for _, tc := range []struct {
		method, target, body string
		status               int
	}{
		{"GET", "/api/v1/influencers/12345", "", http.StatusNotFound},
		{"GET", "/api/v1/influencers/abc", "", http.StatusBadRequest},
		{"GET", "/api/v1/influencers/1/timeline?step=5m", "", http.StatusBadRequest},
		{"POST", "/api/v1/registry", `{"pks": [77]}`, http.StatusOK},
		{"DELETE", "/api/v1/registry/77", "", http.StatusOK},
		{"GET", "/healthz", "", http.StatusOK},
		{"GET", "/readyz", "", http.StatusOK},
		{"GET", "/metrics", "", http.StatusOK},
		{"GET", "/api/v1/openapi.yaml", "", http.StatusOK},
	} {
		req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		rec := serve(h, req)
		assert.Equal(t, tc.status, rec.Code, tc.target)
		assert.Empty(t, rec.Header().Get("ETag"), tc.target)
		assert.Empty(t, rec.Header().Get("Cache-Control"), tc.target)
	}
}

func TestMaxAge(t *testing.T) {
	t.Parallel()
	at := func(s, ms int) time.Time { return time.Date(2026, 11, 25, 12, 0, s, ms*1e6, time.UTC) }
	for _, tc := range []struct {
		name   string
		now    time.Time
		margin time.Duration
		want   int
	}{
		{"mid-minute", at(30, 0), 5 * time.Second, 35},
		{"fraction rounds up", at(30, 500), 5 * time.Second, 35},
		{"just before the boundary", at(59, 900), 5 * time.Second, 6},
		{"on the boundary: until the margin", at(0, 0), 5 * time.Second, 5},
		{"inside the margin", at(3, 0), 5 * time.Second, 2},
		{"at the margin: the next minute's", at(5, 0), 5 * time.Second, 60},
		{"no margin, on the boundary", at(0, 0), 0, 60},
		{"no margin, last millisecond", at(59, 999), 0, 1},
	} {
		assert.Equal(t, tc.want, httpapi.MaxAge(tc.now, tc.margin), tc.name)
	}
}

// bigTimelineHandler serves pk 1 with two hours of minutes (a 1m timeline
// of about 12 KB).
func bigTimelineHandler(t *testing.T) http.Handler {
	t.Helper()
	clock := clockwork.NewFakeClockAt(now)
	s := memory.New(clock)
	for m := at(10, 0); m.Before(at(12, 0)); m = m.Add(time.Minute) {
		_, err := s.Record(context.Background(), influencer.Batch{Minute: m, Samples: []influencer.Sample{{
			PK: 1, Username: "alice", FollowerCount: 1000 + int64(m.Minute()), FollowingCount: 10, Minute: m, FetchedAt: m}}})
		require.NoError(t, err)
	}
	return httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
}

func TestGzip(t *testing.T) {
	t.Parallel()
	h := bigTimelineHandler(t)
	const big = "/api/v1/influencers/1/timeline?from=2026-11-25T10:00:00Z&to=2026-11-25T12:00:00Z"
	plain := serve(h, httptest.NewRequest(http.MethodGet, big, nil))
	require.Equal(t, http.StatusOK, plain.Code)
	require.Greater(t, plain.Body.Len(), httpapi.CompressMinSize)
	assert.Empty(t, plain.Header().Get("Content-Encoding"), "no Accept-Encoding: plain")
	assert.Equal(t, "Accept-Encoding", plain.Header().Get("Vary"))

	for _, tc := range []struct {
		name, target string
		gzipped      bool
	}{
		{"big timeline", big, true},
		{"small influencer", "/api/v1/influencers/1", false},
		{"small stats", "/api/v1/stats", false},
		{"health", "/healthz", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			req.Header.Set("Accept-Encoding", "gzip, deflate, br")
			rec := serve(h, req)
			require.Equal(t, http.StatusOK, rec.Code)
			assert.Contains(t, rec.Header().Values("Vary"), "Accept-Encoding")
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			if !tc.gzipped {
				assert.Empty(t, rec.Header().Get("Content-Encoding"))
				assert.Less(t, rec.Body.Len(), httpapi.CompressMinSize)
				assert.True(t, json.Valid(rec.Body.Bytes()))
				return
			}
			assert.Equal(t, "gzip", rec.Header().Get("Content-Encoding"))
			assert.Less(t, rec.Body.Len(), plain.Body.Len()/3)
			zr, err := gzip.NewReader(rec.Body)
			require.NoError(t, err)
			body, err := io.ReadAll(zr)
			require.NoError(t, err)
			assert.Equal(t, plain.Body.String(), string(body))
			assert.Equal(t, plain.Header().Get("ETag"), rec.Header().Get("ETag"), "one weak tag for both encodings")
		})
	}
}

func TestAllowOn405(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	s := memory.New(clock)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{Registry: registry.New(s), AdminToken: adminToken}).Handler(nil, true)
	for _, tc := range []struct {
		method, target, allow string
	}{
		{"DELETE", "/api/v1/influencers/1", "GET"},
		{"POST", "/api/v1/influencers", "GET"},
		{"PUT", "/api/v1/influencers/1/timeline", "GET"},
		{"GET", "/api/v1/registry", "POST"},
		{"POST", "/api/v1/registry/5", "DELETE"},
		{"PATCH", "/api/v1/stats", "GET"},
		{"POST", "/healthz", "GET"},
		{"OPTIONS", "/readyz", "GET"},
	} {
		rec := serve(h, httptest.NewRequest(tc.method, tc.target, nil))
		assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, tc.method+" "+tc.target)
		assert.Equal(t, tc.allow, rec.Header().Get("Allow"), tc.method+" "+tc.target)
		assert.JSONEq(t, `{"error": "method not allowed"}`, rec.Body.String())
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	s := newStore(t, clock)
	off := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	on := httpapi.New(s, clock, discard(), nil, httpapi.Options{CORSOrigins: []string{"https://dash.example.com"}}).Handler(nil, true)
	preflight := func(origin, method string) *http.Request {
		req := httptest.NewRequest(http.MethodOptions, "/api/v1/influencers/1000000", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "If-None-Match")
		return req
	}
	get := func(origin string) *http.Request {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/influencers/1000000", nil)
		req.Header.Set("Origin", origin)
		return req
	}
	for _, tc := range []struct {
		name         string
		h            http.Handler
		req          *http.Request
		status       int
		allowOrigin  string
		allowMethods string
	}{
		{"off: preflight is not answered", off, preflight("https://dash.example.com", "GET"), http.StatusMethodNotAllowed, "", ""},
		{"off: no CORS headers", off, get("https://dash.example.com"), http.StatusOK, "", ""},
		{"on: preflight", on, preflight("https://dash.example.com", "GET"), http.StatusOK, "https://dash.example.com", "GET"},
		{"on: preflight of another origin", on, preflight("https://evil.example.com", "GET"), http.StatusOK, "", ""},
		{"on: preflight of a method not allowed", on, preflight("https://dash.example.com", "PUT"), http.StatusOK, "", ""},
		{"on: request", on, get("https://dash.example.com"), http.StatusOK, "https://dash.example.com", ""},
		{"on: request of another origin", on, get("https://evil.example.com"), http.StatusOK, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(tc.h, tc.req)
			assert.Equal(t, tc.status, rec.Code)
			assert.Equal(t, tc.allowOrigin, rec.Header().Get("Access-Control-Allow-Origin"))
			assert.Equal(t, tc.allowMethods, rec.Header().Get("Access-Control-Allow-Methods"))
			if tc.allowMethods != "" {
				assert.Equal(t, "If-None-Match", rec.Header().Get("Access-Control-Allow-Headers"))
				assert.Equal(t, "600", rec.Header().Get("Access-Control-Max-Age"))
			}
			if tc.allowOrigin != "" && tc.req.Method == http.MethodGet {
				assert.Equal(t, "Etag, Retry-After", rec.Header().Get("Access-Control-Expose-Headers"))
			}
		})
	}
}

// TestRequestMetrics: requests are counted by route pattern, never by raw
// path; unrouted ones under "unmatched", unknown methods as OTHER.
func TestRequestMetrics(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	reg := prometheus.NewRegistry()
	h := httpapi.New(newStore(t, clock), clock, discard(), nil, httpapi.Options{Metrics: httpapi.NewMetrics(reg)}).Handler(nil, true)
	for _, target := range []string{"/api/v1/influencers/1000000", "/api/v1/influencers/2000000", "/api/v1/influencers/1000001",
		"/api/v1/influencers/2000000/timeline", "/healthz", "/nope"} {
		serve(h, httptest.NewRequest(http.MethodGet, target, nil))
	}
	serve(h, httptest.NewRequest(http.MethodDelete, "/api/v1/stats", nil))
	serve(h, httptest.NewRequest("BREW", "/healthz", nil))

	assert.Equal(t, 7, testutil.CollectAndCount(reg, "mockstagram_http_request_duration_seconds"), "series")
	got := map[string]uint64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["method"]+" "+labels["route"]+" "+labels["code"]] = m.GetHistogram().GetSampleCount()
		}
	}
	assert.Equal(t, map[string]uint64{
		"GET /api/v1/influencers/{pk} 200":          2,
		"GET /api/v1/influencers/{pk} 404":          1,
		"GET /api/v1/influencers/{pk}/timeline 200": 1,
		"GET /healthz 200":                          1,
		"GET unmatched 404":                         1,
		"DELETE /api/v1/* 405":                      1, // chi stops at the subrouter's mount
		"OTHER unmatched 405":                       1,
	}, got)
}

// tracedHandler serves newStore's data with spans recorded by the returned
// recorder and debug logs (through tracing.LogHandler, as the app's) in
// the returned buffer.
func tracedHandler(t *testing.T, level slog.Level) (http.Handler, *tracetest.SpanRecorder, *bytes.Buffer) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(now)
	rec := tracetest.NewSpanRecorder()
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{SampleRatio: 1, Service: "test"}, sdktrace.WithSpanProcessor(rec))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var buf bytes.Buffer
	logger := slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})})
	h := httpapi.New(newStore(t, clock), clock, logger, nil, httpapi.Options{TracerProvider: tp}).Handler(nil, true)
	return h, rec, &buf
}

func TestServerSpan(t *testing.T) {
	t.Parallel()
	h, rec, _ := tracedHandler(t, slog.LevelInfo)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := httptest.NewRequest(http.MethodGet, "/api/v1/influencers/1000000?x=1", nil)
	req.Header.Set("traceparent", parent)
	require.Equal(t, http.StatusOK, serve(h, req).Code)
	serve(h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	serve(h, httptest.NewRequest(http.MethodGet, "/readyz", nil))

	spans := rec.Ended()
	require.Len(t, spans, 1, "probes are not traced")
	s := spans[0]
	assert.Equal(t, "GET /api/v1/influencers/{pk}", s.Name())
	assert.Equal(t, trace.SpanKindServer, s.SpanKind())
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext().TraceID().String(), "continues the client's trace")
	assert.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	assert.Equal(t, "/api/v1/influencers/{pk}", attrs["http.route"].AsString())
	assert.Equal(t, int64(200), attrs["http.response.status_code"].AsInt64())
	assert.Equal(t, "GET", attrs["http.request.method"].AsString())
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	h, spans, buf := tracedHandler(t, slog.LevelDebug)
	rec := serve(h, httptest.NewRequest(http.MethodGet, "/api/v1/influencers/2000000", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Len(t, spans.Ended(), 1)
	var line map[string]any
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line), buf.String())
	assert.Equal(t, "DEBUG", line["level"])
	assert.Equal(t, "http request", line["msg"])
	assert.Equal(t, "GET", line["method"])
	assert.Equal(t, "/api/v1/influencers/{pk}", line["route"])
	assert.Equal(t, "/api/v1/influencers/2000000", line["path"])
	assert.InDelta(t, 200, line["status"], 0)
	assert.InDelta(t, rec.Body.Len(), line["bytes"], 0)
	assert.InDelta(t, 0, line["duration"], 0, "the fake clock does not move")
	assert.Equal(t, spans.Ended()[0].SpanContext().TraceID().String(), line["trace_id"])

	quiet, _, qbuf := tracedHandler(t, slog.LevelInfo)
	serve(quiet, httptest.NewRequest(http.MethodGet, "/api/v1/influencers/2000000", nil))
	assert.Empty(t, qbuf.String(), "the access log is at debug level")
}

// TestTrackedWithoutData: a pk in the registry without a sample yet is
// answered 404 with when its first sample is due; an unknown pk, and an
// untracked one, keep the plain 404.
func TestTrackedWithoutData(t *testing.T) {
	t.Parallel()
	const shards = 4
	window := 40 * time.Second // shard s at 10 s × s
	clock := clockwork.NewFakeClockAt(now)
	s := newStore(t, clock)
	_, err := s.Track(context.Background(), []int64{5, 6})
	require.NoError(t, err)
	_, err = s.Untrack(context.Background(), []int64{6})
	require.NoError(t, err)
	h := httpapi.New(s, clock, discard(), nil, httpapi.Options{Tracked: s, Shards: shards, SpreadWindow: window}).Handler(nil, true)

	// Tracked at 12:00:30: the scheduler takes it from 12:01 on.
	due := at(12, 1).Add(time.Duration(influencer.ShardOf(5, shards)) * 10 * time.Second)
	r := do(t, h, http.MethodGet, "/api/v1/influencers/5")
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.JSONEq(t, `{"error": "influencer 5 is tracked but has no data yet", "firstSampleDue": "`+due.Format(time.RFC3339)+`"}`, r.body)

	for _, pk := range []string{"6", "7"} {
		r := do(t, h, http.MethodGet, "/api/v1/influencers/"+pk)
		assert.Equal(t, http.StatusNotFound, r.status)
		assert.JSONEq(t, `{"error": "influencer `+pk+` has no data"}`, r.body)
	}
	ok := do(t, h, http.MethodGet, "/api/v1/influencers/1000000")
	assert.Equal(t, http.StatusOK, ok.status, "a pk with data is answered as before")
}

func TestFirstSampleDue(t *testing.T) {
	t.Parallel()
	const shards = 1024
	window := 45 * time.Second
	// Shard 512 of 1024 is published 22.5 s into the minute.
	for _, tc := range []struct {
		name       string
		since, now time.Time
		want       time.Time
	}{
		{"tracked mid-minute: the next minute", at(12, 0).Add(10 * time.Second), at(12, 0).Add(11 * time.Second), at(12, 1).Add(23 * time.Second)},
		{"tracked at the minute's start: that minute", at(12, 0), at(12, 0), at(12, 0).Add(23 * time.Second)},
		{"due time passed: the next publish", at(11, 0), at(12, 5).Add(30 * time.Second), at(12, 6).Add(23 * time.Second)},
		{"due time passed, this minute's still ahead", at(11, 0), at(12, 5).Add(10 * time.Second), at(12, 5).Add(23 * time.Second)},
	} {
		got := httpapi.FirstSampleDue(tc.since, tc.now, 512, shards, window)
		assert.Equal(t, tc.want, got, tc.name)
	}
}

// TestMetricsNotGzippedTwice: promhttp compresses /metrics itself; the
// API's gzip leaves an answer with a Content-Encoding alone.
func TestMetricsNotGzippedTwice(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(now)
	reg := prometheus.NewRegistry()
	h := httpapi.New(memory.New(clock), clock, discard(), nil, httpapi.Options{Metrics: httpapi.NewMetrics(reg)}).
		Handler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), false)
	serve(h, httptest.NewRequest(http.MethodGet, "/healthz", nil)) // a series to scrape
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := serve(h, req)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []string{"gzip"}, rec.Header().Values("Content-Encoding"))
	zr, err := gzip.NewReader(rec.Body)
	require.NoError(t, err)
	body, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Contains(t, string(body), `mockstagram_http_request_duration_seconds_count{code="200",method="GET",route="/healthz"} 1`)
}
