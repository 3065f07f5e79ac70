// Package httpapi serves the read API, health endpoints and metrics.
package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"
	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel/trace"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store"
)

// MaxPoints is the largest number of timeline points one response carries.
const MaxPoints = 10_080 // one week of minutes

// Reader is what the API reads from the store. Every method is an indexed
// lookup or a bounded range: no read scans the timeline or the summary.
type Reader interface {
	Summary(ctx context.Context, pk int64) (influencer.Summary, error)
	Timeline(ctx context.Context, pk int64, from, to time.Time, limit int) ([]influencer.Point, error)
	Rollup(ctx context.Context, pk int64, step time.Duration, from, to time.Time, limit int) ([]store.Bucket, error)
	Rank(ctx context.Context, pk int64) (int64, error)
	Stats(ctx context.Context, now time.Time) (store.Stats, error)
	Leaderboard(ctx context.Context, after *store.Cursor, limit int) ([]store.Ranked, error)
	Ping(ctx context.Context) error
	MoversReader
}

// SummaryRanker is implemented by a Reader that reads an influencer's
// summary and rank together, in one round trip (the Postgres store);
// ranked is false when the influencer is not tracked. GET
// /api/v1/influencers/{pk} uses it when the Reader has it.
type SummaryRanker interface {
	SummaryRank(ctx context.Context, pk int64) (s influencer.Summary, rank int64, ranked bool, err error)
}

// RegistryEditor changes the tracked set (admin endpoints).
type RegistryEditor interface {
	Add(ctx context.Context, c registry.Change) (int, error)
	Remove(ctx context.Context, c registry.Change) (int, error)
}

// Ready reports whether the process is ready to serve (nil) or why not.
type Ready func(ctx context.Context) error

// API is the HTTP API.
type API struct {
	store      Reader
	registry   RegistryEditor
	adminToken string
	clock      clockwork.Clock
	logger     *slog.Logger
	ready      Ready
	dashboard  http.Handler
	statsCache *statsCache // nil: no caching

	metrics      *Metrics
	tracer       trace.TracerProvider
	corsOrigins  []string
	cacheMargin  time.Duration
	tracked      TrackedReader
	shards       int
	spreadWindow time.Duration
	buffers      sync.Pool // *bytes.Buffer of cached
}

// TrackedReader reads registry rows (store.Store.Tracked): the API tells a
// tracked pk without data from an unknown one.
type TrackedReader interface {
	Tracked(ctx context.Context, after int64, limit int) ([]influencer.Tracked, error)
}

// DefaultStatsCacheTTL is a sensible Options.StatsCacheTTL: the stats
// change once a minute (a minute completes, the counts move), while a
// dashboard or many clients poll them.
const DefaultStatsCacheTTL = 2 * time.Second

// statsCache keeps the store's last Stats answer for ttl; concurrent
// requests after it expired wait for one store read.
type statsCache struct {
	ttl time.Duration
	mu  sync.Mutex
	st  store.Stats
	at  time.Time // when st was read; zero: nothing cached
}

// Options are the API's optional parts.
type Options struct {
	Registry   RegistryEditor // nil: admin endpoints answer 403
	AdminToken string         // empty: admin endpoints are disabled (403)
	Dashboard  http.Handler
	// StatsCacheTTL is how long GET /api/v1/stats answers from the last
	// store read (e.g. DefaultStatsCacheTTL); 0 reads the store every time.
	StatsCacheTTL time.Duration

	Metrics        *Metrics             // nil: no HTTP metrics
	TracerProvider trace.TracerProvider // nil: no server spans
	// CORSOrigins are the origins browsers may call the API from (see
	// config cors-origins); empty: no CORS headers, preflights get 405.
	CORSOrigins []string
	// CacheMargin is how long past each minute boundary cached reads stay
	// fresh (Cache-Control max-age, see MaxAge), e.g. DefaultCacheMargin.
	CacheMargin time.Duration
	// Tracked, Shards and SpreadWindow let GET /api/v1/influencers/{pk}
	// of a tracked pk without data say when its first sample is due; with
	// Tracked nil it is answered like an unknown pk.
	Tracked      TrackedReader
	Shards       int
	SpreadWindow time.Duration
}

// New creates the API.
func New(store Reader, clock clockwork.Clock, logger *slog.Logger, ready Ready, opts Options) *API {
	a := &API{store: store, registry: opts.Registry, adminToken: opts.AdminToken, clock: clock, logger: logger, ready: ready, dashboard: opts.Dashboard,
		metrics: opts.Metrics, tracer: opts.TracerProvider, corsOrigins: opts.CORSOrigins, cacheMargin: opts.CacheMargin,
		tracked: opts.Tracked, shards: opts.Shards, spreadWindow: opts.SpreadWindow,
		buffers: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
	if a.tracked != nil && a.shards < 1 {
		a.tracked = nil // no shard to compute a due time from
	}
	if opts.StatsCacheTTL > 0 {
		a.statsCache = &statsCache{ttl: opts.StatsCacheTTL}
	}
	return a
}

// Handler returns the routes; withAPI false serves only health and metrics
// (stage processes). metrics may be nil.
func (a *API) Handler(metrics http.Handler, withAPI bool) http.Handler {
	r := chi.NewRouter()
	// Middleware, outer to inner:
	//  1. the server span (when a tracer provider is set), so everything
	//     below, and the access log line, carry its trace id;
	//  2. observe: route metrics, span name, access log; outside the rest,
	//     so it sees the final status (a recovered panic's 500, a 304) and
	//     the bytes as sent (compressed);
	//  3. Recoverer: a panic is answered 500;
	//  4. CORS (when configured): preflights are answered before routing;
	//  5. gzip, which compresses what the handlers (and cached) write;
	//  6. Timeout: the handler's context ends after 10 s (504).
	// Reads also run cached (ETag, 304, Cache-Control) inside all of them.
	if a.tracer != nil {
		r.Use(traced(a.tracer))
	}
	r.Use(a.observe)
	r.Use(chimw.Recoverer)
	if len(a.corsOrigins) > 0 {
		r.Use(corsHandler(a.corsOrigins))
	}
	r.Use(compressed(a.logger))
	r.Use(chimw.Timeout(10 * time.Second))
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", a.readyz)
	if metrics != nil {
		r.Handle("/metrics", metrics)
	}
	if withAPI {
		r.Route("/api/v1", func(r chi.Router) {
			// The reads: conditional (ETag, 304) and cacheable to the minute.
			r.Group(func(r chi.Router) {
				r.Use(a.cached)
				r.Get("/influencers", a.leaderboard)
				r.Get("/influencers/{pk}", a.influencer)
				r.Get("/influencers/{pk}/timeline", a.timeline)
				r.Get("/influencers/{pk}/timeline.csv", a.timelineCSV)
				r.Get("/influencers/{pk}/growth", a.growth)
				r.Get("/movers", a.movers)
				r.Get("/stats", a.stats)
			})
			r.Get("/openapi.yaml", serveOpenAPI)
			r.With(a.admin).Post("/registry", a.registryAdd)
			r.With(a.admin).Delete("/registry/{pk}", a.registryRemove)
		})
		if a.dashboard != nil {
			r.Handle("/", a.dashboard)
			r.Handle("/static/*", a.dashboard)
		}
	}
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})
	r.MethodNotAllowed(allowMethods(r))
	return r
}

// ReadyzStoreTimeout bounds /readyz's store ping: over a silent network
// (connections that hang, not refused) the probe answers not-ready within
// it instead of hanging until the prober gives up.
const ReadyzStoreTimeout = 2 * time.Second

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyzStoreTimeout)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		// The error names the database's host, user and name: it is
		// logged, and the unauthenticated answer only says what is wrong.
		if r.Context().Err() != nil {
			a.logger.Debug("readyz: request ended before the store answered", "err", err)
			return
		}
		a.logger.Warn("readyz: store unreachable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store unreachable")
		return
	}
	if a.ready != nil {
		if err := a.ready(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// InfluencerResponse is GET /api/v1/influencers/{pk}.
type InfluencerResponse struct {
	PK                   int64    `json:"pk"`
	Username             string   `json:"username"`
	FollowerCount        int64    `json:"followerCount"`
	FollowingCount       int64    `json:"followingCount"`
	FollowerRatio        *float64 `json:"followerRatio"` // null when followingCount is 0
	AverageFollowerCount float64  `json:"averageFollowerCount"`
	Rank                 *int64   `json:"rank"`               // null when the influencer is no longer tracked
	Suspicious           *bool    `json:"suspicious"`         // null until the daily suspicion check has run
	SuspicionCheckedAt   *string  `json:"suspicionCheckedAt"` // when the suspicious answer was received; null with it
	LastMinute           string   `json:"lastMinute"`
	Samples              int64    `json:"samples"`
}

func (a *API) influencer(w http.ResponseWriter, r *http.Request) {
	pk, ok := parsePK(w, chi.URLParam(r, "pk"))
	if !ok {
		return
	}
	s, rank, err := a.summaryRank(r.Context(), pk)
	if errors.Is(err, store.ErrNotFound) {
		a.noData(w, r, pk)
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	resp := InfluencerResponse{
		PK: s.PK, Username: s.Username, FollowerCount: s.FollowerCount, FollowingCount: s.FollowingCount,
		FollowerRatio:        ratio(s.FollowerCount, s.FollowingCount),
		AverageFollowerCount: s.AverageFollowerCount(),
		Rank:                 rank,
		LastMinute:           s.LastMinute.UTC().Format(time.RFC3339),
		Samples:              s.Samples,
	}
	if q := s.Suspicion; q != nil {
		checked := q.CheckedAt.UTC().Format(time.RFC3339)
		resp.Suspicious, resp.SuspicionCheckedAt = &q.Suspicious, &checked
	}
	writeJSON(w, http.StatusOK, resp)
}

// NoDataResponse is the 404 of GET /api/v1/influencers/{pk} of a tracked
// pk without data yet.
type NoDataResponse struct {
	Error          string `json:"error"`
	FirstSampleDue string `json:"firstSampleDue"`
}

// noData answers a pk without data: 404 with when its first sample is due
// if it is tracked, the plain 404 otherwise.
func (a *API) noData(w http.ResponseWriter, r *http.Request, pk int64) {
	plain := "influencer " + strconv.FormatInt(pk, 10) + " has no data"
	if a.tracked == nil {
		writeError(w, http.StatusNotFound, plain)
		return
	}
	rows, err := a.tracked.Tracked(r.Context(), pk-1, 1)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if len(rows) == 0 || rows[0].PK != pk || !rows[0].Active {
		writeError(w, http.StatusNotFound, plain)
		return
	}
	due := FirstSampleDue(rows[0].UpdatedAt, a.clock.Now(), influencer.ShardOf(pk, a.shards), a.shards, a.spreadWindow)
	writeJSON(w, http.StatusNotFound, NoDataResponse{
		Error:          "influencer " + strconv.FormatInt(pk, 10) + " is tracked but has no data yet",
		FirstSampleDue: due.Format(time.RFC3339),
	})
}

// FirstSampleDue is when the first fetch task of a pk tracked since `since`
// is published, as of now: at its shard's offset (influencer.SpreadOffset)
// in the first minute it counts as tracked in (store.TrackedAt: the
// scheduler loads the registry as a minute starts), or, once that time has
// passed without a sample (the fetch failed or is still being recorded),
// at its next publish time. It is rounded up to the second.
func FirstSampleDue(since, now time.Time, shard, shards int, window time.Duration) time.Time {
	minute := since.Truncate(time.Minute)
	if !store.TrackedAt(true, since, minute) {
		minute = minute.Add(time.Minute)
	}
	offset := influencer.SpreadOffset(shard, shards, window)
	due := minute.Add(offset)
	if due.Before(now) {
		due = now.Truncate(time.Minute).Add(offset)
		if due.Before(now) {
			due = due.Add(time.Minute)
		}
	}
	if t := due.Truncate(time.Second); !t.Equal(due) {
		due = t.Add(time.Second)
	}
	return due.UTC()
}

// summaryRank reads pk's summary and its rank (nil when pk has history but
// is no longer tracked): in one call when the store is a SummaryRanker.
func (a *API) summaryRank(ctx context.Context, pk int64) (influencer.Summary, *int64, error) {
	if sr, ok := a.store.(SummaryRanker); ok {
		s, rk, ranked, err := sr.SummaryRank(ctx, pk)
		if err != nil || !ranked {
			return s, nil, err
		}
		return s, &rk, nil
	}
	s, err := a.store.Summary(ctx, pk)
	if err != nil {
		return influencer.Summary{}, nil, err
	}
	switch rk, err := a.store.Rank(ctx, pk); {
	case err == nil:
		return s, &rk, nil
	case errors.Is(err, store.ErrNotFound):
		return s, nil, nil // has history but is no longer tracked: no rank
	default:
		return influencer.Summary{}, nil, err
	}
}

// PointResponse is one timeline point. At step 1m the counts are the stored
// values; at 1h and 1d they are the bucket averages, with min, max and last.
type PointResponse struct {
	Minute             string   `json:"minute"`
	FollowerCount      float64  `json:"followerCount"`
	FollowingCount     float64  `json:"followingCount"`
	FollowerRatio      *float64 `json:"followerRatio"`
	Samples            int64    `json:"samples,omitempty"`
	FollowerCountMin   *int64   `json:"followerCountMin,omitempty"`
	FollowerCountMax   *int64   `json:"followerCountMax,omitempty"`
	FollowerCountLast  *int64   `json:"followerCountLast,omitempty"`
	FollowingCountMin  *int64   `json:"followingCountMin,omitempty"`
	FollowingCountMax  *int64   `json:"followingCountMax,omitempty"`
	FollowingCountLast *int64   `json:"followingCountLast,omitempty"`
}

// TimelineResponse is GET /api/v1/influencers/{pk}/timeline.
type TimelineResponse struct {
	PK     int64           `json:"pk"`
	From   string          `json:"from"`
	To     string          `json:"to"`
	Step   string          `json:"step"`
	Points []PointResponse `json:"points"`
}

func (a *API) timeline(w http.ResponseWriter, r *http.Request) {
	pk, q, points, ok := a.loadTimeline(w, r)
	if !ok {
		return
	}
	out := TimelineResponse{PK: pk, From: q.From.Format(time.RFC3339), To: q.To.Format(time.RFC3339), Step: q.Step, Points: points}
	writeJSON(w, http.StatusOK, out)
}

// Steps accepted by the timeline and the default span of each.
var steps = map[string]struct {
	d, span time.Duration
}{
	"1m": {time.Minute, time.Hour},
	"1h": {time.Hour, 7 * 24 * time.Hour},
	"1d": {24 * time.Hour, 90 * 24 * time.Hour},
}

// TimelineQuery is a validated timeline request.
type TimelineQuery struct {
	From, To     time.Time
	Step         string
	StepDuration time.Duration
}

// ParseTimelineQuery validates from/to/step. Defaults: to = now, step = 1m,
// from = to minus the step's default span (1h, 7d, 90d). The range may hold
// at most MaxPoints steps.
func ParseTimelineQuery(fromS, toS, step string, now time.Time) (TimelineQuery, error) {
	q := TimelineQuery{To: now.UTC(), Step: step}
	if q.Step == "" {
		q.Step = "1m"
	}
	st, ok := steps[q.Step]
	if !ok {
		return q, errors.New("step must be 1m, 1h or 1d")
	}
	q.StepDuration = st.d
	var err error
	if toS != "" {
		if q.To, err = time.Parse(time.RFC3339, toS); err != nil {
			return q, errors.New("to: want an RFC 3339 time like 2026-11-25T12:00:00Z")
		}
	}
	q.From = q.To.Add(-st.span)
	if fromS != "" {
		if q.From, err = time.Parse(time.RFC3339, fromS); err != nil {
			return q, errors.New("from: want an RFC 3339 time like 2026-11-25T11:00:00Z")
		}
	}
	q.From, q.To = q.From.UTC(), q.To.UTC()
	if !q.From.Before(q.To) {
		return q, errors.New("from must be before to")
	}
	if q.To.Sub(q.From) > MaxPoints*st.d {
		return q, fmt.Errorf("range too long: at most %d points per response at step %s", MaxPoints, q.Step)
	}
	return q, nil
}

// StatsResponse is GET /api/v1/stats.
type StatsResponse struct {
	Tracked              int64    `json:"tracked"`
	Influencers          int64    `json:"influencers"`
	AverageFollowerCount float64  `json:"averageFollowerCount"`
	LastCompleteMinute   *string  `json:"lastCompleteMinute"`
	FreshnessSeconds     *float64 `json:"freshnessSeconds"`
	MissedLastHour       int64    `json:"missedLastHour"`
}

// readStats returns the store's stats as of now, or the cached ones when
// they were read less than the cache's ttl ago.
func (a *API) readStats(ctx context.Context, now time.Time) (store.Stats, error) {
	c := a.statsCache
	if c == nil {
		return a.store.Stats(ctx, now)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && !now.Before(c.at) && now.Sub(c.at) < c.ttl {
		return c.st, nil
	}
	st, err := a.store.Stats(ctx, now)
	if err != nil {
		return store.Stats{}, err
	}
	c.st, c.at = st, now
	return st, nil
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	now := a.clock.Now()
	st, err := a.readStats(r.Context(), now)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := StatsResponse{Tracked: st.Tracked, Influencers: st.Influencers, AverageFollowerCount: st.AverageFollowerCount(), MissedLastHour: st.MissedLastHour}
	if !st.LastCompleteMinute.IsZero() {
		m := st.LastCompleteMinute.UTC().Format(time.RFC3339)
		fresh := now.Sub(st.LastCompleteMinute).Seconds() // age of the newest complete minute
		out.LastCompleteMinute, out.FreshnessSeconds = &m, &fresh
	}
	// The tag is of the figures, not of freshnessSeconds, which grows with
	// every request: answers with the same figures are equivalent (a weak
	// tag, see cached), and a client can age lastCompleteMinute itself.
	figures := out
	figures.FreshnessSeconds = nil
	if b, err := json.Marshal(figures); err == nil {
		w.Header().Set("ETag", ETag(b))
	}
	writeJSON(w, http.StatusOK, out)
}

// Leaderboard limits.
const (
	DefaultLeaderboardLimit = 50
	MaxLeaderboardLimit     = 1000
)

// LeaderboardItem is one leaderboard row.
type LeaderboardItem struct {
	Rank           int64    `json:"rank"`
	PK             int64    `json:"pk"`
	Username       string   `json:"username"`
	FollowerCount  int64    `json:"followerCount"`
	FollowingCount int64    `json:"followingCount"`
	FollowerRatio  *float64 `json:"followerRatio"`
}

// LeaderboardResponse is GET /api/v1/influencers.
type LeaderboardResponse struct {
	Items []LeaderboardItem `json:"items"`
	Next  *string           `json:"next"`
}

func (a *API) leaderboard(w http.ResponseWriter, r *http.Request) {
	limit, after, err := ParseLeaderboardQuery(r.URL.Query().Get("limit"), r.URL.Query().Get("after"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rows, err := a.store.Leaderboard(r.Context(), after, limit)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := LeaderboardResponse{Items: make([]LeaderboardItem, 0, len(rows))}
	for _, row := range rows {
		out.Items = append(out.Items, LeaderboardItem{Rank: row.Rank, PK: row.PK, Username: row.Username,
			FollowerCount: row.FollowerCount, FollowingCount: row.FollowingCount, FollowerRatio: ratio(row.FollowerCount, row.FollowingCount)})
	}
	if len(rows) == limit {
		last := rows[len(rows)-1]
		next := FormatCursor(store.Cursor{FollowerCount: last.FollowerCount, PK: last.PK})
		out.Next = &next
	}
	writeJSON(w, http.StatusOK, out)
}

// ParseLeaderboardQuery validates limit (1..1000, default 50) and the after
// cursor ("<followerCount>.<pk>" as returned in next).
func ParseLeaderboardQuery(limitS, afterS string) (int, *store.Cursor, error) {
	limit := DefaultLeaderboardLimit
	if limitS != "" {
		n, err := strconv.Atoi(limitS)
		if err != nil || n < 1 || n > MaxLeaderboardLimit {
			return 0, nil, fmt.Errorf("limit must be an integer in [1, %d]", MaxLeaderboardLimit)
		}
		limit = n
	}
	if afterS == "" {
		return limit, nil, nil
	}
	c, err := ParseCursor(afterS)
	if err != nil {
		return 0, nil, err
	}
	return limit, &c, nil
}

// FormatCursor encodes a leaderboard position.
func FormatCursor(c store.Cursor) string {
	return strconv.FormatInt(c.FollowerCount, 10) + "." + strconv.FormatInt(c.PK, 10)
}

// ParseCursor decodes FormatCursor's output.
func ParseCursor(s string) (store.Cursor, error) {
	bad := errors.New("after: not a cursor returned by this API (want the previous page's next)")
	fc, pk, ok := strings.Cut(s, ".")
	if !ok {
		return store.Cursor{}, bad
	}
	f, err1 := strconv.ParseInt(fc, 10, 64)
	p, err2 := strconv.ParseInt(pk, 10, 64)
	if err1 != nil || err2 != nil || f < 0 || f > influencer.MaxCount || p <= 0 {
		return store.Cursor{}, bad
	}
	return store.Cursor{FollowerCount: f, PK: p}, nil
}

// admin requires the bearer token: 401 without one, 403 when wrong or when
// no token is configured (admin disabled).
func (a *API) admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.adminToken == "" || a.registry == nil {
			writeError(w, http.StatusForbidden, "admin endpoints are disabled (set MOCKSTAGRAM_ADMIN_TOKEN)")
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mockstagram"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(a.adminToken)) != 1 {
			writeError(w, http.StatusForbidden, "wrong token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RegistryResult is the answer of the admin endpoints.
type RegistryResult struct {
	Changed int `json:"changed"`
}

func (a *API) registryAdd(w http.ResponseWriter, r *http.Request) {
	var change registry.Change
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&change); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", tooLarge.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "body: want {\"range\": \"FROM-TO\"} and/or {\"pks\": [...]}: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "body: trailing data after the JSON object")
		return
	}
	// Larger changes take many batches: the CLI applies them with progress.
	if err := change.CheckAPI("registry add"); err != nil {
		a.registryResult(w, r, 0, err)
		return
	}
	n, err := a.registry.Add(r.Context(), change)
	a.registryResult(w, r, n, err)
}

func (a *API) registryRemove(w http.ResponseWriter, r *http.Request) {
	pk, ok := parsePK(w, chi.URLParam(r, "pk"))
	if !ok {
		return
	}
	n, err := a.registry.Remove(r.Context(), registry.Change{PKs: []int64{pk}})
	a.registryResult(w, r, n, err)
}

func (a *API) registryResult(w http.ResponseWriter, r *http.Request, n int, err error) {
	switch {
	case errors.Is(err, registry.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		a.internal(w, r, err)
	default:
		a.logger.Info("registry changed by admin API", "method", r.Method, "changed", n)
		writeJSON(w, http.StatusOK, RegistryResult{Changed: n})
	}
}

func parsePK(w http.ResponseWriter, raw string) (int64, bool) {
	pk, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || pk <= 0 {
		writeError(w, http.StatusBadRequest, "pk must be a positive integer")
		return 0, false
	}
	return pk, true
}

func floatRatio(follower, following float64) *float64 {
	if following == 0 {
		return nil
	}
	r := follower / following
	return &r
}

func ratio(follower, following int64) *float64 {
	r, ok := influencer.Ratio(follower, following)
	if !ok {
		return nil
	}
	return &r
}

// internal answers a request whose store call failed with err: nothing
// when the request ended first (the client went away, logged at debug; or
// its time ran out, which chi's Timeout answers with 504), 503 with
// Retry-After when the store is unreachable, else 500. The details are
// logged, never answered.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	switch ctxErr := r.Context().Err(); {
	case errors.Is(ctxErr, context.Canceled):
		a.logger.Debug("http request canceled by the client", "path", r.URL.Path, "err", err)
	case ctxErr != nil:
		a.logger.Warn("http request timed out waiting for the store", "path", r.URL.Path, "err", err)
	case storeUnreachable(err):
		a.logger.Warn("http request: store unreachable", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		writeError(w, http.StatusServiceUnavailable, "store unreachable, retry later")
	default:
		a.logger.Error("http request", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// RetryAfterSeconds is the Retry-After of an answer 503 (store unreachable).
const RetryAfterSeconds = 5

// MaxAdminBody bounds an admin request's body; a larger one is answered 413.
const MaxAdminBody = 1 << 20

// storeUnreachable tells an error of a store that cannot be reached from
// one it gave: a network error (refused, reset, DNS, i/o timeout), a
// connection cut mid-answer, a timeout of the store's own (its request's
// time had not run out), or a PostgreSQL error of class 08 (connection
// exception), 53 (insufficient resources: too many connections) or 57P
// (shutting down, starting up). PostgreSQL errors are matched by their
// SQLState method, so this package needs no driver.
func storeUnreachable(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		state := coded.SQLState()
		return strings.HasPrefix(state, "08") || strings.HasPrefix(state, "53") || strings.HasPrefix(state, "57P")
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// NewServer returns an http.Server with timeouts and header limits.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           http.MaxBytesHandler(h, 1<<20),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI is the API's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}
