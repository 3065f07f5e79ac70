package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/memory"
)

const (
	benchInfluencers = 100_000
	benchBatch       = 10_000
)

// benchHandler is the API over a memory store with benchInfluencers tracked
// influencers, each with two stored minutes (recorded in batches of
// benchBatch), follower counts spread over [0, 10M) with some ties.
func benchHandler(b *testing.B) http.Handler {
	b.Helper()
	ctx := context.Background()
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	s := memory.New(clock)
	pks := make([]int64, benchInfluencers)
	for i := range pks {
		pks[i] = int64(1_000_000 + i)
	}
	_, err := s.Track(ctx, pks)
	require.NoError(b, err)
	clock.Advance(time.Minute)
	for m := range 2 {
		minute := start.Add(time.Duration(m+1) * time.Minute)
		for lo := 0; lo < len(pks); lo += benchBatch {
			batch := influencer.Batch{Minute: minute, Shard: lo / benchBatch}
			for _, pk := range pks[lo:min(lo+benchBatch, len(pks))] {
				batch.Samples = append(batch.Samples, influencer.Sample{PK: pk, Username: "user" + strconv.FormatInt(pk, 10),
					FollowerCount: (pk*2654435761 + int64(m)*pk%1000) % 10_000_000, FollowingCount: pk % 1000,
					Minute: minute, FetchedAt: minute.Add(5 * time.Second)})
			}
			_, err := s.Record(ctx, batch)
			require.NoError(b, err)
		}
	}
	clock.Advance(2*time.Minute + 30*time.Second)
	return httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
}

func BenchmarkInfluencerGET(b *testing.B) {
	h := benchHandler(b)
	paths := make([]string, 1024)
	for i := range paths {
		paths[i] = "/api/v1/influencers/" + strconv.Itoa(1_000_000+(i*7919)%benchInfluencers)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, paths[i%len(paths)], nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		i++
	}
}

func BenchmarkStatsGET(b *testing.B) {
	h := benchHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
