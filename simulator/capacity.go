package simulator

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// queue models a single-threaded server (one Node.js process): requests are
// served one at a time, first come first served, each taking a fixed service
// time. It keeps no goroutine and no ticker: it is a virtual-time scheduler.
// A request reserves the next service slot, ending at
// max(now, end of the previous slot) + service, and waits for it with a timer.
//
// A client that gives up stops waiting, but its slot stays spent, as on the
// real server, which has already accepted the request: throughput never
// exceeds 1/service, and an overloaded queue stays long until the offered
// load falls.
type queue struct {
	service time.Duration
	clock   clockwork.Clock

	mu      sync.Mutex
	lastEnd time.Time // end of the last reserved slot
}

// newQueue returns a queue serving capacity requests per second, or nil for
// capacity 0 (unlimited).
func newQueue(capacity float64, clock clockwork.Clock) *queue {
	if capacity <= 0 {
		return nil
	}
	return &queue{service: serviceTime(capacity), clock: clock}
}

// serviceTime is 1/capacity seconds, rounded to the nanosecond, at least 1ns.
func serviceTime(capacity float64) time.Duration {
	return max(time.Duration(math.Round(float64(time.Second)/capacity)), 1)
}

// reserve books the next slot for a request arriving at now and returns when
// that slot ends, which is when the request is answered.
func (q *queue) reserve(now time.Time) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	start := q.lastEnd
	if now.After(start) {
		start = now // idle server: service starts at once
	}
	q.lastEnd = start.Add(q.service)
	return q.lastEnd
}

// wait reserves a slot and waits until it ends or ctx is done; it reports
// whether the request was served.
func (q *queue) wait(ctx context.Context) bool {
	now := q.clock.Now()
	d := q.reserve(now).Sub(now)
	t := q.clock.NewTimer(d)
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}
