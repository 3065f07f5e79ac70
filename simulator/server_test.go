package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/influencer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	testRange = influencer.Range{From: 1_000_000, To: 1_009_999}
	testStart = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
)

const knownPK = 1_000_001

func newServer(t testing.TB, cfg Config) (*Server, *clockwork.FakeClock) {
	t.Helper()
	if cfg.Range == (influencer.Range{}) {
		cfg.Range = testRange
	}
	clock := clockwork.NewFakeClockAt(testStart)
	s, err := New(cfg, clock)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, clock
}

// serve calls the handler in-process.
func serve(s *Server, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func get(s *Server, pk string) *httptest.ResponseRecorder {
	return serve(s, http.MethodGet, pathPrefix+pk, "")
}

func sampleBody(pk, follower, following int64) string {
	return fmt.Sprintf(`{"pk":%d,"username":"influencer-%d","followerCount":%d,"followingCount":%d}`, pk, pk, follower, following)
}

func decodeSample(t *testing.T, body []byte) influencer.Sample {
	t.Helper()
	var smp influencer.Sample
	if err := json.Unmarshal(body, &smp); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return smp
}

func TestGetKnownPKOverHTTP(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{Mode: Deterministic})
	ts := httptest.NewServer(s)
	defer ts.Close()

	resp, err := ts.Client().Get(ts.URL + pathPrefix + "1000001")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	f, g := Counts(knownPK, testStart)
	if want := sampleBody(knownPK, f, g); string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
	smp := decodeSample(t, body)
	smp.Minute = testStart
	if err := smp.Validate(); err != nil {
		t.Errorf("sample does not validate: %v", err)
	}
	if got := s.Requests(); got != 1 {
		t.Errorf("Requests() = %d, want 1", got)
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{})
	for _, pk := range []string{
		"999999",               // below the range
		"1010000",              // above the range
		"abc",                  // not a number
		"0",                    // zero
		"-5",                   // negative
		"+1000001",             // signed
		"1000001.0",            // not an integer
		"1e6",                  // exponent
		"99999999999999999999", // overflows int64
		"is_suspicious",        // the POST route, read as a pk by GET
	} {
		t.Run(pk, func(t *testing.T) {
			t.Parallel()
			rec := get(s, pk)
			if rec.Code != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500", rec.Code)
			}
			if got := rec.Body.String(); got != NotFoundBody {
				t.Errorf("body = %q, want %q", got, NotFoundBody)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestRoutesNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{})
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/"},
		{http.MethodGet, "/api/v1/influencers"},
		{http.MethodGet, "/api/v1/influencers/"},
		{http.MethodGet, "/api/v1/influencers/1000001/extra"},
		{http.MethodGet, "/api/v2/influencers/1000001"},
		{http.MethodPost, "/api/v1/influencers/1000001"},
		{http.MethodPut, "/api/v1/influencers/1000001"},
		{http.MethodDelete, "/api/v1/influencers/1000001"},
		{http.MethodGet + "X", "/api/v1/influencers/1000001"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			if rec := serve(s, tc.method, tc.path, ""); rec.Code != http.StatusNotFound {
				t.Errorf("status = %d, want 404", rec.Code)
			}
		})
	}
	if got := s.Requests(); got != 0 {
		t.Errorf("Requests() = %d after only unrouted requests, want 0", got)
	}
}

func TestDeterministicFollowsTheMinute(t *testing.T) {
	t.Parallel()
	s, clock := newServer(t, Config{Mode: Deterministic})

	at := func() string {
		t.Helper()
		rec := get(s, "1000001")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d", rec.Code)
		}
		return rec.Body.String()
	}
	want := func(now time.Time) string {
		f, g := Counts(knownPK, now.Truncate(time.Minute))
		return sampleBody(knownPK, f, g)
	}

	first := at()
	if first != want(testStart) {
		t.Fatalf("body = %s, want %s", first, want(testStart))
	}
	clock.Advance(59 * time.Second)
	if got := at(); got != first {
		t.Errorf("within the minute: body = %s, want unchanged %s", got, first)
	}
	clock.Advance(time.Second)
	second := at()
	if second == first {
		t.Errorf("next minute: body unchanged %s", second)
	}
	if second != want(clock.Now()) {
		t.Errorf("next minute: body = %s, want %s", second, want(clock.Now()))
	}
}

func TestRandomWalk(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{Seed: 42})
	seen := map[[2]int64]bool{}
	for range 100 {
		rec := get(s, "1000001")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d", rec.Code)
		}
		smp := decodeSample(t, rec.Body.Bytes())
		if smp.PK != knownPK || smp.Username != "influencer-1000001" {
			t.Fatalf("identity = %d %q", smp.PK, smp.Username)
		}
		if smp.FollowerCount < 0 || smp.FollowingCount <= 0 {
			t.Fatalf("counts out of range: %+v", smp)
		}
		seen[[2]int64{smp.FollowerCount, smp.FollowingCount}] = true
	}
	if len(seen) < 10 {
		t.Errorf("100 GETs gave only %d distinct values; the walk does not move", len(seen))
	}
}

func TestRandomWalkConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{Seed: 7})
	const workers, perWorker = 8, 300
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				pk := knownPK + int64((w+i)%3) // few pks: maximal contention
				rec := get(s, fmt.Sprint(pk))
				var smp influencer.Sample
				if err := json.Unmarshal(rec.Body.Bytes(), &smp); err != nil || rec.Code != http.StatusOK {
					errs <- fmt.Errorf("status %d body %q: %w", rec.Code, rec.Body, err)
					return
				}
				if smp.PK != pk || smp.FollowerCount < 0 || smp.FollowingCount <= 0 {
					errs <- fmt.Errorf("bad sample %+v", smp)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Requests(); got != workers*perWorker {
		t.Errorf("Requests() = %d, want %d", got, workers*perWorker)
	}
}

func TestRandomWalkStartDependsOnSeed(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t, Config{Seed: 1})
	b, _ := newServer(t, Config{Seed: 2})
	differ := 0
	for pk := int64(knownPK); pk < knownPK+20; pk++ {
		if get(a, fmt.Sprint(pk)).Body.String() != get(b, fmt.Sprint(pk)).Body.String() {
			differ++
		}
	}
	if differ < 15 {
		t.Errorf("only %d of 20 pks start differently under two seeds", differ)
	}
}

func TestMoveStaysInRange(t *testing.T) {
	t.Parallel()
	r := newRNG(1, 1)
	for _, start := range [][2]int64{{0, 1}, {1, 1}, {5, 2}, {walkMaxFollow, followingMask}} {
		f, g := start[0], start[1]
		for range 10_000 {
			f, g = move(f, g, r.next())
			if f < 0 || f > walkMaxFollow || g < 1 || g > followingMask {
				t.Fatalf("from %v: moved to (%d, %d)", start, f, g)
			}
		}
	}
}

func TestKnown(t *testing.T) {
	t.Parallel()
	all, _ := newServer(t, Config{})
	half, _ := newServer(t, Config{UnknownRate: 0.5, Seed: 3})
	unknown := 0
	for pk := testRange.From; pk <= testRange.To; pk++ {
		if !all.Known(pk) {
			t.Fatalf("Known(%d) = false with UnknownRate 0", pk)
		}
		if !half.Known(pk) {
			unknown++
		}
	}
	if n := testRange.To - testRange.From + 1; unknown < int(n)*4/10 || unknown > int(n)*6/10 {
		t.Errorf("UnknownRate 0.5 withheld %d of %d pks", unknown, n)
	}
	if all.Known(testRange.From-1) || all.Known(testRange.To+1) {
		t.Error("Known is true outside the range")
	}
}

// serveCtx GETs pk in-process with the request context ctx.
func serveCtx(ctx context.Context, s *Server, pk string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, pathPrefix+pk, nil))
	return rec
}
