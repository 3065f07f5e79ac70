package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var pks = influencer.Range{From: 1_000_000, To: 1_000_999}

func newSimulator(t testing.TB, cfg simulator.Config) (*simulator.Server, *httptest.Server) {
	t.Helper()
	cfg.Range = pks
	s, err := simulator.New(cfg, clockwork.NewRealClock())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func TestRunMaxRequests(t *testing.T) {
	t.Parallel()
	s, ts := newSimulator(t, simulator.Config{Mode: simulator.Deterministic})
	res, err := Run(t.Context(), Config{BaseURL: ts.URL, PKs: pks, Concurrency: 16, MaxRequests: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 2000 || res.OK != 2000 || res.Errors != 0 {
		t.Errorf("result %+v, want 2000 requests, all OK", res)
	}
	if got := s.Requests(); got != 2000 {
		t.Errorf("server saw %d GETs, want 2000", got)
	}
	if res.PerSecond <= 0 || res.Elapsed <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("implausible measurements %+v", res)
	}
}

func TestRunRoundRobinCoversEveryPK(t *testing.T) {
	t.Parallel()
	var seen [1000]atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pk, ok := strings.CutPrefix(r.URL.Path, "/api/v1/influencers/")
		var n int64
		for _, c := range pk {
			n = n*10 + int64(c-'0')
		}
		if !ok || n < pks.From || n > pks.To {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		seen[n-pks.From].Add(1)
	}))
	defer ts.Close()
	res, err := Run(t.Context(), Config{BaseURL: ts.URL + "/", PKs: pks, Concurrency: 4, MaxRequests: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 3000 {
		t.Fatalf("result %+v", res)
	}
	for i := range seen {
		if got := seen[i].Load(); got != 3 {
			t.Fatalf("pk %d requested %d times, want 3", pks.From+int64(i), got)
		}
	}
}

func TestRunCountsErrors(t *testing.T) {
	t.Parallel()
	_, ts := newSimulator(t, simulator.Config{ErrorRate: 0.5, Seed: 1})
	res, err := Run(t.Context(), Config{BaseURL: ts.URL, PKs: pks, Concurrency: 4, MaxRequests: 400})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 400 || res.OK+res.Errors != 400 || res.Errors < 100 || res.OK < 100 {
		t.Errorf("result %+v, want about half errors", res)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	t.Parallel()
	_, ts := newSimulator(t, simulator.Config{Latency: time.Millisecond})
	res, err := Run(t.Context(), Config{BaseURL: ts.URL, PKs: pks, Concurrency: 4, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.OK != res.Requests {
		t.Errorf("result %+v: want some requests, none cut off counted as errors", res)
	}
	if res.Elapsed < 200*time.Millisecond || res.Elapsed > 5*time.Second {
		t.Errorf("elapsed %s for a 200ms run", res.Elapsed)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	_, ts := newSimulator(t, simulator.Config{TimeoutRate: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Config{BaseURL: ts.URL, PKs: pks, Concurrency: 2, MaxRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 {
		t.Errorf("result %+v: hung requests cut off by the context must not count", res)
	}
}

func TestRunFixedPathCountsNotFound(t *testing.T) {
	t.Parallel()
	var stats, other atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/stats" {
			other.Add(1)
			http.NotFound(w, r)
			return
		}
		if stats.Add(1)%2 == 0 {
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	res, err := Run(t.Context(), Config{BaseURL: ts.URL, Path: "/api/v1/stats", Concurrency: 1, MaxRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 10 || res.OK != 5 || res.Errors != 5 || res.NotFound != 5 {
		t.Errorf("result %+v, want 10 requests: 5 OK, 5 errors all not found", res)
	}
	if stats.Load() != 10 || other.Load() != 0 {
		t.Errorf("server saw %d GETs of the path and %d others, want 10 and 0", stats.Load(), other.Load())
	}
}

func TestRunRate(t *testing.T) {
	t.Parallel()
	_, ts := newSimulator(t, simulator.Config{Mode: simulator.Deterministic})
	// 50 requests at 200/s take at least 49/200 s (the first goes at once).
	res, err := Run(t.Context(), Config{BaseURL: ts.URL, PKs: pks, Concurrency: 8, Rate: 200, MaxRequests: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 50 || res.OK != 50 {
		t.Errorf("result %+v, want 50 requests, all OK", res)
	}
	if res.Elapsed < 49*time.Second/200 {
		t.Errorf("50 requests at 200/s took %s, want at least %s", res.Elapsed, 49*time.Second/200)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"good", Config{BaseURL: "http://127.0.0.1:3000", PKs: pks, MaxRequests: 1}, nil},
		{"unbounded", Config{BaseURL: "http://127.0.0.1:3000", PKs: pks}, []string{"unbounded"}},
		{"everything wrong", Config{BaseURL: "ftp://x", Concurrency: -1, Rate: -1, Duration: -1, MaxRequests: -1}, []string{
			"base URL", "pks 0-0", "concurrency -1", "rate -1", "duration -1ns", "max requests -1",
		}},
		{"fixed path without pks", Config{BaseURL: "http://127.0.0.1:3000", Path: "/api/v1/stats", MaxRequests: 1}, nil},
		{"relative path", Config{BaseURL: "http://127.0.0.1:3000", Path: "api/v1/stats", MaxRequests: 1}, []string{`path "api/v1/stats"`}},
		{"no host", Config{BaseURL: "127.0.0.1:3000", PKs: pks, Duration: time.Second}, []string{"base URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := Run(t.Context(), tc.cfg); err == nil {
				t.Error("Run accepted an invalid config")
			}
		})
	}
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}, {0, time.Microsecond}} {
		got := h.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff > 0.001 || diff < -1.0/subBuckets {
			t.Errorf("quantile(%v) = %s, want about %s", tc.q, got, tc.want)
		}
	}
	for v := range uint64(1 << 16) {
		if b := bucketOf(v); lowerBound(b) > v || (b+1 < numBuckets && lowerBound(b+1) <= v) {
			t.Fatalf("value %d in bucket %d [%d, %d)", v, b, lowerBound(b), lowerBound(b+1))
		}
	}
	if b := bucketOf(^uint64(0)); b >= numBuckets {
		t.Fatalf("max value in bucket %d of %d", b, numBuckets)
	}
}
