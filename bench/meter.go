package bench

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Meter wraps the pipeline's store and counts, per minute of the samples,
// what each commit stored and missed, and when: the figures of a Report.
type Meter struct {
	store.Store
	want  int // influencers: a minute is complete when each is stored or missed
	clock clockwork.Clock

	mu      sync.Mutex
	minutes map[int64]*minuteStat // by unix minute (time.Time keys compare locations)
}

type minuteStat struct {
	stored, missed int
	completed      time.Time  // zero until every influencer is stored or missed
	commits        []weighted // per commit that stored samples: commit time - end of minute, samples
}

// NewMeter creates a meter for a pipeline of influencers pks.
func NewMeter(influencers int, clock clockwork.Clock) *Meter {
	return &Meter{want: influencers, clock: clock, minutes: map[int64]*minuteStat{}}
}

// Wrap makes the meter the store of the pipeline, around s (app.WrapStore).
func (m *Meter) Wrap(s store.Store) store.Store {
	m.Store = s
	return m
}

// Record records through the store, then counts what was committed.
func (m *Meter) Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
	res, err := m.Store.Record(ctx, b)
	if err != nil {
		return res, err
	}
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.minutes[b.Minute.Unix()]
	if st == nil {
		st = &minuteStat{}
		m.minutes[b.Minute.Unix()] = st
	}
	st.stored += res.Inserted
	st.missed += res.Missed
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

// Report is what was counted for the minutes first..last (inclusive).
func (m *Meter) Report(first, last time.Time) Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Report{Influencers: m.want}
	var commits []weighted
	for mi := first; !mi.After(last); mi = mi.Add(time.Minute) {
		st := m.minutes[mi.Unix()]
		if st == nil {
			st = &minuteStat{}
		}
		row := Minute{Minute: mi, Stored: st.stored, Missed: st.missed, NotStored: m.want - st.stored - st.missed}
		if !st.completed.IsZero() {
			row.AllStored, row.AllStoredAfter = true, st.completed.Sub(mi.Add(time.Minute))
		}
		r.Minutes = append(r.Minutes, row)
		commits = append(commits, st.commits...)
	}
	r.FreshnessP50 = weightedQuantile(commits, 0.50)
	r.FreshnessP99 = weightedQuantile(commits, 0.99)
	return r
}
