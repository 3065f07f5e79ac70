package httpapi

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// MoversReader is what the growth and movers endpoints read: an indexed
// point lookup per window and a bounded range of the precomputed movers
// list (store.Store's PointAt and Movers).
type MoversReader interface {
	PointAt(ctx context.Context, pk int64, at time.Time) (influencer.Point, error)
	Movers(ctx context.Context, window time.Duration, dir store.Direction, limit int) (store.Movers, error)
}

// GrowthWindows are the windows of GET /api/v1/influencers/{pk}/growth.
var GrowthWindows = []struct {
	Name string
	D    time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// GrowthWindowResponse is the growth of one window: the counts now (at the
// influencer's lastMinute) minus those at its base minute, the newest
// stored minute at most one hour before lastMinute minus the window. Every
// field but window is null when there is no such minute (not enough
// history, or a gap).
type GrowthWindowResponse struct {
	Window                string   `json:"window"`
	BaseMinute            *string  `json:"baseMinute"`
	BaseFollowerCount     *int64   `json:"baseFollowerCount"`
	FollowerGrowth        *int64   `json:"followerGrowth"`
	FollowerGrowthPercent *float64 `json:"followerGrowthPercent"` // also null when the base count is 0
	FollowingGrowth       *int64   `json:"followingGrowth"`
}

// GrowthResponse is GET /api/v1/influencers/{pk}/growth.
type GrowthResponse struct {
	PK             int64                  `json:"pk"`
	FollowerCount  int64                  `json:"followerCount"`
	FollowingCount int64                  `json:"followingCount"`
	LastMinute     string                 `json:"lastMinute"`
	Windows        []GrowthWindowResponse `json:"windows"`
}

func (a *API) growth(w http.ResponseWriter, r *http.Request) {
	pk, ok := parsePK(w, chi.URLParam(r, "pk"))
	if !ok {
		return
	}
	s, err := a.store.Summary(r.Context(), pk)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "influencer "+strconv.FormatInt(pk, 10)+" has no data")
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := GrowthResponse{PK: pk, FollowerCount: s.FollowerCount, FollowingCount: s.FollowingCount,
		LastMinute: s.LastMinute.UTC().Format(time.RFC3339), Windows: make([]GrowthWindowResponse, 0, len(GrowthWindows))}
	for _, win := range GrowthWindows {
		g := GrowthWindowResponse{Window: win.Name}
		p, err := a.store.PointAt(r.Context(), pk, s.LastMinute.Add(-win.D))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			a.internal(w, r, err)
			return
		default:
			m := p.Minute.UTC().Format(time.RFC3339)
			fg, gg := s.FollowerCount-p.FollowerCount, s.FollowingCount-p.FollowingCount
			g.BaseMinute, g.BaseFollowerCount, g.FollowerGrowth, g.FollowingGrowth = &m, &p.FollowerCount, &fg, &gg
			g.FollowerGrowthPercent = percent(fg, p.FollowerCount)
		}
		out.Windows = append(out.Windows, g)
	}
	writeJSON(w, http.StatusOK, out)
}

// percent is 100*delta/base rounded to 0.01, nil when base is 0.
func percent(delta, base int64) *float64 {
	if base == 0 {
		return nil
	}
	p := math.Round(float64(delta)/float64(base)*10000) / 100
	return &p
}

// Movers limits.
const (
	DefaultMoversLimit = 10
	MaxMoversLimit     = store.MaxMovers
)

// MoverItem is one row of the movers list.
type MoverItem struct {
	Rank                  int      `json:"rank"`
	PK                    int64    `json:"pk"`
	Username              string   `json:"username"`
	FollowerCount         int64    `json:"followerCount"`
	BaseFollowerCount     int64    `json:"baseFollowerCount"`
	BaseMinute            string   `json:"baseMinute"`
	FollowerGrowth        int64    `json:"followerGrowth"`
	FollowerGrowthPercent *float64 `json:"followerGrowthPercent"`
}

// MoversResponse is GET /api/v1/movers.
type MoversResponse struct {
	Window     string      `json:"window"`
	Direction  string      `json:"direction"`
	ComputedAt *string     `json:"computedAt"` // null until the first computation
	Items      []MoverItem `json:"items"`
}

func (a *API) movers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	window := q.Get("window")
	if window == "" {
		window = "24h"
	}
	if window != "24h" {
		writeError(w, http.StatusBadRequest, "window must be 24h")
		return
	}
	dirName := q.Get("direction")
	dir := store.Up
	switch dirName {
	case "", "up":
		dirName = "up"
	case "down":
		dir = store.Down
	default:
		writeError(w, http.StatusBadRequest, "direction must be up or down")
		return
	}
	limit := DefaultMoversLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxMoversLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer in [1, %d]", MaxMoversLimit))
			return
		}
		limit = n
	}
	m, err := a.store.Movers(r.Context(), store.MoversWindow, dir, limit)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := MoversResponse{Window: window, Direction: dirName, Items: make([]MoverItem, 0, len(m.Items))}
	if !m.ComputedAt.IsZero() {
		at := m.ComputedAt.UTC().Format(time.RFC3339)
		out.ComputedAt = &at
	}
	for _, it := range m.Items {
		out.Items = append(out.Items, MoverItem{Rank: it.Rank, PK: it.PK, Username: it.Username,
			FollowerCount: it.FollowerCount, BaseFollowerCount: it.BaseFollowerCount,
			BaseMinute: it.BaseMinute.UTC().Format(time.RFC3339), FollowerGrowth: it.Growth,
			FollowerGrowthPercent: percent(it.Growth, it.BaseFollowerCount)})
	}
	writeJSON(w, http.StatusOK, out)
}

// loadTimeline parses a timeline request (pk, from, to, step) and loads its
// points; on a bad request or a store error it has answered and ok is false.
func (a *API) loadTimeline(w http.ResponseWriter, r *http.Request) (pk int64, q TimelineQuery, points []PointResponse, ok bool) {
	if pk, ok = parsePK(w, chi.URLParam(r, "pk")); !ok {
		return 0, TimelineQuery{}, nil, false
	}
	q, err := ParseTimelineQuery(r.URL.Query().Get("from"), r.URL.Query().Get("to"), r.URL.Query().Get("step"), a.clock.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return 0, TimelineQuery{}, nil, false
	}
	if points, err = a.timelinePoints(r.Context(), pk, q); err != nil {
		a.internal(w, r, err)
		return 0, TimelineQuery{}, nil, false
	}
	return pk, q, points, true
}

// timelinePoints loads the points of a validated timeline query: stored
// minutes at 1m, rollup buckets at 1h and 1d.
func (a *API) timelinePoints(ctx context.Context, pk int64, q TimelineQuery) ([]PointResponse, error) {
	if q.StepDuration == time.Minute {
		points, err := a.store.Timeline(ctx, pk, q.From, q.To, MaxPoints)
		if err != nil {
			return nil, err
		}
		out := make([]PointResponse, 0, len(points))
		for _, p := range points {
			out = append(out, PointResponse{Minute: p.Minute.UTC().Format(time.RFC3339),
				FollowerCount: float64(p.FollowerCount), FollowingCount: float64(p.FollowingCount), FollowerRatio: ratio(p.FollowerCount, p.FollowingCount)})
		}
		return out, nil
	}
	buckets, err := a.store.Rollup(ctx, pk, q.StepDuration, q.From, q.To, MaxPoints)
	if err != nil {
		return nil, err
	}
	out := make([]PointResponse, 0, len(buckets))
	for _, b := range buckets {
		out = append(out, PointResponse{
			Minute:        b.Start.UTC().Format(time.RFC3339),
			FollowerCount: b.FollowerAvg, FollowingCount: b.FollowingAvg, FollowerRatio: floatRatio(b.FollowerAvg, b.FollowingAvg),
			Samples:          b.Samples,
			FollowerCountMin: &b.FollowerMin, FollowerCountMax: &b.FollowerMax, FollowerCountLast: &b.FollowerLast,
			FollowingCountMin: &b.FollowingMin, FollowingCountMax: &b.FollowingMax, FollowingCountLast: &b.FollowingLast,
		})
	}
	return out, nil
}

// csvHeader are the columns of timeline.csv; the bucket columns (samples
// on) are empty at step 1m.
var csvHeader = []string{"minute", "followerCount", "followingCount", "followerRatio", "samples",
	"followerCountMin", "followerCountMax", "followerCountLast", "followingCountMin", "followingCountMax", "followingCountLast"}

// timelineCSV is GET /api/v1/influencers/{pk}/timeline.csv: the timeline's
// points (same parameters and limits) as CSV with a header row.
func (a *API) timelineCSV(w http.ResponseWriter, r *http.Request) {
	pk, q, points, ok := a.loadTimeline(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="influencer-%d-%s-%s.csv"`,
		pk, q.Step, q.From.Format("20060102T1504Z")))
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	opt := func(v *int64) string {
		if v == nil {
			return ""
		}
		return strconv.FormatInt(*v, 10)
	}
	row := make([]string, len(csvHeader))
	for _, p := range points {
		row[0], row[1], row[2] = p.Minute, num(p.FollowerCount), num(p.FollowingCount)
		row[3] = ""
		if p.FollowerRatio != nil {
			row[3] = num(*p.FollowerRatio)
		}
		row[4] = ""
		if q.StepDuration != time.Minute {
			row[4] = strconv.FormatInt(p.Samples, 10)
		}
		row[5], row[6], row[7] = opt(p.FollowerCountMin), opt(p.FollowerCountMax), opt(p.FollowerCountLast)
		row[8], row[9], row[10] = opt(p.FollowingCountMin), opt(p.FollowingCountMax), opt(p.FollowingCountLast)
		if err := cw.Write(row); err != nil {
			a.logger.Debug("timeline.csv: write", "err", err)
			return
		}
	}
	cw.Flush()
}
