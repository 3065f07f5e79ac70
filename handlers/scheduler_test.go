package handlers_test

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
)

const (
	schedShards = 8
	schedSpread = 40 * time.Second // shard s at s*5s
	schedGrace  = 10 * time.Second
	schedStep   = 5 * time.Second
)

// fakeRegistry is a registry whose content and version the test changes.
type fakeRegistry struct {
	mu           sync.Mutex
	version      int64
	pks          []int64
	versionErrs  int // fail this many RegistryVersion calls
	versionCalls int
	activeCalls  int
}

var _ handlers.RegistryReader = (*fakeRegistry)(nil)

func (r *fakeRegistry) ActivePKs(context.Context) ([]int64, int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.activeCalls++
	return slices.Clone(r.pks), r.version, nil
}

func (r *fakeRegistry) RegistryVersion(context.Context) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.versionCalls++
	if r.versionErrs > 0 {
		r.versionErrs--
		return 0, errors.New("registry down")
	}
	return r.version, nil
}

func (r *fakeRegistry) set(version int64, pks []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version, r.pks = version, pks
}

func (r *fakeRegistry) calls() (version, active int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.versionCalls, r.activeCalls
}

// schedEnv runs a scheduler on a fake clock until the test ends.
type schedEnv struct {
	ctx   context.Context
	clock *clockwork.FakeClock
	reg   *fakeRegistry
	pub   *fakePublisher
	m     *metrics.Pipeline
	s     *handlers.Scheduler
}

// newSchedEnv is a scheduler on the regular schedule from its first minute
// on (no start window).
func newSchedEnv(t *testing.T, start time.Time, reg *fakeRegistry, failN int) *schedEnv {
	t.Helper()
	return newSchedEnvWindow(t, start, reg, failN, -1)
}

// newSchedEnvWindow is a scheduler with SchedulerConfig.StartWindow startWindow.
func newSchedEnvWindow(t *testing.T, start time.Time, reg *fakeRegistry, failN int, startWindow time.Duration) *schedEnv {
	t.Helper()
	clock := clockwork.NewFakeClockAt(start)
	e := &schedEnv{ctx: waitCtx(t), clock: clock, reg: reg, m: newMetrics(),
		pub: &fakePublisher{clock: clock, failN: failN, err: errors.New("broker down")}}
	e.s = handlers.NewScheduler(reg, e.pub, clock,
		handlers.SchedulerConfig{Shards: schedShards, SpreadWindow: schedSpread, DeadlineGrace: schedGrace, StartWindow: startWindow},
		discardLogger(), e.m)
	return e
}

// run starts the scheduler and waits until it is waiting on the clock.
func (e *schedEnv) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	e.settle(t)
}

// settle waits until the scheduler waits on the clock again.
func (e *schedEnv) settle(t *testing.T) {
	t.Helper()
	require.NoError(t, e.clock.BlockUntilContext(e.ctx, 1))
}

// advance moves the clock by d in steps of schedStep, letting the scheduler
// catch up after each.
func (e *schedEnv) advance(t *testing.T, d time.Duration) {
	t.Helper()
	e.advanceBy(t, d, schedStep)
}

// advanceBy moves the clock by d in steps of step.
func (e *schedEnv) advanceBy(t *testing.T, d, step time.Duration) {
	t.Helper()
	for d > 0 {
		step := min(d, step)
		e.clock.Advance(step)
		e.settle(t)
		d -= step
	}
}

// scheduled is a published task and when it was published.
type scheduled struct {
	task messages.Task
	at   time.Time
}

func (e *schedEnv) tasks(t *testing.T) []scheduled {
	t.Helper()
	var out []scheduled
	for _, p := range e.pub.published() {
		require.Equal(t, messages.TopicFetchTasks, p.topic)
		tk, err := messages.DecodeTask(p.msg.Payload)
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(tk.Shard), p.msg.Metadata.Get(messages.MetaShard))
		assert.Equal(t, tk.Minute.Format(time.RFC3339), p.msg.Metadata.Get(messages.MetaMinute))
		out = append(out, scheduled{task: tk, at: p.at})
	}
	return out
}

// offset is the expected publish offset of shard s: s/8 of 40 s.
func offset(s int) time.Duration { return time.Duration(s) * schedStep }

// expectMinute lists the tasks of minute, one per non-empty shard in
// shards[from:to], published at minute+offset (or at the given time when
// publishedAt is not zero).
func expectMinute(minute time.Time, shards [][]int64, from, to int, publishedAt time.Time) []scheduled {
	var out []scheduled
	for s := from; s < to; s++ {
		if len(shards[s]) == 0 {
			continue
		}
		at := publishedAt
		if at.IsZero() {
			at = minute.Add(offset(s))
		}
		out = append(out, scheduled{at: at, task: messages.Task{Minute: minute, Shard: s,
			Deadline: minute.Add(time.Minute + schedGrace), PKs: shards[s]}})
	}
	return out
}

// registryPKs is 1..60 without the pks of shard 3, so that shard 3 is empty.
func registryPKs() []int64 {
	var pks []int64
	for pk := int64(60); pk >= 1; pk-- { // unsorted on purpose
		if influencer.ShardOf(pk, schedShards) != 3 {
			pks = append(pks, pk)
		}
	}
	return pks
}

// pkInShard returns the smallest pk above from that lands in shard.
func pkInShard(from int64, shard int) int64 {
	for pk := from + 1; ; pk++ {
		if influencer.ShardOf(pk, schedShards) == shard {
			return pk
		}
	}
}

func TestSchedulerPublishesEachShardAtItsOffset(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	reg := &fakeRegistry{version: 1, pks: pks}
	e := newSchedEnv(t, minute0, reg, 0)
	shards := handlers.Assign(pks, schedShards)
	require.Empty(t, shards[3])

	e.run(t)
	assert.Equal(t, expectMinute(minute0, shards, 0, 1, time.Time{}), e.tasks(t), "only shard 0 is due at :00")
	e.advance(t, offset(4)-time.Millisecond)
	assert.Equal(t, expectMinute(minute0, shards, 0, 4, time.Time{}), e.tasks(t), "shard 4 is not published before its offset")
	e.advance(t, time.Millisecond)
	assert.Equal(t, expectMinute(minute0, shards, 0, 5, time.Time{}), e.tasks(t))

	// The rest of this minute and the whole next one, without drift.
	e.advance(t, time.Minute-offset(4)+schedSpread)
	want := append(expectMinute(minute0, shards, 0, schedShards, time.Time{}),
		expectMinute(minute0.Add(time.Minute), shards, 0, schedShards, time.Time{})...)
	assert.Equal(t, want, e.tasks(t))

	versionCalls, activeCalls := reg.calls()
	assert.Equal(t, 2, versionCalls, "the version is checked once a minute")
	assert.Equal(t, 1, activeCalls, "an unchanged registry is not reloaded")
	assert.Equal(t, float64(len(want)), testutil.ToFloat64(e.m.TasksPublished))
	assert.Equal(t, 14.0, testutil.ToFloat64(e.m.TasksPublished))
	assert.Equal(t, 0.0, testutil.ToFloat64(e.m.ScheduleFailures))
	assert.Equal(t, float64(len(pks)), testutil.ToFloat64(e.m.RegistrySize))
}

func TestSchedulerPicksUpRegistryChangesAtTheNextMinute(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	reg := &fakeRegistry{version: 1, pks: pks}
	e := newSchedEnv(t, minute0, reg, 0)
	e.run(t)
	e.advance(t, time.Minute+schedStep) // minute 1 has published shards 0 and 1

	newPK := pkInShard(1000, 6)
	changed := append(slices.Clone(pks), newPK)
	reg.set(2, changed)
	e.advance(t, time.Minute) // to minute 2 + 5 s

	minute1, minute2 := minute0.Add(time.Minute), minute0.Add(2*time.Minute)
	before, after := handlers.Assign(pks, schedShards), handlers.Assign(changed, schedShards)
	require.NotEqual(t, before[6], after[6])
	want := expectMinute(minute0, before, 0, schedShards, time.Time{})
	want = append(want, expectMinute(minute1, before, 0, schedShards, time.Time{})...)
	want = append(want, expectMinute(minute2, after, 0, 2, time.Time{})...)
	assert.Equal(t, want, e.tasks(t))

	e.advance(t, schedSpread)
	got := e.tasks(t)
	last := got[len(got)-1]
	assert.Equal(t, scheduled{at: minute2.Add(offset(7)), task: messages.Task{Minute: minute2, Shard: 7,
		Deadline: minute2.Add(time.Minute + schedGrace), PKs: after[7]}}, last)
	assert.Contains(t, got[len(got)-2].task.PKs, newPK, "shard 6 of minute 2 carries the new pk")
	assert.Equal(t, 6, got[len(got)-2].task.Shard)

	versionCalls, activeCalls := reg.calls()
	assert.Equal(t, 3, versionCalls)
	assert.Equal(t, 2, activeCalls)
	assert.Equal(t, float64(len(changed)), testutil.ToFloat64(e.m.RegistrySize))
}

func TestSchedulerStartingMidMinutePublishesDueShardsAtOnce(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	start := minute0.Add(17 * time.Second) // shards 0..3 are due; 3 is empty
	e := newSchedEnv(t, start, &fakeRegistry{version: 1, pks: pks}, 0)
	shards := handlers.Assign(pks, schedShards)

	e.run(t)
	assert.Equal(t, expectMinute(minute0, shards, 0, 4, start), e.tasks(t))

	e.advance(t, 3*time.Second)
	want := append(expectMinute(minute0, shards, 0, 4, start), expectMinute(minute0, shards, 4, 5, time.Time{})...)
	assert.Equal(t, want, e.tasks(t))
	assert.Equal(t, 4.0, testutil.ToFloat64(e.m.TasksPublished))
}

// TestSchedulerStartWindow: the minute a scheduler starts in is published
// whole over the start window (cut to what is left of the spread window),
// each non-empty shard once and before its deadline, so a fresh start does
// not leave the pks of the late shards without data until their offsets;
// the next minute is on the regular schedule.
func TestSchedulerStartWindow(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	shards := handlers.Assign(pks, schedShards)
	for _, tc := range []struct {
		name        string
		startWindow time.Duration // 0: the default
		elapsed     time.Duration // the start, after the minute's start
		width       time.Duration // shard s at start + s/8 of width
	}{
		{"fresh start at :30, default window", 0, 30 * time.Second, handlers.DefaultStartWindow},
		{"at the minute's start", 0, 0, handlers.DefaultStartWindow},
		{"window cut to the rest of the spread window", 0, 38 * time.Second, 2 * time.Second},
		{"past the spread window: at once", 0, 50 * time.Second, 0},
		{"longer window", 20 * time.Second, 30 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := minute0.Add(tc.elapsed)
			e := newSchedEnvWindow(t, start, &fakeRegistry{version: 1, pks: pks}, 0, tc.startWindow)
			e.run(t)
			e.advanceBy(t, minute0.Add(time.Minute).Sub(start)-time.Nanosecond, 125*time.Millisecond)
			first := e.tasks(t)

			var want []scheduled
			for s := range schedShards {
				if len(shards[s]) == 0 {
					continue
				}
				want = append(want, scheduled{at: start.Add(tc.width * time.Duration(s) / schedShards), task: messages.Task{
					Minute: minute0, Shard: s, Deadline: minute0.Add(time.Minute + schedGrace), PKs: shards[s]}})
			}
			assert.Equal(t, want, first, "every non-empty shard of the starting minute once, spread over the start window")
			for _, g := range first {
				assert.False(t, g.at.Before(start), "shard %d published before the start", g.task.Shard)
				assert.True(t, g.at.Before(g.task.Deadline), "shard %d published after its deadline", g.task.Shard)
				assert.False(t, g.at.After(minute0.Add(max(schedSpread, tc.elapsed))), "shard %d published after the spread window", g.task.Shard)
			}

			// The next minute: each shard at its offset.
			e.advanceBy(t, time.Nanosecond, time.Nanosecond)
			e.advance(t, schedSpread)
			want = append(want, expectMinute(minute0.Add(time.Minute), shards, 0, schedShards, time.Time{})...)
			assert.Equal(t, want, e.tasks(t))
			assert.Equal(t, float64(len(want)), testutil.ToFloat64(e.m.TasksPublished))
			assert.Equal(t, 0.0, testutil.ToFloat64(e.m.ScheduleFailures))
		})
	}
}

// A slow broker delays only the publish it is slow on: each shard is still
// published at its offset (the wait counts from after the publish), and the
// next minute starts on its boundary.
func TestSchedulerSlowPublishDoesNotPushTheScheduleBack(t *testing.T) {
	t.Parallel()
	pks := []int64{pkInShard(0, 0), pkInShard(0, 1), pkInShard(0, schedShards-1)}
	e := newSchedEnv(t, minute0, &fakeRegistry{version: 1, pks: pks}, 0)
	e.pub.slow = 3 * time.Second // less than a shard's step (5 s)
	shards := handlers.Assign(pks, schedShards)

	e.run(t) // shard 0 at :00, done at :03
	for e.clock.Now().Before(minute0.Add(time.Minute)) {
		e.advanceBy(t, time.Second, time.Second)
	}
	require.Equal(t, minute0.Add(time.Minute+3*time.Second), e.clock.Now(), "the next minute's shard 0 published on the boundary")
	want := append(expectMinute(minute0, shards, 0, schedShards, time.Time{}),
		expectMinute(minute0.Add(time.Minute), shards, 0, 1, time.Time{})...)
	assert.Equal(t, want, e.tasks(t), "each shard at its offset, the next minute at :00")
}

func TestSchedulerRetriesAFailedPublish(t *testing.T) {
	t.Parallel()
	pks := []int64{pkInShard(0, 0), pkInShard(0, 1)}
	e := newSchedEnv(t, minute0, &fakeRegistry{version: 1, pks: pks}, 1)
	shards := handlers.Assign(pks, schedShards)

	e.run(t)
	assert.Empty(t, e.tasks(t))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.ScheduleFailures))

	e.advance(t, 200*time.Millisecond-time.Nanosecond)
	assert.Empty(t, e.tasks(t))
	e.advance(t, time.Nanosecond)
	retried := expectMinute(minute0, shards, 0, 1, minute0.Add(200*time.Millisecond))
	assert.Equal(t, retried, e.tasks(t))

	e.advance(t, offset(1)-200*time.Millisecond)
	assert.Equal(t, append(retried, expectMinute(minute0, shards, 1, 2, time.Time{})...), e.tasks(t))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.ScheduleFailures))
	assert.Equal(t, 2.0, testutil.ToFloat64(e.m.TasksPublished))
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	assert.Equal(t, 3, e.pub.calls)
}

func TestSchedulerStartsWhileTheRegistryIsDown(t *testing.T) {
	t.Parallel()
	pks := registryPKs()
	reg := &fakeRegistry{version: 1, pks: pks, versionErrs: 1}
	e := newSchedEnv(t, minute0, reg, 0)

	e.run(t)
	e.advance(t, time.Minute-time.Millisecond)
	assert.Empty(t, e.tasks(t), "nothing to publish before the registry is loaded")

	e.advance(t, time.Millisecond)
	shards := handlers.Assign(pks, schedShards)
	assert.Equal(t, expectMinute(minute0.Add(time.Minute), shards, 0, 1, time.Time{}), e.tasks(t))
	versionCalls, activeCalls := reg.calls()
	assert.Equal(t, 2, versionCalls)
	assert.Equal(t, 1, activeCalls)
}

func TestSchedulerRunReturnsWhenCancelled(t *testing.T) {
	t.Parallel()
	e := newSchedEnv(t, minute0.Add(time.Second), &fakeRegistry{version: 1, pks: []int64{1}}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.Run(ctx) }()
	e.settle(t)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-e.ctx.Done():
		t.Fatal("Run did not return after cancel")
	}
}

func TestAssign(t *testing.T) {
	t.Parallel()
	fnvShard := func(pk int64, shards int) int {
		h := fnv.New32a()
		_, _ = h.Write([]byte(strconv.FormatInt(pk, 10)))
		return int(h.Sum32() % uint32(shards))
	}
	var sorted []int64
	for pk := int64(1_000_000); pk < 1_002_000; pk++ {
		sorted = append(sorted, pk)
	}
	shuffled := slices.Clone(sorted)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	for _, n := range []int{1, 7, 64, 1024} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			got := handlers.Assign(shuffled, n)
			require.Len(t, got, n)
			assert.Equal(t, handlers.Assign(sorted, n), got, "independent of input order")
			var all []int64
			for s, pks := range got {
				assert.True(t, slices.IsSorted(pks), "shard %d sorted", s)
				for _, pk := range pks {
					assert.Equal(t, fnvShard(pk, n), s, "pk %d", pk)
				}
				all = append(all, pks...)
			}
			slices.Sort(all)
			assert.Equal(t, sorted, all, "every pk exactly once")
		})
	}
	assert.Equal(t, [][]int64{nil, nil}, handlers.Assign(nil, 2))
}

func TestOffset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		shards int
		spread time.Duration
		shard  int
		want   time.Duration
	}{
		{8, 40 * time.Second, 0, 0},
		{8, 40 * time.Second, 1, 5 * time.Second},
		{8, 40 * time.Second, 7, 35 * time.Second},
		{1024, 45 * time.Second, 512, 22500 * time.Millisecond},
		{1024, 45 * time.Second, 1023, 44956054687 * time.Nanosecond},
		{1, 45 * time.Second, 0, 0},
		{3, 0, 2, 0},
	}
	for _, tt := range tests {
		s := handlers.NewScheduler(&fakeRegistry{}, &fakePublisher{}, clockwork.NewFakeClock(),
			handlers.SchedulerConfig{Shards: tt.shards, SpreadWindow: tt.spread}, discardLogger(), newMetrics())
		assert.Equal(t, tt.want, s.Offset(tt.shard), "shards %d spread %s shard %d", tt.shards, tt.spread, tt.shard)
	}
}
