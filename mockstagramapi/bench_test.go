package mockstagramapi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/mockstagramapi/apitest"
	"github.com/mockstagram/pipeline/simulator"
)

// BenchmarkInfluencer is one fetch on the hot path (the client's share of
// it, with rate limit and breaker on, against a local server).
func BenchmarkInfluencer(b *testing.B) {
	body := []byte(sampleJSON(7))
	srv := apitest.New(b, func(w http.ResponseWriter, _ *http.Request, _, _ int64) { _, _ = w.Write(body) })
	c, err := mockstagramapi.New(mockstagramapi.Config{BaseURL: srv.URL, Concurrency: 4, Timeout: 10 * time.Second,
		RateLimit: 1e9, BreakerFailures: 100, BreakerCooldown: time.Minute}, clockwork.NewRealClock(), discardLogger(), newMetrics())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Influencer(ctx, 7, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// simServer serves the deterministic simulator over its fast HTTP/1.1
// server (the cheapest server at hand: the CPU per request is mostly the
// client's).
func simServer(b *testing.B) string {
	sim, err := simulator.New(simulator.Config{Mode: simulator.Deterministic, Range: influencer.Range{From: 1, To: 1 << 20}}, clockwork.NewRealClock())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := simulator.NewHTTPServer(sim, &http.Server{ReadHeaderTimeout: 5 * time.Second})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.Error(err)
		}
	}()
	b.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// BenchmarkInfluencerParallel is the fetch path's transport under
// concurrency (128 callers, as in the fetcher): process CPU per request,
// client and the simulator's fast server together, in cpu-µs/req.
func BenchmarkInfluencerParallel(b *testing.B) {
	url := simServer(b)
	c, err := mockstagramapi.New(mockstagramapi.Config{BaseURL: url, Concurrency: 128, Timeout: 10 * time.Second,
		BreakerFailures: 100, BreakerCooldown: time.Minute}, clockwork.NewRealClock(), discardLogger(), newMetrics())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	benchParallel(b, func(ctx context.Context, pk int64) error {
		_, err := c.Influencer(ctx, pk, time.Time{})
		return err
	})
}

// BenchmarkNetHTTPParallel is the same GETs with a net/http client set up
// as the client's was before fasthttp (the baseline of the one above).
func BenchmarkNetHTTPParallel(b *testing.B) {
	url := simServer(b) + "/api/v1/influencers/"
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = 128, 128, 128
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	b.Cleanup(hc.CloseIdleConnections)
	benchParallel(b, func(ctx context.Context, pk int64) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+strconv.FormatInt(pk, 10), nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	})
}

func benchParallel(b *testing.B, get func(ctx context.Context, pk int64) error) {
	ctx := context.Background()
	b.SetParallelism(64) // x GOMAXPROCS callers
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		pk := int64(1)
		for pb.Next() {
			if err := get(ctx, pk); err != nil {
				b.Error(err)
				return
			}
			pk = pk%(1<<20) + 1
		}
	})
	b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(b.N)/1000, "cpu-µs/req")
}
