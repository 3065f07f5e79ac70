package bench

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Meter wraps the pipeline's store and counts, per minute of the samples,
// what each commit stored and missed (by class), and when; with a check
// function it also compares every committed sample with the value it must
// have (the deterministic simulator's).
type Meter struct {
	store.Store
	want  int // influencers: a minute is complete when each is stored or missed
	clock clockwork.Clock
	check func(pk int64, minute time.Time) (follower, following int64) // nil: values not checked

	mu      sync.Mutex
	minutes map[int64]*minuteStat // by unix minute (time.Time keys compare locations)
}

type minuteStat struct {
	stored, missed int
	byClass        map[string]int
	checked, wrong int
	completed      time.Time  // zero until every influencer is stored or missed
	commits        []weighted // per commit that stored samples: commit time - end of minute, samples
}

// NewMeter creates a meter for a pipeline of influencers pks.
func NewMeter(influencers int, clock clockwork.Clock) *Meter {
	return &Meter{want: influencers, clock: clock, minutes: map[int64]*minuteStat{}}
}

// CheckValues has the meter compare each sample of a batch that stored
// samples with want(pk, minute).
func (m *Meter) CheckValues(want func(pk int64, minute time.Time) (follower, following int64)) {
	m.check = want
}

// Wrap makes the meter the store of the pipeline, around s (app.WrapStore).
// A store that lends its connection pool (the Postgres store, to the
// Postgres broker) still does through the meter.
func (m *Meter) Wrap(s store.Store) store.Store {
	m.Store = s
	if p, ok := s.(pooler); ok {
		return poolMeter{Meter: m, pooler: p}
	}
	return m
}

// pooler is a store that can lend its connection pool (app's interface).
type pooler interface{ Pool() *pgxpool.Pool }

// poolMeter is a meter around a store with a pool.
type poolMeter struct {
	*Meter
	pooler
}

// Record records through the store, then counts what was committed.
func (m *Meter) Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
	res, err := m.Store.Record(ctx, b)
	if err != nil {
		return res, err
	}
	now := m.clock.Now()
	wrong := 0
	if m.check != nil && res.Inserted > 0 {
		for _, s := range b.Samples {
			if f, g := m.check(s.PK, s.Minute); f != s.FollowerCount || g != s.FollowingCount {
				wrong++
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.minutes[b.Minute.Unix()]
	if st == nil {
		st = &minuteStat{byClass: map[string]int{}}
		m.minutes[b.Minute.Unix()] = st
	}
	st.stored += res.Inserted
	st.missed += res.Missed
	// The store reports how many failures were new, not which: a batch
	// recorded again (redelivery) counts none.
	for i, f := range b.Failures {
		if i >= res.Missed {
			break
		}
		st.byClass[f.Class]++
	}
	if m.check != nil && res.Inserted > 0 {
		st.checked += len(b.Samples)
		st.wrong += wrong
	}
	if res.Inserted > 0 {
		st.commits = append(st.commits, weighted{v: now.Sub(b.Minute.Add(time.Minute)), w: res.Inserted})
	}
	if st.completed.IsZero() && st.stored+st.missed >= m.want {
		st.completed = now
	}
	return res, nil
}

// Complete reports whether every influencer was stored or missed for minute.
func (m *Meter) Complete(minute time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.minutes[minute.Unix()]
	return st != nil && !st.completed.IsZero()
}

// MeterMinute is what a meter counted for one minute, as a child process
// of the benchmark serves it.
type MeterMinute struct {
	Minute    time.Time      `json:"minute"`
	Stored    int            `json:"stored"`
	Missed    int            `json:"missed"`
	ByClass   map[string]int `json:"by_class,omitempty"`
	Checked   int            `json:"checked"` // samples compared with their expected value
	Wrong     int            `json:"wrong"`
	Completed *time.Time     `json:"completed,omitempty"`
	// Commits are [lag in ns after the end of the minute, samples] per commit.
	Commits [][2]int64 `json:"commits"`
}

// Minutes is a copy of every minute counted so far.
func (m *Meter) Minutes() []MeterMinute {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MeterMinute, 0, len(m.minutes))
	for unix, st := range m.minutes {
		mm := MeterMinute{
			Minute: time.Unix(unix, 0).UTC(), Stored: st.stored, Missed: st.missed,
			ByClass: maps.Clone(st.byClass), Checked: st.checked, Wrong: st.wrong,
			Commits: make([][2]int64, len(st.commits)),
		}
		if !st.completed.IsZero() {
			mm.Completed = new(st.completed)
		}
		for i, c := range st.commits {
			mm.Commits[i] = [2]int64{int64(c.v), int64(c.w)}
		}
		out = append(out, mm)
	}
	return out
}
