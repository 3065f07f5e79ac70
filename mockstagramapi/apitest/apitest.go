// Package apitest is a fake Mockstagram API for tests: an httptest server
// that hands each GET of an influencer to a function and counts requests.
// Only _test.go files import it.
package apitest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// Server serves fn under the influencer path and counts the requests.
type Server struct {
	*httptest.Server
	Requests atomic.Int64
}

// New starts a Server whose GET /api/v1/influencers/{pk} calls fn with the
// pk and the request's number (from 1); anything else answers 418. It is
// closed when the test ends.
func New(t testing.TB, fn func(w http.ResponseWriter, r *http.Request, pk int64, n int64)) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.Requests.Add(1)
		raw, ok := strings.CutPrefix(r.URL.Path, "/api/v1/influencers/")
		pk, err := strconv.ParseInt(raw, 10, 64)
		if !ok || err != nil || r.Method != http.MethodGet {
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		fn(w, r, pk, n)
	}))
	t.Cleanup(s.Close)
	return s
}
