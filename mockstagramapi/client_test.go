package mockstagramapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/mockstagramapi/apitest"
	"github.com/mockstagram/pipeline/simulator"
)

func TestInfluencerReturnsTheValues(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	m := newMetrics()
	c := newClient(t, srv.URL, clockwork.NewFakeClock(), m, nil)

	s, err := c.Influencer(context.Background(), 42, time.Time{})

	require.NoError(t, err)
	assert.Equal(t, influencer.Sample{PK: 42, Username: "influencer-42", FollowerCount: 1200, FollowingCount: 300}, s,
		"no minute and no fetch time: the caller sets them")
	assert.Equal(t, 1, testutil.CollectAndCount(m.FetchDuration), "one request observed")
}

// Every answer the API may give is classified: the class and reason are
// stored with missed pks and dead letters; Retryable decides the retries.
func TestInfluencerClassifiesFailures(t *testing.T) {
	t.Parallel()
	const pk = 7
	long := strings.Repeat("a", influencer.MaxUsernameLength+1)
	tests := []struct {
		name         string
		status       int
		header       string // Retry-After
		body         string
		want         mockstagramapi.Error
		reasonPrefix bool // want.Reason is a prefix
	}{
		{"malformed json", 200, "", `{"pk":7,"username":`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"not an object", 200, "", `[1,2,3]`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"trailing garbage", 200, "", sampleJSON(pk) + `}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"html", 200, "", `<html>oops</html>`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"count as string", 200, "", `{"pk":7,"username":"u","followerCount":"12","followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"pk as string", 200, "", `{"pk":"7","username":"u","followerCount":12,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"fractional count", 200, "", `{"pk":7,"username":"u","followerCount":12.5,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"count overflows", 200, "", `{"pk":7,"username":"u","followerCount":1e400,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"NaN count", 200, "", `{"pk":7,"username":"u","followerCount":"NaN","followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "malformed body: "}, true},
		{"missing field", 200, "", `{"pk":7,"username":"u","followerCount":12}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "body misses [followingCount]"}, false},
		{"null field", 200, "", `{"pk":7,"username":null,"followerCount":12,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "body misses [username]"}, false},
		{"empty object", 200, "", `{}`, mockstagramapi.Error{Class: mockstagramapi.ClassMalformed, Reason: "body misses [pk username followerCount followingCount]"}, false},
		{"negative count", 200, "", `{"pk":7,"username":"u","followerCount":-5,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "followerCount -5 out of range [0, 10000000000]"}, false},
		{"absurd count", 200, "", `{"pk":7,"username":"u","followerCount":12,"followingCount":10000000001}`, mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "followingCount 10000000001 out of range [0, 10000000000]"}, false},
		{"pk mismatch", 200, "", sampleJSON(8), mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "body is for pk 8, asked for 7"}, false},
		{"control chars in username", 200, "", `{"pk":7,"username":"evil\u0007\n","followerCount":12,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "username contains control characters"}, false},
		{"empty username", 200, "", `{"pk":7,"username":"","followerCount":12,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "username is empty"}, false},
		{"overlong username", 200, "", `{"pk":7,"username":"` + long + `","followerCount":12,"followingCount":3}`, mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "username longer than 64 bytes"}, false},
		{"oversize body", 200, "", `{"pk":7,"username":"u","followerCount":12,"followingCount":3,"pad":"` + strings.Repeat("x", 1100) + `"}`, mockstagramapi.Error{Class: mockstagramapi.ClassOversize, Reason: "HTTP 200 body larger than 1024 bytes"}, false},
		{"oversize 5xx body", 503, "", strings.Repeat("x", 2048), mockstagramapi.Error{Class: mockstagramapi.ClassOversize, Reason: "HTTP 503 body larger than 1024 bytes"}, false},
		{"not found with 500", 500, "", simulator.NotFoundBody, mockstagramapi.Error{Class: mockstagramapi.ClassNotFound, Reason: "InfluencerNotFoundError"}, false},
		{"not found with 404", 404, "", simulator.NotFoundBody, mockstagramapi.Error{Class: mockstagramapi.ClassNotFound, Reason: "InfluencerNotFoundError"}, false},
		{"plain 404", 404, "", "no such route", mockstagramapi.Error{Class: mockstagramapi.ClassClient, Reason: "HTTP 404"}, false},
		{"400", 400, "", `{"error":{"name":"ValidationError"}}`, mockstagramapi.Error{Class: mockstagramapi.ClassClient, Reason: "HTTP 400"}, false},
		{"500", 500, "", "<html>busy</html>", mockstagramapi.Error{Class: mockstagramapi.ClassServer, Reason: "HTTP 500", Retryable: true}, false},
		{"503", 503, "", "", mockstagramapi.Error{Class: mockstagramapi.ClassServer, Reason: "HTTP 503", Retryable: true}, false},
		{"429", 429, "", "", mockstagramapi.Error{Class: mockstagramapi.ClassRateLimited, Reason: "HTTP 429", Retryable: true}, false},
		{"429 with Retry-After", 429, "2", "", mockstagramapi.Error{Class: mockstagramapi.ClassRateLimited, Reason: "HTTP 429", Retryable: true, RetryAfter: 2 * time.Second}, false},
		// Clamped before it becomes a Duration: 99999999999999999 s would
		// overflow to a negative wait.
		{"429 with a huge Retry-After", 429, "99999999999999999", "", mockstagramapi.Error{Class: mockstagramapi.ClassRateLimited, Reason: "HTTP 429", Retryable: true, RetryAfter: time.Minute}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, _, _ int64) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := newClient(t, srv.URL, clockwork.NewFakeClock(), newMetrics(), func(c *mockstagramapi.Config) { c.MaxBody = 1024 })

			s, err := c.Influencer(context.Background(), pk, time.Time{})

			assert.Equal(t, influencer.Sample{}, s)
			got := *apiError(t, err)
			if tt.reasonPrefix {
				assert.True(t, strings.HasPrefix(got.Reason, tt.want.Reason), "reason %q", got.Reason)
				assert.Greater(t, len(got.Reason), len(tt.want.Reason), "reason %q", got.Reason)
				got.Reason = tt.want.Reason
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, int64(1), srv.Requests.Load())
		})
	}
}

func TestInfluencerTransportFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connection refused
	hang := apitest.New(t, func(_ http.ResponseWriter, r *http.Request, _, _ int64) { <-r.Context().Done() })

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, closedURL, clockwork.NewFakeClock(), newMetrics(), nil)
		_, err := c.Influencer(context.Background(), 7, time.Time{})
		e := apiError(t, err)
		assert.Equal(t, mockstagramapi.ClassConnection, e.Class)
		assert.Contains(t, e.Reason, "connection refused")
		assert.True(t, e.Retryable)
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, hang.URL, clockwork.NewFakeClock(), newMetrics(), func(c *mockstagramapi.Config) { c.Timeout = 50 * time.Millisecond })
		_, err := c.Influencer(context.Background(), 7, time.Time{})
		assert.Equal(t, mockstagramapi.Error{Class: mockstagramapi.ClassTimeout, Reason: "request timed out", Retryable: true}, *apiError(t, err))
	})
}

// Answers with headers over MaxResponseHeaderBytes are refused for good
// (the connection is dropped, nothing is read into memory).
func TestInfluencerLimitsTheResponseHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header int // bytes of one header's value
		want   *mockstagramapi.Error
	}{
		{"8 KiB", 8 << 10, nil},
		{"20 KiB", 20 << 10, &mockstagramapi.Error{Class: mockstagramapi.ClassOversize, Reason: "response headers larger than 16384 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
				w.Header().Set("X-Padding", strings.Repeat("p", tt.header))
				_, _ = w.Write([]byte(sampleJSON(pk)))
			})
			c := newClient(t, srv.URL, clockwork.NewFakeClock(), newMetrics(), nil)

			s, err := c.Influencer(context.Background(), 7, time.Time{})

			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, int64(7), s.PK)
				return
			}
			assert.Equal(t, *tt.want, *apiError(t, err))
			assert.Equal(t, int64(1), srv.Requests.Load())
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"2", 2 * time.Second},
		{"60", time.Minute},
		{"61", time.Minute},
		{"99999999999999999", time.Minute},   // overflows a Duration when multiplied
		{"9223372036854775807", time.Minute}, // MaxInt64
		{"99999999999999999999999999999", time.Minute}, // beyond uint64
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(2 * time.Hour).Format(http.TimeFormat), time.Minute},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, mockstagramapi.ParseRetryAfter(tt.value, now), "Retry-After: %q", tt.value)
	}
}

func TestInfluencerCallsOnlyTheConfiguredURL(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		calls []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		pk, _ := strconv.ParseInt(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:], 10, 64)
		_, _ = w.Write([]byte(sampleJSON(pk)))
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		base string
		want []string
	}{
		{srv.URL, []string{"GET /api/v1/influencers/12", "GET /api/v1/influencers/34"}},
		{srv.URL + "/", []string{"GET /api/v1/influencers/12", "GET /api/v1/influencers/34"}},
		{srv.URL + "/mock//", []string{"GET /mock/api/v1/influencers/12", "GET /mock/api/v1/influencers/34"}},
		{srv.URL + "/mock?token=x#frag", []string{"GET /mock/api/v1/influencers/12", "GET /mock/api/v1/influencers/34"}},
	}
	for _, tt := range tests {
		t.Run(tt.base, func(t *testing.T) {
			mu.Lock()
			calls = nil
			mu.Unlock()
			c := newClient(t, tt.base, clockwork.NewFakeClock(), newMetrics(), nil)

			for _, pk := range []int64{34, 12} {
				s, err := c.Influencer(context.Background(), pk, time.Time{})
				require.NoError(t, err)
				assert.Equal(t, pk, s.PK)
			}
			mu.Lock()
			defer mu.Unlock()
			assert.ElementsMatch(t, tt.want, calls)
		})
	}
}

func TestInfluencerDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	other := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	srv := apitest.New(t, func(w http.ResponseWriter, r *http.Request, _, _ int64) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	})
	c := newClient(t, srv.URL, clockwork.NewFakeClock(), newMetrics(), nil)

	_, err := c.Influencer(context.Background(), 7, time.Time{})

	assert.Equal(t, mockstagramapi.Error{Class: mockstagramapi.ClassClient, Reason: "HTTP 302"}, *apiError(t, err))
	assert.Equal(t, int64(1), srv.Requests.Load())
	assert.Equal(t, int64(0), other.Requests.Load())
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ok := mockstagramapi.Config{BaseURL: "http://example.com", Concurrency: 1, Timeout: time.Second}
	with := func(mod func(*mockstagramapi.Config)) mockstagramapi.Config {
		c := ok
		mod(&c)
		return c
	}
	base := func(u string) mockstagramapi.Config { return with(func(c *mockstagramapi.Config) { c.BaseURL = u }) }
	tests := []struct {
		name    string
		cfg     mockstagramapi.Config
		wantErr string
	}{
		{"empty", base(""), `mockstagram API base URL "": want http(s)://host[:port]`},
		{"no scheme", base("localhost:8080"), `mockstagram API base URL "localhost:8080": want http(s)://host[:port]`},
		{"ftp", base("ftp://example.com"), `mockstagram API base URL "ftp://example.com": want http(s)://host[:port]`},
		{"no host", base("http://"), `mockstagram API base URL "http://": want http(s)://host[:port]`},
		{"path only", base("/api"), `mockstagram API base URL "/api": want http(s)://host[:port]`},
		{"unparsable", base("http://[::1"), `mockstagram API base URL "http://[::1": want http(s)://host[:port]`},
		{"zero concurrency", with(func(c *mockstagramapi.Config) { c.Concurrency = 0 }), "mockstagram API concurrency 0 < 1"},
		{"zero timeout", with(func(c *mockstagramapi.Config) { c.Timeout = 0 }), "mockstagram API timeout 0s: want > 0"},
		{"negative rate", with(func(c *mockstagramapi.Config) { c.RateLimit = -1 }), "mockstagram API rate limit -1: want >= 0 (0 = unlimited)"},
		{"breaker without cooldown", with(func(c *mockstagramapi.Config) { c.BreakerFailures = 3 }),
			"mockstagram API breaker 3 failures / cooldown 0s: want failures >= 0 (0 = off) and a positive cooldown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := mockstagramapi.New(tt.cfg, clockwork.NewFakeClock(), discardLogger(), newMetrics())
			require.EqualError(t, err, tt.wantErr)
			assert.Nil(t, c)
		})
	}
}

func TestIsSuspicious(t *testing.T) {
	t.Parallel()
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/mock/api/v1/influencers/is_suspicious" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &got)
		_, _ = w.Write([]byte(`{"pk":5,"suspicious":true}`))
	}))
	t.Cleanup(srv.Close)
	m := newMetrics()
	c := newClient(t, srv.URL+"/mock/", clockwork.NewFakeClock(), m, nil)

	suspicious, err := c.IsSuspicious(context.Background(), influencer.SuspicionCandidate{PK: 5, Username: "five", FollowerCount: 50, FollowingCount: 3})

	require.NoError(t, err)
	assert.True(t, suspicious)
	assert.Equal(t, map[string]any{"pk": 5.0, "username": "five", "followerCount": 50.0, "followingCount": 3.0}, got)
	assert.Equal(t, 1, testutil.CollectAndCount(m.SuspicionDuration))

	_, err = c.IsSuspicious(context.Background(), influencer.SuspicionCandidate{PK: 6, Username: "six"})
	assert.Equal(t, mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "body is for pk 5, asked for 6"}, *apiError(t, err))
}

func TestAsError(t *testing.T) {
	t.Parallel()
	e := &mockstagramapi.Error{Class: mockstagramapi.ClassServer, Reason: "HTTP 503", Retryable: true}
	assert.Same(t, e, mockstagramapi.AsError(e))
	assert.Same(t, e, mockstagramapi.AsError(fmt.Errorf("wrapped: %w", e)))
	assert.Equal(t, mockstagramapi.Error{Class: mockstagramapi.ClassConnection, Reason: "unexpected EOF", Retryable: true},
		*mockstagramapi.AsError(io.ErrUnexpectedEOF), "an unclassified error is a transient connection error")
}

// A user and password in the base URL are sent as basic auth with both
// requests, and no error message shows them (issue 10).
func TestBaseURLCredentialsAreSentAsBasicAuth(t *testing.T) {
	t.Parallel()
	var gets, posts sync.Map // Authorization header -> true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "alice" || pass != "s3cr:et" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			posts.Store(r.Header.Get("Authorization"), true)
			_, _ = w.Write([]byte(`{"pk":5,"suspicious":false}`))
			return
		}
		gets.Store(r.Header.Get("Authorization"), true)
		_, _ = w.Write([]byte(sampleJSON(5)))
	}))
	t.Cleanup(srv.Close)
	withCreds := strings.Replace(srv.URL, "http://", "http://alice:s3cr%3Aet@", 1)
	c := newClient(t, withCreds, clockwork.NewFakeClock(), newMetrics(), nil)

	s, err := c.Influencer(context.Background(), 5, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, int64(5), s.PK)
	_, err = c.IsSuspicious(context.Background(), influencer.SuspicionCandidate{PK: 5, Username: "five"})
	require.NoError(t, err)
	const want = "Basic YWxpY2U6czNjcjpldA==" // alice:s3cr:et
	_, ok := gets.Load(want)
	assert.True(t, ok, "GET sent basic auth")
	_, ok = posts.Load(want)
	assert.True(t, ok, "POST sent basic auth")

	noCreds := newClient(t, srv.URL, clockwork.NewFakeClock(), newMetrics(), nil)
	_, err = noCreds.Influencer(context.Background(), 5, time.Time{})
	assert.Equal(t, mockstagramapi.ClassClient, apiError(t, err).Class, "the server wants the credentials")

	_, err = mockstagramapi.New(mockstagramapi.Config{BaseURL: "ftp://alice:s3cret@host", Concurrency: 1, Timeout: time.Second},
		clockwork.NewFakeClock(), discardLogger(), newMetrics())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.NotContains(t, err.Error(), "alice")
}

func TestWithoutUserinfo(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"http://alice:s3cret@api:3000/mock": "http://api:3000/mock",
		"https://token@api":                 "https://api",
		"http://api:3000":                   "http://api:3000",
		"http://a:b@[::1":                   "http://[::1",
		"http://":                           "http://",
	} {
		assert.Equal(t, want, mockstagramapi.WithoutUserinfo(raw), raw)
	}
}
