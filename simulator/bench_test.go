package simulator

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator/loadgen"
)

var benchRange = influencer.Range{From: 1_000_000, To: 1_999_999}

// discardWriter is the cheapest http.ResponseWriter: it keeps the header map
// between requests and drops the body.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

func BenchmarkServeGET(b *testing.B) {
	for _, mode := range []Mode{RandomWalk, Deterministic} {
		b.Run(string(mode), func(b *testing.B) {
			s, err := New(Config{Mode: mode, Range: benchRange}, clockwork.NewRealClock())
			if err != nil {
				b.Fatal(err)
			}
			paths := make([]string, 4096)
			for i := range paths {
				paths[i] = pathPrefix + strconv.FormatInt(benchRange.From+int64(i)*241, 10)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				r := httptest.NewRequest(http.MethodGet, paths[0], nil)
				u := *r.URL
				r.URL = &u
				i := int(next.Add(1)) * 997
				for pb.Next() {
					i++
					u.Path = paths[i%len(paths)]
					s.ServeHTTP(w, r)
					if w.code != http.StatusOK {
						b.Fatalf("status %d", w.code)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "GET/s")
		})
	}
}

// BenchmarkLoopbackGET measures the simulator behind a real TCP loopback
// listener, served by net/http alone or by the lean HTTPServer, driven by the
// plain load generator (64 keep-alive connections). The load generator runs
// in the same process, so ns/op includes the client.
func BenchmarkLoopbackGET(b *testing.B) {
	for _, lean := range []bool{false, true} {
		name := "net-http"
		if lean {
			name = "lean"
		}
		b.Run(name, func(b *testing.B) {
			s, err := New(Config{Mode: Deterministic, Range: benchRange}, clockwork.NewRealClock())
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
			serve, closeSrv := srv.Serve, srv.Close
			if lean {
				h := NewHTTPServer(s, srv)
				serve, closeSrv = h.Serve, h.Close
			}
			done := make(chan error, 1)
			go func() { done <- serve(ln) }()
			defer func() { _ = closeSrv(); <-done }()
			b.ResetTimer()
			res, err := loadgen.Run(b.Context(), loadgen.Config{
				BaseURL: "http://" + ln.Addr().String(), PKs: benchRange, Concurrency: 64, MaxRequests: int64(b.N),
			})
			if err != nil {
				b.Fatal(err)
			}
			if res.OK != int64(b.N) {
				b.Fatalf("result %+v, want %d OK", res, b.N)
			}
			b.ReportMetric(res.PerSecond, "GET/s")
			b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
		})
	}
}
