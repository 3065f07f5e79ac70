// Package httpapi serves the read API, health endpoints and metrics.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
)

// MaxPoints is the largest number of timeline points one response carries.
const MaxPoints = 10_080 // one week of minutes

// Reader is what the API reads from the store.
type Reader interface {
	Summary(ctx context.Context, pk int64) (influencer.Summary, error)
	Timeline(ctx context.Context, pk int64, from, to time.Time, limit int) ([]influencer.Point, error)
	Ping(ctx context.Context) error
}

// Ready reports whether the process is ready to serve (nil) or why not.
type Ready func(ctx context.Context) error

// API is the HTTP API.
type API struct {
	store  Reader
	clock  clockwork.Clock
	logger *slog.Logger
	ready  Ready
}

// New creates the API.
func New(store Reader, clock clockwork.Clock, logger *slog.Logger, ready Ready) *API {
	return &API{store: store, clock: clock, logger: logger, ready: ready}
}

// Handler returns the routes; withAPI false serves only health and metrics
// (stage processes). metrics may be nil.
func (a *API) Handler(metrics http.Handler, withAPI bool) http.Handler {
	r := chi.NewRouter()
	r.Use(chimw.Recoverer)
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
			r.Get("/influencers/{pk}", a.influencer)
			r.Get("/influencers/{pk}/timeline", a.timeline)
		})
	}
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
	return r
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.store.Ping(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: "+err.Error())
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
	LastMinute           string   `json:"lastMinute"`
	Samples              int64    `json:"samples"`
}

func (a *API) influencer(w http.ResponseWriter, r *http.Request) {
	pk, ok := parsePK(w, chi.URLParam(r, "pk"))
	if !ok {
		return
	}
	s, err := a.store.Summary(r.Context(), pk)
	if errors.Is(err, influencer.ErrNotFound) {
		writeError(w, http.StatusNotFound, "influencer "+strconv.FormatInt(pk, 10)+" has no data")
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, InfluencerResponse{
		PK: s.PK, Username: s.Username, FollowerCount: s.FollowerCount, FollowingCount: s.FollowingCount,
		FollowerRatio:        ratio(s.FollowerCount, s.FollowingCount),
		AverageFollowerCount: s.AverageFollowerCount(),
		LastMinute:           s.LastMinute.UTC().Format(time.RFC3339),
		Samples:              s.Samples,
	})
}

// PointResponse is one timeline point.
type PointResponse struct {
	Minute         string   `json:"minute"`
	FollowerCount  int64    `json:"followerCount"`
	FollowingCount int64    `json:"followingCount"`
	FollowerRatio  *float64 `json:"followerRatio"`
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
	pk, ok := parsePK(w, chi.URLParam(r, "pk"))
	if !ok {
		return
	}
	q, err := ParseTimelineQuery(r.URL.Query().Get("from"), r.URL.Query().Get("to"), r.URL.Query().Get("step"), a.clock.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	points, err := a.store.Timeline(r.Context(), pk, q.From, q.To, MaxPoints)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := TimelineResponse{PK: pk, From: q.From.Format(time.RFC3339), To: q.To.Format(time.RFC3339), Step: q.Step,
		Points: make([]PointResponse, 0, len(points))}
	for _, p := range points {
		out.Points = append(out.Points, PointResponse{Minute: p.Minute.UTC().Format(time.RFC3339),
			FollowerCount: p.FollowerCount, FollowingCount: p.FollowingCount, FollowerRatio: ratio(p.FollowerCount, p.FollowingCount)})
	}
	writeJSON(w, http.StatusOK, out)
}

// TimelineQuery is a validated timeline request.
type TimelineQuery struct {
	From, To time.Time
	Step     string
}

// ParseTimelineQuery validates from/to/step. Defaults: to = now, from = to-1h,
// step = 1m. The range may hold at most MaxPoints steps.
func ParseTimelineQuery(fromS, toS, step string, now time.Time) (TimelineQuery, error) {
	q := TimelineQuery{To: now.UTC(), Step: step}
	if q.Step == "" {
		q.Step = "1m"
	}
	if q.Step != "1m" {
		return q, errors.New("step must be 1m (1h and 1d rollups are not available yet)")
	}
	var err error
	if toS != "" {
		if q.To, err = time.Parse(time.RFC3339, toS); err != nil {
			return q, errors.New("to: want an RFC 3339 time like 2026-11-25T12:00:00Z")
		}
	}
	q.From = q.To.Add(-time.Hour)
	if fromS != "" {
		if q.From, err = time.Parse(time.RFC3339, fromS); err != nil {
			return q, errors.New("from: want an RFC 3339 time like 2026-11-25T11:00:00Z")
		}
	}
	q.From, q.To = q.From.UTC(), q.To.UTC()
	if !q.From.Before(q.To) {
		return q, errors.New("from must be before to")
	}
	if q.To.Sub(q.From) > MaxPoints*time.Minute {
		return q, errors.New("range too long: at most " + strconv.Itoa(MaxPoints) + " points per response at step 1m")
	}
	return q, nil
}

func parsePK(w http.ResponseWriter, raw string) (int64, bool) {
	pk, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || pk <= 0 {
		writeError(w, http.StatusBadRequest, "pk must be a positive integer")
		return 0, false
	}
	return pk, true
}

func ratio(follower, following int64) *float64 {
	r, ok := influencer.Ratio(follower, following)
	if !ok {
		return nil
	}
	return &r
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.logger.Error("http request", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error")
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
