// Package memory is an in-memory store with the same behaviour as the
// Postgres store, for the zero-setup demo and fast unit tests. It keeps every
// sample it is given (16 bytes each, plus about 260 bytes per pk: see
// BenchmarkFootprint) until Prune drops old days, so it suits demos, tests
// and runs of hours, not days of one million influencers.
package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

var _ store.Store = (*Store)(nil)

// missedKey locates the missed groups of a minute's bucket (see
// store.MissedBucket): a (pk, minute) is missed in at most one group of
// missedKey{minute, store.MissedBucket(pk)}.
type missedKey struct {
	minute int64 // Unix seconds
	bucket int
}

// missedGroup is one recorded group of a batch's failures
// (store.MissedGroup): the pks cost 8 bytes each.
type missedGroup struct {
	class, reason string
	recordedAt    time.Time
	pks           []int64 // ascending
}

// Store is the in-memory store. The zero value is not usable; call New.
//
// Its footprint is one fixed-size record per pk (pkState: registry entry,
// summary, rank membership, suspicion answer) plus 16 bytes per stored
// minute (sample), and an index entry per pk. Rollups are computed on read
// from the timeline; only the buckets of days Prune dropped are kept.
type Store struct {
	clock clockwork.Clock

	mu     sync.RWMutex
	pks    *pkTable
	missed map[missedKey][]*missedGroup
	// missedPerMinute counts missed pks per minute so MissedSince does not
	// walk every group.
	missedPerMinute map[int64]int64
	registryPKs     []int64 // every registry pk, ascending
	version         int64
	bootstrapped    bool
	tracked         int64 // active registry entries

	// Read side, maintained by Record, Track and Untrack.
	rank     *rankIndex          // active influencers with data
	progress map[int64]*progress // per minute (Unix seconds)
	history  []historyEntry      // tracked count after each registry change
	// hourly and daily hold, per pk index, the buckets of pruned minutes,
	// sorted by start.
	hourly map[int32][]rollup
	daily  map[int32][]rollup

	// movers are the lists RecomputeMovers computed, swapped in whole.
	moversMu sync.Mutex
	movers   map[moversKey][]store.Mover
	moversAt map[time.Duration]time.Time

	leaseMu sync.Mutex
	leases  map[string]*lease

	dlMu        sync.Mutex
	deadLetters map[string]store.DeadLetter
}

// New returns an empty store that takes registry and missed timestamps from
// clock.
func New(clock clockwork.Clock) *Store {
	pks := newPKTable()
	return &Store{
		clock:           clock,
		pks:             pks,
		missed:          make(map[missedKey][]*missedGroup),
		missedPerMinute: make(map[int64]int64),
		rank:            newRankIndex(pks),
		progress:        make(map[int64]*progress),
		hourly:          make(map[int32][]rollup),
		daily:           make(map[int32][]rollup),
		movers:          make(map[moversKey][]store.Mover),
		moversAt:        make(map[time.Duration]time.Time),
		leases:          make(map[string]*lease),
		deadLetters:     make(map[string]store.DeadLetter),
	}
}

// Record implements store.Store.
func (s *Store) Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
	if err := ctx.Err(); err != nil {
		return store.RecordResult{}, err
	}
	if err := store.ValidateBatch(b); err != nil {
		return store.RecordResult{}, err
	}
	for _, smp := range b.Samples {
		if m := smp.Minute.Unix() / 60; m < minMinute || m > maxMinute {
			return store.RecordResult{}, fmt.Errorf("%w: pk %d: minute %s out of range", store.ErrInvalid, smp.PK, smp.Minute)
		}
	}
	now := s.clock.Now()

	s.mu.Lock()
	defer s.mu.Unlock()

	var res store.RecordResult
	for _, smp := range b.Samples {
		m := smp.Minute.Unix() / 60
		i, st := s.pks.get(smp.PK)
		pos, found := st.find(m)
		if found {
			res.Duplicates++
			continue
		}
		st.timeline = slices.Insert(st.timeline, pos, packSample(m, smp.FollowerCount, smp.FollowingCount))
		res.Inserted++

		first := !st.hasData
		st.hasData = true
		st.samples++
		st.followerSum += smp.FollowerCount
		if first || m > st.lastMinute {
			if st.username != smp.Username {
				// A copy: the sample's string may share a large decoded
				// response.
				st.username = strings.Clone(smp.Username)
			}
			s.rank.setCount(i, smp.FollowerCount)
			st.following = smp.FollowingCount
			st.lastMinute = m
		}
		if st.active && !st.inRank {
			s.rank.add(i)
		}
		sec := m * 60
		s.addProgress(sec, 1, 0)
		if s.removeMissed(smp.PK, sec) {
			s.addProgress(sec, 0, -1)
		}
	}
	for _, g := range store.GroupFailures(b.Failures) {
		m := g.Minute.Unix()
		k := missedKey{minute: m, bucket: g.Bucket}
		pks := make([]int64, 0, len(g.PKs))
		for _, pk := range g.PKs {
			if s.hasSample(pk, m) {
				continue
			}
			if s.isMissed(k, pk) {
				continue
			}
			pks = append(pks, pk)
		}
		if len(pks) == 0 {
			continue
		}
		s.missed[k] = append(s.missed[k], &missedGroup{class: g.Class, reason: g.Reason, recordedAt: now, pks: slices.Clip(pks)})
		n := int64(len(pks))
		s.missedPerMinute[m] += n
		s.addProgress(m, 0, n)
		res.Missed += len(pks)
	}
	return res, nil
}

// hasSample reports whether a sample is stored for pk at minute (Unix
// seconds, minute-aligned).
func (s *Store) hasSample(pk, minute int64) bool {
	st, ok := s.pks.lookup(pk)
	if !ok {
		return false
	}
	_, found := st.find(floorDiv(minute, 60))
	return found
}

// floorDiv is a/b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// isMissed reports whether pk is missed in one of k's groups.
func (s *Store) isMissed(k missedKey, pk int64) bool {
	for _, g := range s.missed[k] {
		if _, found := slices.BinarySearch(g.pks, pk); found {
			return true
		}
	}
	return false
}

// removeMissed takes pk out of minute's missed groups and reports whether
// it was missed.
func (s *Store) removeMissed(pk, minute int64) bool {
	k := missedKey{minute: minute, bucket: store.MissedBucket(pk)}
	groups := s.missed[k]
	for gi, g := range groups {
		i, found := slices.BinarySearch(g.pks, pk)
		if !found {
			continue
		}
		g.pks = slices.Delete(g.pks, i, i+1)
		if len(g.pks) == 0 {
			groups = slices.Delete(groups, gi, gi+1)
			if len(groups) == 0 {
				delete(s.missed, k)
			} else {
				s.missed[k] = groups
			}
		}
		if s.missedPerMinute[minute]--; s.missedPerMinute[minute] <= 0 {
			delete(s.missedPerMinute, minute)
		}
		return true
	}
	return false
}

// Summary implements store.Store.
func (s *Store) Summary(ctx context.Context, pk int64) (influencer.Summary, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.pks.lookup(pk)
	if !ok || !st.hasData {
		return influencer.Summary{}, fmt.Errorf("summary of pk %d: %w", pk, store.ErrNotFound)
	}
	return influencer.Summary{
		PK:             pk,
		Username:       st.username,
		FollowerCount:  st.follower,
		FollowingCount: st.following,
		LastMinute:     minuteTime(st.lastMinute),
		Samples:        st.samples,
		FollowerSum:    st.followerSum,
		Suspicion:      st.suspicion(),
	}, nil
}

// Timeline implements store.Store.
func (s *Store) Timeline(ctx context.Context, pk int64, from, to time.Time, limit int) ([]influencer.Point, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("timeline of pk %d: %w: limit %d is not positive", pk, store.ErrInvalid, limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.pks.lookup(pk)
	if !ok {
		return []influencer.Point{}, nil
	}
	tl := st.timeline
	i, _ := st.find(ceilMinute(from))
	hi := ceilMinute(to)
	out := make([]influencer.Point, 0, min(limit, len(tl)-i))
	for ; i < len(tl) && tl[i].minute() < hi && len(out) < limit; i++ {
		out = append(out, tl[i].point())
	}
	return out, nil
}

// ceilUnix is t in Unix seconds, rounded up: minute keys are whole seconds,
// so key >= t exactly when key >= ceilUnix(t).
func ceilUnix(t time.Time) int64 {
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return u
}

// MissedSince implements store.Store.
func (s *Store) MissedSince(ctx context.Context, since time.Time) (int64, error) {
	lo := ceilUnix(since)
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for m, c := range s.missedPerMinute {
		if m >= lo {
			n += c
		}
	}
	return n, nil
}

// Track implements store.Store.
func (s *Store) Track(ctx context.Context, pks []int64) (int, error) {
	if err := store.ValidatePKs(pks); err != nil {
		return 0, fmt.Errorf("track: %w", err)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trackLocked(pks, now), nil
}

func (s *Store) trackLocked(pks []int64, now time.Time) int {
	s.pks.reserve(len(pks))
	at := now.UnixMicro()
	changed := 0
	var added []int64
	for _, pk := range pks {
		i, st := s.pks.get(pk)
		switch {
		case !st.registered:
			st.registered = true
			added = append(added, pk)
		case st.active:
			continue
		}
		st.active, st.updatedAt = true, at
		if st.hasData && !st.inRank {
			s.rank.add(i)
		}
		changed++
	}
	if len(added) > 0 {
		slices.Sort(added)
		s.registryPKs = mergeSorted(s.registryPKs, added)
	}
	s.registryChanged(int64(changed), now)
	return changed
}

// registryChanged bumps the version and records the new tracked count after
// delta pks changed state (none: nothing happens).
func (s *Store) registryChanged(delta int64, now time.Time) {
	if delta == 0 {
		return
	}
	s.version++
	s.tracked += delta
	s.history = append(s.history, historyEntry{at: now, tracked: s.tracked})
}

// mergeSorted merges two ascending slices of distinct values.
func mergeSorted(a, b []int64) []int64 {
	if len(a) == 0 || b[0] > a[len(a)-1] {
		return append(a, b...)
	}
	out := make([]int64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] < b[j] {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// Untrack implements store.Store.
func (s *Store) Untrack(ctx context.Context, pks []int64) (int, error) {
	if err := store.ValidatePKs(pks); err != nil {
		return 0, fmt.Errorf("untrack: %w", err)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	at := now.UnixMicro()
	changed := 0
	for _, pk := range pks {
		i, ok := s.pks.index[pk]
		if !ok {
			continue
		}
		if st := s.pks.at(i); st.registered && st.active {
			st.active, st.updatedAt = false, at
			s.rank.remove(i)
			changed++
		}
	}
	s.registryChanged(-int64(changed), now)
	return changed, nil
}

// Bootstrap implements store.Store.
func (s *Store) Bootstrap(ctx context.Context, pks []int64) (bool, error) {
	if err := store.ValidatePKs(pks); err != nil {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bootstrapped {
		return false, nil
	}
	s.bootstrapped = true
	s.trackLocked(pks, now)
	return true, nil
}

// Tracked implements store.Store.
func (s *Store) Tracked(ctx context.Context, after int64, limit int) ([]influencer.Tracked, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("tracked: %w: limit %d is not positive", store.ErrInvalid, limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, found := slices.BinarySearch(s.registryPKs, after)
	if found {
		i++
	}
	out := make([]influencer.Tracked, 0, min(limit, len(s.registryPKs)-i))
	for ; i < len(s.registryPKs) && len(out) < limit; i++ {
		st, _ := s.pks.lookup(s.registryPKs[i])
		out = append(out, influencer.Tracked{
			PK:        st.pk,
			Username:  st.username,
			Active:    st.active,
			UpdatedAt: time.UnixMicro(st.updatedAt).UTC(),
		})
	}
	return out, nil
}

// ActivePKs implements store.Store.
func (s *Store) ActivePKs(ctx context.Context) ([]int64, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]int64, 0, s.tracked)
	for _, pk := range s.registryPKs {
		if st, _ := s.pks.lookup(pk); st.active {
			out = append(out, pk)
		}
	}
	return out, s.version, nil
}

// RegistryVersion implements store.Store.
func (s *Store) RegistryVersion(ctx context.Context) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version, nil
}

// Ping implements store.Store; memory is always reachable.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

// TryLead implements store.Store with a process-local lock per name. A
// lease is never lost; Release closes Lost and frees the name.
func (s *Store) TryLead(ctx context.Context, name string) (store.Lease, bool, error) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if _, held := s.leases[name]; held {
		return nil, false, nil
	}
	l := &lease{store: s, name: name, lost: make(chan struct{})}
	s.leases[name] = l
	return l, true, nil
}

type lease struct {
	store *Store
	name  string
	lost  chan struct{}
	once  sync.Once
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) Release(ctx context.Context) error {
	l.once.Do(func() {
		l.store.leaseMu.Lock()
		defer l.store.leaseMu.Unlock()
		if l.store.leases[l.name] == l {
			delete(l.store.leases, l.name)
		}
		close(l.lost)
	})
	return nil
}
