package simulator

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestServiceTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		capacity float64
		want     time.Duration
	}{
		{4800, 208_333 * time.Nanosecond},
		{1, time.Second},
		{0.5, 2 * time.Second},
		{3, 333_333_333 * time.Nanosecond},
		{1e9, time.Nanosecond},
	} {
		if got := serviceTime(tc.capacity); got != tc.want {
			t.Errorf("serviceTime(%v) = %s, want %s", tc.capacity, got, tc.want)
		}
	}
}

// TestQueueReserve checks the slots the virtual-time scheduler hands out for
// arrival patterns: each request is answered when its slot ends, one service
// time after the previous slot or its own arrival, whichever is later.
func TestQueueReserve(t *testing.T) {
	t.Parallel()
	const service = 10 * time.Millisecond
	ms := func(n int) time.Time { return testStart.Add(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		name     string
		arrivals []time.Time
		want     []time.Time // slot ends, in reservation order
	}{
		{"idle server serves at once", []time.Time{ms(0)}, []time.Time{ms(10)}},
		{"simultaneous arrivals queue back to back",
			[]time.Time{ms(0), ms(0), ms(0), ms(0)}, []time.Time{ms(10), ms(20), ms(30), ms(40)}},
		{"arrivals slower than service never queue",
			[]time.Time{ms(0), ms(15), ms(40)}, []time.Time{ms(10), ms(25), ms(50)}},
		{"an arrival during a busy period waits for it",
			[]time.Time{ms(0), ms(0), ms(5), ms(100)}, []time.Time{ms(10), ms(20), ms(30), ms(110)}},
		{"a burst after idling starts from its arrival",
			[]time.Time{ms(0), ms(500), ms(500)}, []time.Time{ms(10), ms(510), ms(520)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := &queue{service: service}
			var got []time.Time
			for _, at := range tc.arrivals {
				got = append(got, q.reserve(at))
			}
			if !slices.EqualFunc(got, tc.want, time.Time.Equal) {
				t.Errorf("slot ends = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestQueueCapsThroughput reserves N slots concurrently at one instant, at
// capacity C: the slots are exactly the N consecutive service times after
// now, so the last request is answered N/C after they arrived, and at no
// virtual time t have more than t*C requests been answered.
func TestQueueCapsThroughput(t *testing.T) {
	t.Parallel()
	const n, capacity = 1000, 4800.0
	q := newQueue(capacity, clockwork.NewFakeClockAt(testStart))
	ends := make([]time.Time, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ends[i] = q.reserve(testStart) })
	}
	wg.Wait()
	slices.SortFunc(ends, time.Time.Compare)
	service := serviceTime(capacity)
	for k, end := range ends {
		if want := testStart.Add(time.Duration(k+1) * service); !end.Equal(want) {
			t.Fatalf("slot %d ends at +%s, want +%s", k, end.Sub(testStart), want.Sub(testStart))
		}
	}
	// The N-th answer comes no earlier than N/C, within the rounding of the
	// service time to a nanosecond per request.
	perSecond := capacity
	minTotal := time.Duration(float64(n) / perSecond * float64(time.Second))
	if total := ends[n-1].Sub(testStart); total < minTotal-n*time.Nanosecond {
		t.Errorf("%d requests at %v/s answered within %s, want at least %s", n, capacity, total, minTotal)
	}
	// Completions counted against the virtual clock never exceed t*C (+1 for
	// the request whose slot ends exactly at t).
	for _, t0 := range []time.Duration{0, time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		at := testStart.Add(t0)
		done := 0
		for _, end := range ends {
			if !end.After(at) {
				done++
			}
		}
		if limit := int(t0.Seconds()*capacity) + 1; done > limit {
			t.Errorf("%d answers by +%s, more than capacity allows (%d)", done, t0, limit)
		}
	}
}

// queuedGet starts a GET of pk and returns a channel for its answer; it
// returns once the request waits on the clock (the fake clock has waiters
// timers).
func queuedGet(t *testing.T, ctx context.Context, s *Server, clock *clockwork.FakeClock, pk int64, waiters int) <-chan *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- serveCtx(ctx, s, fmt.Sprint(pk)) }()
	if err := clock.BlockUntilContext(t.Context(), waiters); err != nil {
		t.Fatalf("request for %d never queued: %v", pk, err)
	}
	return done
}

// TestCapacityServesFIFO queues requests one after another at 1 request/s and
// advances the fake clock a second at a time: each second exactly the next
// request in arrival order is answered.
func TestCapacityServesFIFO(t *testing.T) {
	t.Parallel()
	const n = 5
	s, clock := newServer(t, Config{Mode: Deterministic, Capacity: 1})
	var answers []<-chan *httptest.ResponseRecorder
	for i := range n {
		answers = append(answers, queuedGet(t, t.Context(), s, clock, knownPK+int64(i), i+1))
	}
	for i, ch := range answers {
		clock.Advance(time.Second)
		rec := <-ch
		pk := knownPK + int64(i)
		f, g := Counts(pk, clock.Now())
		if rec.Code != http.StatusOK || rec.Body.String() != sampleBody(pk, f, g) {
			t.Errorf("answer %d: status %d body %q", i, rec.Code, rec.Body)
		}
		for j, later := range answers[i+1:] {
			select {
			case rec := <-later:
				t.Fatalf("request %d answered (%d) before request %d's slot", i+1+j, rec.Code, i+1)
			default:
			}
		}
	}
	if got := s.Requests(); got != n {
		t.Errorf("Requests() = %d, want %d", got, n)
	}
}

// TestCapacityQueuesSuspicious puts is_suspicious in the same queue as GETs:
// one process serves both.
func TestCapacityQueuesSuspicious(t *testing.T) {
	t.Parallel()
	s, clock := newServer(t, Config{Capacity: 1, SuspiciousNoDelay: true})
	first := queuedGet(t, t.Context(), s, clock, knownPK, 1)
	post := make(chan *httptest.ResponseRecorder, 1)
	go func() { post <- serve(s, http.MethodPost, suspiciousURL, suspiciousBody(knownPK)) }()
	if err := clock.BlockUntilContext(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if rec := <-first; rec.Code != http.StatusOK {
		t.Fatalf("GET status %d", rec.Code)
	}
	select {
	case rec := <-post:
		t.Fatalf("is_suspicious answered (%d) in the GET's slot", rec.Code)
	default:
	}
	clock.Advance(time.Second)
	rec := <-post
	if want := fmt.Sprintf(`{"pk":%d,"suspicious":%t}`, knownPK, Suspicious(knownPK)); rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Errorf("is_suspicious: status %d body %q, want %s", rec.Code, rec.Body, want)
	}
}

// TestCapacityClientGivesUp: a queued request whose client gives up returns
// at once without an answer and holds nothing while the others wait; its slot
// stays spent (the server had accepted the request), so the request after it
// is answered in its own slot, neither earlier nor later.
func TestCapacityClientGivesUp(t *testing.T) {
	t.Parallel()
	s, clock := newServer(t, Config{Mode: Deterministic, Capacity: 1})
	first := queuedGet(t, t.Context(), s, clock, knownPK, 1)
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := queuedGet(t, ctx, s, clock, knownPK+1, 2)
	cancel()
	if rec := <-gaveUp; rec.Body.Len() != 0 || rec.Code != http.StatusOK || len(rec.Header()) != 0 {
		t.Errorf("cancelled request was answered: %d %q", rec.Code, rec.Body)
	}
	// Its timer is stopped (it returned), so the two waiters are first and third.
	third := queuedGet(t, t.Context(), s, clock, knownPK+2, 2)

	clock.Advance(time.Second)
	if rec := <-first; rec.Code != http.StatusOK {
		t.Fatalf("first: status %d", rec.Code)
	}
	clock.Advance(time.Second) // the cancelled request's slot
	select {
	case rec := <-third:
		t.Fatalf("third answered (%d) in the cancelled request's slot", rec.Code)
	default:
	}
	clock.Advance(time.Second)
	rec := <-third
	f, g := Counts(knownPK+2, clock.Now())
	if rec.Code != http.StatusOK || rec.Body.String() != sampleBody(knownPK+2, f, g) {
		t.Errorf("third: status %d body %q", rec.Code, rec.Body)
	}
	if got := s.Requests(); got != 3 {
		t.Errorf("Requests() = %d, want 3", got)
	}
}

// TestCapacityUnlimitedByDefault: without Capacity nothing waits on the clock.
func TestCapacityUnlimitedByDefault(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Config{Mode: Deterministic})
	if s.queue != nil {
		t.Fatal("queue allocated without Capacity")
	}
	if rec := get(s, fmt.Sprint(knownPK)); rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), `{"pk":`) {
		t.Errorf("status %d body %q", rec.Code, rec.Body)
	}
}
