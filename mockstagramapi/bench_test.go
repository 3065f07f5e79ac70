package mockstagramapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/mockstagramapi"
)

// BenchmarkInfluencer is one fetch on the hot path (the client's share of
// it, with rate limit and breaker on, against a local server).
func BenchmarkInfluencer(b *testing.B) {
	body := []byte(sampleJSON(7))
	srv := newAPIServer(b, func(w http.ResponseWriter, _ *http.Request, _, _ int64) { _, _ = w.Write(body) })
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
