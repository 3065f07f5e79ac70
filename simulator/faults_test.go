package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

func isValidSample(rec *httptest.ResponseRecorder) bool {
	var smp influencer.Sample
	return rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &smp) == nil && smp.PK > 0
}

func TestFaultsAtRateOne(t *testing.T) {
	t.Parallel()
	const n = 40
	for _, tc := range []struct {
		name  string
		cfg   Config
		check func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{"error", Config{ErrorRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			switch rec.Code {
			case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable:
			default:
				t.Errorf("status = %d, want 500, 502 or 503", rec.Code)
			}
			if rec.Body.String() == NotFoundBody || rec.Body.Len() == 0 {
				t.Errorf("body = %q, want a non-contract error body", rec.Body)
			}
			var v any
			if json.Unmarshal(rec.Body.Bytes(), &v) == nil {
				t.Errorf("body %q is JSON", rec.Body)
			}
		}},
		{"rate limit", Config{RateLimitRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusTooManyRequests {
				t.Errorf("status = %d, want 429", rec.Code)
			}
			if got := rec.Header().Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After = %q, want 1", got)
			}
		}},
		{"rate limit rounds up", Config{RateLimitRate: 1, RetryAfter: 2500 * time.Millisecond}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := rec.Header().Get("Retry-After"); rec.Code != http.StatusTooManyRequests || got != "3" {
				t.Errorf("status %d Retry-After %q, want 429 and 3", rec.Code, got)
			}
		}},
		{"rate limit at least one second", Config{RateLimitRate: 1, RetryAfter: time.Millisecond}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := rec.Header().Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After = %q, want 1", got)
			}
		}},
		{"malformed", Config{MalformedRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusOK {
				t.Errorf("status = %d, want 200", rec.Code)
			}
			var smp influencer.Sample
			if err := json.Unmarshal(rec.Body.Bytes(), &smp); err == nil {
				t.Errorf("body %q decodes into a sample", rec.Body)
			}
		}},
		{"oversize", Config{OversizeRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusOK || rec.Body.Len() <= 4<<20 {
				t.Errorf("status %d, %d bytes: want 200 and more than 4 MiB", rec.Code, rec.Body.Len())
			}
		}},
		{"huge header", Config{HugeHeaderRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusOK || len(rec.Header().Get("X-Padding")) < HugeHeaderBytes {
				t.Errorf("status %d, header %d bytes: want 200 and at least %d", rec.Code, len(rec.Header().Get("X-Padding")), HugeHeaderBytes)
			}
			var smp influencer.Sample
			if err := json.Unmarshal(rec.Body.Bytes(), &smp); err != nil || smp.PK != 1000001 {
				t.Errorf("body %q: want the sample of 1000001 (%v)", rec.Body, err)
			}
		}},
		{"absurd retry-after", Config{AbsurdRetryAfterRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != AbsurdRetryAfter {
				t.Errorf("status %d, Retry-After %q: want 429 and %s", rec.Code, rec.Header().Get("Retry-After"), AbsurdRetryAfter)
			}
		}},
		{"unknown", Config{UnknownRate: 1}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusInternalServerError || rec.Body.String() != NotFoundBody {
				t.Errorf("status %d body %q, want the not-found answer", rec.Code, rec.Body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newServer(t, tc.cfg)
			count := n
			if tc.cfg.OversizeRate > 0 || tc.cfg.HugeHeaderRate > 0 {
				count = 3
			}
			for i := range count {
				tc.check(t, get(s, "1000001"))
				if i == 0 && t.Failed() {
					return
				}
			}
		})
	}
}

func TestServerErrorsUseSeveralStatuses(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{ErrorRate: 1})
	statuses := map[int]bool{}
	for range 60 {
		statuses[get(s, "1000001").Code] = true
	}
	if len(statuses) != 3 {
		t.Errorf("statuses %v, want 500, 502 and 503", statuses)
	}
}

// TestFaultRates checks that a fault at rate r hits about r of the GETs and
// that no other fault (all at rate 0) ever appears.
func TestFaultRates(t *testing.T) {
	t.Parallel()
	const n = 2000
	for _, tc := range []struct {
		name    string
		cfg     Config
		isFault func(*httptest.ResponseRecorder) bool
	}{
		{"none", Config{}, func(*httptest.ResponseRecorder) bool { return false }},
		{"error", Config{ErrorRate: 0.1}, func(r *httptest.ResponseRecorder) bool { return r.Code >= 500 && r.Body.String() != NotFoundBody }},
		{"rate limit", Config{RateLimitRate: 0.1}, func(r *httptest.ResponseRecorder) bool { return r.Code == http.StatusTooManyRequests }},
		{"malformed", Config{MalformedRate: 0.1}, func(r *httptest.ResponseRecorder) bool { return r.Code == http.StatusOK && !isValidSample(r) }},
		{"unknown", Config{UnknownRate: 0.1}, func(r *httptest.ResponseRecorder) bool { return r.Body.String() == NotFoundBody }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newServer(t, tc.cfg)
			faults := 0
			for i := range n {
				rec := get(s, itoa(testRange.From+int64(i)))
				switch {
				case tc.isFault(rec):
					faults++
				case !isValidSample(rec):
					t.Fatalf("request %d: unexpected answer %d %q", i, rec.Code, rec.Body)
				}
			}
			want := 0.0
			for _, r := range []float64{tc.cfg.ErrorRate, tc.cfg.RateLimitRate, tc.cfg.MalformedRate, tc.cfg.UnknownRate} {
				want += r
			}
			if got := float64(faults) / n; got < want*0.7 || got > want*1.3+0.001 {
				t.Errorf("fault fraction %.3f, want about %.3f", got, want)
			}
		})
	}
}

func TestTimeoutHangsUntilTheClientGivesUp(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{TimeoutRate: 1})
	ts := httptest.NewServer(s)
	defer ts.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+pathPrefix+"1000001", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want the request to hang until its deadline", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the client's deadline", err)
	}
}

func TestTimeoutReturnsWhenTheRequestIsCancelled(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{TimeoutRate: 1})
	ctx, cancel := context.WithCancel(t.Context())
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, pathPrefix+"1000001", nil))
	}()
	cancel()
	<-done
	if rec.Body.Len() != 0 {
		t.Errorf("a timed-out request was answered: %q", rec.Body)
	}
}

func TestLatencyUsesTheClock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"base", Config{Latency: time.Second}, time.Second},
		{"spike", Config{Latency: time.Second, SpikeRate: 1, SpikeLatency: 5 * time.Second}, 6 * time.Second},
		{"jitter", Config{Latency: time.Second, LatencyJitter: time.Second}, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newServer(t, tc.cfg)
			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- get(s, "1000001") }()
			if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tc.cfg.Latency - time.Nanosecond)
			// The handler's timer is still pending just before the base latency.
			pending, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := clock.BlockUntilContext(pending, 1); err != nil {
				t.Fatalf("timer gone before the base latency: %v", err)
			}
			clock.Advance(tc.want - tc.cfg.Latency + time.Nanosecond)
			if rec := <-done; !isValidSample(rec) {
				t.Errorf("answer %d %q", rec.Code, rec.Body)
			}
		})
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
