package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/simulator"
)

// --- the suspicion scheduler ---

const suspicionInterval = 8 * time.Minute // with schedShards (8) shards: one shard a minute

func newSuspicionSchedEnv(t *testing.T, start time.Time, reg *fakeRegistry) (*handlers.SuspicionScheduler, *clockwork.FakeClock, *fakePublisher, context.Context) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(start)
	pub := &fakePublisher{clock: clock}
	s := handlers.NewSuspicionScheduler(reg, pub, clock,
		handlers.SuspicionSchedulerConfig{Shards: schedShards, Interval: suspicionInterval}, discardLogger(), newMetrics())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	wait := waitCtx(t)
	require.NoError(t, clock.BlockUntilContext(wait, 1))
	return s, clock, pub, wait
}

type suspicionScheduled struct {
	task messages.SuspicionTask
	at   time.Time
}

func suspicionTasks(t *testing.T, pub *fakePublisher) []suspicionScheduled {
	t.Helper()
	var out []suspicionScheduled
	for _, p := range pub.published() {
		require.Equal(t, messages.TopicSuspicionTasks, p.topic)
		tk, err := messages.DecodeSuspicionTask(p.msg.Payload)
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(tk.Shard), p.msg.Metadata.Get(messages.MetaShard))
		out = append(out, suspicionScheduled{task: tk, at: p.at})
	}
	return out
}

func expectRound(round time.Time, shards [][]int64, from, to int, publishedAt time.Time) []suspicionScheduled {
	var out []suspicionScheduled
	for s := from; s < to; s++ {
		if len(shards[s]) == 0 {
			continue
		}
		off := time.Duration(s) * suspicionInterval / schedShards
		at := publishedAt
		if at.IsZero() {
			at = round.Add(off)
		}
		out = append(out, suspicionScheduled{at: at, task: messages.SuspicionTask{Round: round, Shard: s,
			Deadline: round.Add(off + suspicionInterval), PKs: shards[s]}})
	}
	return out
}

// Each non-empty shard once per round, at s/shards of the interval, with a
// deadline one interval later (when the next round's task supersedes it).
func TestSuspicionSchedulerSpreadsShardsOverTheRound(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	shards := handlers.Assign(pks, schedShards)
	round := time.Date(2026, 11, 25, 0, 8, 0, 0, time.UTC) // a multiple of 8 minutes
	s, clock, pub, wait := newSuspicionSchedEnv(t, round, &fakeRegistry{version: 1, pks: pks})
	assert.Equal(t, 3*time.Minute, s.Offset(3))
	for range 2*schedShards - 1 { // to the last shard of the second round
		clock.Advance(time.Minute)
		require.NoError(t, clock.BlockUntilContext(wait, 1))
	}
	want := append(expectRound(round, shards, 0, schedShards, time.Time{}),
		expectRound(round.Add(suspicionInterval), shards, 0, schedShards, time.Time{})...)
	assert.Equal(t, want, suspicionTasks(t, pub))
}

// Started (or taking over) mid-round, the shards already due are published
// at once; the checker skips pks answered earlier in the round.
func TestSuspicionSchedulerStartingMidRoundCatchesUp(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	shards := handlers.Assign(pks, schedShards)
	round := time.Date(2026, 11, 25, 0, 8, 0, 0, time.UTC)
	start := round.Add(4*time.Minute + 30*time.Second)
	_, clock, pub, wait := newSuspicionSchedEnv(t, start, &fakeRegistry{version: 1, pks: pks})
	clock.Advance(30 * time.Second)
	require.NoError(t, clock.BlockUntilContext(wait, 1))
	want := append(expectRound(round, shards, 0, 5, start), expectRound(round, shards, 5, 6, time.Time{})...)
	assert.Equal(t, want, suspicionTasks(t, pub))
}

// --- the suspicion checker ---

// fakeSuspicionStore serves candidates from its summaries and records saves.
type fakeSuspicionStore struct {
	mu         sync.Mutex
	candidates map[int64]influencer.SuspicionCandidate
	answered   map[int64]time.Time // last CheckedAt per pk
	saves      [][]influencer.Suspicion
	askedSince []time.Time
	candErr    error
	saveErr    error
}

func newFakeSuspicionStore(pks ...int64) *fakeSuspicionStore {
	s := &fakeSuspicionStore{candidates: map[int64]influencer.SuspicionCandidate{}, answered: map[int64]time.Time{}}
	for _, pk := range pks {
		s.candidates[pk] = influencer.SuspicionCandidate{PK: pk, Username: simulator.Username(pk), FollowerCount: 1000 + pk, FollowingCount: 10 + pk}
	}
	return s
}

func (s *fakeSuspicionStore) SuspicionCandidates(_ context.Context, pks []int64, since time.Time) ([]influencer.SuspicionCandidate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.askedSince = append(s.askedSince, since)
	if s.candErr != nil {
		return nil, s.candErr
	}
	out := []influencer.SuspicionCandidate{}
	for _, pk := range pks {
		c, ok := s.candidates[pk]
		if at, done := s.answered[pk]; ok && (!done || at.Before(since)) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *fakeSuspicionStore) SaveSuspicion(_ context.Context, answers []influencer.Suspicion) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saveErr != nil {
		return s.saveErr
	}
	s.saves = append(s.saves, slices.Clone(answers))
	for _, a := range answers {
		s.answered[a.PK] = a.CheckedAt
	}
	return nil
}

// suspicionAPI answers is_suspicious with fn and records the request bodies.
type suspicionAPI struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	bodies   map[int64]map[string]any
}

func newSuspicionAPI(t *testing.T, fn func(w http.ResponseWriter, pk, n int64)) *suspicionAPI {
	t.Helper()
	a := &suspicionAPI{bodies: map[int64]map[string]any{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/influencers/is_suspicious" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		pk := int64(body["pk"].(float64))
		a.mu.Lock()
		a.bodies[pk] = body
		a.mu.Unlock()
		fn(w, pk, a.requests.Add(1))
	}))
	t.Cleanup(a.Close)
	return a
}

func answer(w http.ResponseWriter, pk int64, suspicious bool) {
	fmt.Fprintf(w, `{"pk":%d,"suspicious":%t}`, pk, suspicious)
}

type suspicionEnv struct {
	checker *handlers.SuspicionChecker
	store   *fakeSuspicionStore
	dlq     *fakePublisher
	clock   clockwork.Clock
	m       *metrics.Pipeline
}

func newSuspicionEnv(t *testing.T, url string, store *fakeSuspicionStore) suspicionEnv {
	t.Helper()
	e := suspicionEnv{store: store, dlq: &fakePublisher{}, clock: clockwork.NewRealClock(), m: newMetrics()}
	api, err := mockstagramapi.New(mockstagramapi.Config{BaseURL: url, Concurrency: 4, Timeout: 2 * time.Second},
		e.clock, discardLogger(), e.m)
	require.NoError(t, err)
	t.Cleanup(api.CloseIdleConnections)
	c, err := handlers.NewSuspicionChecker(handlers.SuspicionConfig{
		Concurrency: 4, Attempts: 3, RetryInitial: time.Millisecond, RetryMax: 4 * time.Millisecond,
	}, api, store, e.dlq, e.clock, discardLogger(), e.m)
	require.NoError(t, err)
	e.checker = c
	return e
}

func suspicionTaskMessage(t *testing.T, tk messages.SuspicionTask) *message.Message {
	t.Helper()
	msg, err := messages.NewSuspicionTask(tk)
	require.NoError(t, err)
	return msg
}

func (e suspicionEnv) task(pks ...int64) messages.SuspicionTask {
	now := e.clock.Now()
	return messages.SuspicionTask{Round: now.Add(-time.Hour), Shard: 2, Deadline: now.Add(time.Hour), PKs: pks}
}

// The candidates' latest values are sent, every answer is stored in one
// batch with the time it was received, and nothing is dead-lettered.
func TestSuspicionCheckerStoresTheAnswers(t *testing.T) {
	t.Parallel()
	api := newSuspicionAPI(t, func(w http.ResponseWriter, pk, _ int64) { answer(w, pk, simulator.Suspicious(pk)) })
	// pk 999 is not a candidate (untracked, no data, or answered this round).
	pks := []int64{}
	for pk := int64(1_000_000); len(pks) < 40; pk++ {
		pks = append(pks, pk)
	}
	store := newFakeSuspicionStore(pks...)
	e := newSuspicionEnv(t, api.URL, store)
	tk := e.task(append([]int64{999}, pks...)...)
	before := time.Now()
	require.NoError(t, e.checker.Handle(suspicionTaskMessage(t, tk)))

	assert.Equal(t, int64(len(pks)), api.requests.Load(), "one request per candidate, none for pk 999")
	require.Len(t, store.saves, 1, "one batch")
	got := store.saves[0]
	require.Len(t, got, len(pks))
	suspicious := 0
	for i, a := range got {
		assert.Equal(t, pks[i], a.PK, "answers by pk")
		assert.Equal(t, simulator.Suspicious(a.PK), a.Suspicious, "pk %d", a.PK)
		assert.WithinRange(t, a.CheckedAt, before, time.Now())
		if a.Suspicious {
			suspicious++
		}
		assert.Equal(t, map[string]any{"pk": float64(a.PK), "username": simulator.Username(a.PK),
			"followerCount": float64(1000 + a.PK), "followingCount": float64(10 + a.PK)}, api.bodies[a.PK])
	}
	require.Len(t, store.askedSince, 1)
	assert.True(t, store.askedSince[0].Equal(tk.Round), "answers of this round are current: asked since %s", store.askedSince[0])
	assert.Empty(t, e.dlq.published())
	assert.Equal(t, float64(suspicious), testutil.ToFloat64(e.m.SuspicionChecks.WithLabelValues("suspicious")))
	assert.Equal(t, float64(len(pks)-suspicious), testutil.ToFloat64(e.m.SuspicionChecks.WithLabelValues("not_suspicious")))

	// Redelivered: every pk was answered in the round, nothing is asked again.
	require.NoError(t, e.checker.Handle(suspicionTaskMessage(t, tk)))
	assert.Equal(t, int64(len(pks)), api.requests.Load())
	assert.Len(t, store.saves, 1)
}

// Failures: permanent ones are not retried; retryable ones are, up to the
// attempts; what still fails is dead-lettered with class, reason and
// attempts, and the other pks' answers are stored.
func TestSuspicionCheckerFailures(t *testing.T) {
	t.Parallel()
	const good = int64(1_000_001)
	for _, tc := range []struct {
		name     string
		respond  func(w http.ResponseWriter, pk, n int64)
		class    string
		reason   string
		attempts int
		stored   bool // the failing pk's answer is stored after all
	}{
		{"unknown pk", func(w http.ResponseWriter, _, _ int64) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error":{"name":"InfluencerNotFoundError"}}`)
		}, mockstagramapi.ClassNotFound, "InfluencerNotFoundError", 1, false},
		{"bad request", func(w http.ResponseWriter, _, _ int64) {
			http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
		}, mockstagramapi.ClassClient, "HTTP 400", 1, false},
		{"malformed body", func(w http.ResponseWriter, _, _ int64) { fmt.Fprint(w, `{"pk":`) }, mockstagramapi.ClassMalformed, "malformed body: unexpected end of JSON input", 1, false},
		{"missing field", func(w http.ResponseWriter, pk, _ int64) { fmt.Fprintf(w, `{"pk":%d}`, pk) }, mockstagramapi.ClassMalformed, "body misses pk or suspicious", 1, false},
		{"wrong pk", func(w http.ResponseWriter, _, _ int64) { answer(w, 7, true) }, mockstagramapi.ClassInvalid, "body is for pk 7, asked for 1000042", 1, false},
		{"oversized body", func(w http.ResponseWriter, _, _ int64) {
			fmt.Fprintf(w, `{"pk":1000042,"suspicious":true,"pad":"%0*d"}`, 5000, 0)
		}, mockstagramapi.ClassOversize, "HTTP 200 body larger than 4096 bytes", 1, false},
		{"always 503", func(w http.ResponseWriter, _, _ int64) { w.WriteHeader(http.StatusServiceUnavailable) }, mockstagramapi.ClassServer, "HTTP 503", 3, false},
		{"429 then an answer", func(w http.ResponseWriter, pk, n int64) {
			if n <= 2 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			answer(w, pk, true)
		}, "", "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var bad atomic.Int64
			api := newSuspicionAPI(t, func(w http.ResponseWriter, pk, _ int64) {
				if pk == good {
					answer(w, pk, false)
					return
				}
				tc.respond(w, pk, bad.Add(1))
			})
			store := newFakeSuspicionStore(good, 1_000_042)
			e := newSuspicionEnv(t, api.URL, store)
			require.NoError(t, e.checker.Handle(suspicionTaskMessage(t, e.task(good, 1_000_042))))

			require.Len(t, store.saves, 1)
			saved := store.saves[0]
			if tc.stored {
				require.Len(t, saved, 2)
				assert.Equal(t, []int64{good, 1_000_042}, []int64{saved[0].PK, saved[1].PK})
				assert.True(t, saved[1].Suspicious)
				assert.Empty(t, e.dlq.published())
				assert.Equal(t, int64(3), bad.Load(), "two 429s, then the answer")
				return
			}
			require.Len(t, saved, 1)
			assert.Equal(t, influencer.Suspicion{PK: good, Suspicious: false, CheckedAt: saved[0].CheckedAt}, saved[0])
			assert.Equal(t, int64(tc.attempts), bad.Load(), "requests for the failing pk")
			dls := pkDeadLetters(t, e.dlq, messages.TopicSuspicionDLQ, messages.HandlerSuspicion)
			require.Len(t, dls, 1)
			assert.Equal(t, int64(1_000_042), dls[0].PK)
			assert.Equal(t, 2, dls[0].Shard)
			assert.Equal(t, tc.class, dls[0].Class)
			assert.Equal(t, tc.reason, dls[0].Reason)
			assert.Equal(t, tc.attempts, dls[0].Attempts)
			assert.Equal(t, float64(1), testutil.ToFloat64(e.m.SuspicionChecks.WithLabelValues(tc.class)))
		})
	}
}

// A task received after its deadline (the next round's task supersedes it)
// is counted and skipped: no store reads, no requests.
func TestSuspicionCheckerSkipsASupersededTask(t *testing.T) {
	t.Parallel()
	api := newSuspicionAPI(t, func(w http.ResponseWriter, pk, _ int64) { answer(w, pk, true) })
	store := newFakeSuspicionStore(1, 2, 3)
	e := newSuspicionEnv(t, api.URL, store)
	now := e.clock.Now()
	tk := messages.SuspicionTask{Round: now.Add(-48 * time.Hour), Shard: 1, Deadline: now.Add(-time.Second), PKs: []int64{1, 2, 3}}
	require.NoError(t, e.checker.Handle(suspicionTaskMessage(t, tk)))
	assert.Zero(t, api.requests.Load())
	assert.Empty(t, store.askedSince)
	assert.Empty(t, store.saves)
	assert.Equal(t, float64(3), testutil.ToFloat64(e.m.SuspicionChecks.WithLabelValues(handlers.ClassExpired)))
}

// Store errors are returned (the router retries, then redelivers); a task
// whose answers could not be saved dead-letters nothing.
func TestSuspicionCheckerStoreErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		candErr, saveErr error
		requests         int64
	}{
		{"candidates", errors.New("connection refused"), nil, 0},
		{"save", nil, errors.New("connection refused"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newSuspicionAPI(t, func(w http.ResponseWriter, pk, _ int64) {
				if pk == 2 {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				answer(w, pk, true)
			})
			store := newFakeSuspicionStore(1, 2)
			store.candErr, store.saveErr = tc.candErr, tc.saveErr
			e := newSuspicionEnv(t, api.URL, store)
			err := e.checker.Handle(suspicionTaskMessage(t, e.task(1, 2)))
			require.Error(t, err)
			assert.ErrorContains(t, err, "connection refused")
			assert.False(t, errors.Is(err, messages.ErrMalformed), "a store error is not permanent")
			assert.Equal(t, tc.requests, api.requests.Load())
			assert.Empty(t, e.dlq.published())
		})
	}
}

func TestSuspicionCheckerRejectsAMalformedTask(t *testing.T) {
	t.Parallel()
	e := newSuspicionEnv(t, "http://127.0.0.1:1", newFakeSuspicionStore())
	for _, payload := range []string{`{`, `{"round":"2026-11-25T00:00:00Z","shard":1,"deadline":"2026-11-24T00:00:00Z","pks":[1]}`,
		`{"round":"2026-11-25T00:00:00Z","shard":1,"deadline":"2026-11-26T00:00:00Z","pks":[-1]}`, `{"unknown":1}`} {
		err := e.checker.Handle(message.NewMessage("x", []byte(payload)))
		assert.ErrorIs(t, err, messages.ErrMalformed, payload)
	}
}

// A suspicion scheduler made from the minute scheduler shares its view of the
// registry: the registry is loaded once per version, and a pk tracked during
// a round is in the next suspicion task of its shard, not only in the next
// round's.
func TestSuspicionSchedulerSharesTheMinuteSchedulersRegistry(t *testing.T) {
	t.Parallel()
	round := time.Date(2026, 11, 25, 0, 8, 0, 0, time.UTC)
	pks := registryPKs()
	reg := &fakeRegistry{version: 1, pks: pks}
	e := newSchedEnv(t, round, reg, 0)
	s := e.s.SuspicionScheduler(handlers.SuspicionSchedulerConfig{Interval: suspicionInterval}, discardLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- e.s.Run(ctx) }()
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			assert.NoError(t, <-done)
		}
	})
	require.NoError(t, e.clock.BlockUntilContext(e.ctx, 2))

	// Shard 3 is empty at first; a pk of shard 3 is tracked during the round.
	added := pkInShard(100, 3)
	reg.set(2, append(slices.Clone(pks), added))
	for range 4 { // to round+4m: shard 3's suspicion task is due at round+3m
		e.clock.Advance(time.Minute)
		require.NoError(t, e.clock.BlockUntilContext(e.ctx, 2))
	}
	_, active := reg.calls()
	assert.Equal(t, 2, active, "the registry is loaded once per version, not once per scheduler")
	var shard3 []int64
	for _, p := range e.pub.published() {
		if p.topic != messages.TopicSuspicionTasks {
			continue
		}
		tk, err := messages.DecodeSuspicionTask(p.msg.Payload)
		require.NoError(t, err)
		if tk.Shard == 3 {
			shard3 = tk.PKs
		}
	}
	assert.Equal(t, []int64{added}, shard3, "shard 3's suspicion task has the pk tracked during the round")
}
