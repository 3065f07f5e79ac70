package simulator

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestMaxInFlight sends more GETs than slots, each holding its slot for one
// second of fake time, and advances the clock while any is waiting: no more
// than MaxInFlight are ever inside the handler, and all are eventually served.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	const slots, requests = 2, 7
	s, clock := newServer(t, Config{MaxInFlight: slots, Latency: time.Second})

	var wg sync.WaitGroup
	codes := make(chan int, requests)
	for range requests {
		wg.Go(func() { codes <- get(s, "1000001").Code })
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	// Both slots fill up.
	if err := clock.BlockUntilContext(t.Context(), slots); err != nil {
		t.Fatal(err)
	}
	if got := s.inFlight.Load(); got != slots {
		t.Fatalf("in flight = %d with all slots taken, want %d", got, slots)
	}

	// Keep advancing while someone holds a slot, until every request is served.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { <-allDone; cancel() }()
	advances := 0
	for clock.BlockUntilContext(ctx, 1) == nil {
		clock.Advance(time.Second)
		advances++
	}
	<-allDone
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("status = %d, want 200", code)
		}
	}
	if peak := s.peakSlots.Load(); peak != slots {
		t.Errorf("peak in flight = %d, want %d", peak, slots)
	}
	// Queued requests are served a second apart at best: ceil(7/2) rounds.
	if minAdvances := (requests + slots - 1) / slots; advances < minAdvances {
		t.Errorf("served %d requests in %d seconds with %d slots", requests, advances, slots)
	}
	if got := s.inFlight.Load(); got != 0 {
		t.Errorf("in flight = %d after all answers", got)
	}
}

func TestMaxInFlightQueuedRequestGivesUp(t *testing.T) {
	t.Parallel()
	s, clock := newServer(t, Config{MaxInFlight: 1, Latency: time.Second})
	first := make(chan int)
	go func() { first <- get(s, "1000001").Code }()
	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}

	// A second request queues for the slot; its client gives up.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rec := serveCtx(ctx, s, "1000001")
	if rec.Body.Len() != 0 {
		t.Errorf("queued request was answered %q after its client gave up", rec.Body)
	}

	clock.Advance(time.Second)
	if code := <-first; code != http.StatusOK {
		t.Errorf("first request status %d", code)
	}
}
