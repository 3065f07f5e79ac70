package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// rankIndex holds the active influencers with data by follower count, with
// the Postgres store's buckets (store.RankBucket): a Fenwick tree of
// member counts per bucket gives the number above a bucket in O(log
// buckets), and the members of one bucket (at most ~0.1 % of counts wide)
// are scanned for the rest. It also keeps the count and the follower total
// for the global average.
type rankIndex struct {
	tree    []int64                 // Fenwick tree over buckets 1..len(tree)-1
	members map[int]map[int64]int64 // bucket -> pk -> follower count
	n       int64                   // members
	total   int64                   // sum of members' follower counts
	top     int                     // highest bucket
}

func newRankIndex() *rankIndex {
	top := store.RankBucket(influencer.MaxCount)
	return &rankIndex{tree: make([]int64, top+1), members: make(map[int]map[int64]int64), top: top}
}

func (r *rankIndex) addTree(b int, d int64) {
	for ; b < len(r.tree); b += b & -b {
		r.tree[b] += d
	}
}

// atMost is the number of members in buckets <= b.
func (r *rankIndex) atMost(b int) int64 {
	var n int64
	for ; b > 0; b -= b & -b {
		n += r.tree[b]
	}
	return n
}

func (r *rankIndex) add(pk, count int64) {
	b := store.RankBucket(count)
	m := r.members[b]
	if m == nil {
		m = make(map[int64]int64)
		r.members[b] = m
	}
	m[pk] = count
	r.addTree(b, 1)
	r.n++
	r.total += count
}

func (r *rankIndex) remove(pk, count int64) {
	b := store.RankBucket(count)
	m := r.members[b]
	if _, ok := m[pk]; !ok {
		return
	}
	delete(m, pk)
	if len(m) == 0 {
		delete(r.members, b)
	}
	r.addTree(b, -1)
	r.n--
	r.total -= count
}

// rank is 1 + the number of members with a count greater than count.
func (r *rankIndex) rank(count int64) int64 {
	b := store.RankBucket(count)
	n := r.n - r.atMost(b)
	for _, c := range r.members[b] {
		if c > count {
			n++
		}
	}
	return n + 1
}

// page lists up to limit members after the cursor in the order count DESC,
// pk ASC, with ranks.
func (r *rankIndex) page(after *store.Cursor, limit int) []store.Ranked {
	type member struct{ pk, count int64 }
	out := make([]store.Ranked, 0, min(int64(limit), r.n))
	b := r.top
	if after != nil {
		b = store.RankBucket(after.FollowerCount)
	}
	var bucket []member
	for ; b > 0 && len(out) < limit; b-- {
		if len(r.members[b]) == 0 {
			continue
		}
		bucket = bucket[:0]
		for pk, c := range r.members[b] {
			if after == nil || c < after.FollowerCount || (c == after.FollowerCount && pk > after.PK) {
				bucket = append(bucket, member{pk, c})
			}
		}
		slices.SortFunc(bucket, func(x, y member) int {
			if c := cmp.Compare(y.count, x.count); c != 0 {
				return c
			}
			return cmp.Compare(x.pk, y.pk)
		})
		for _, m := range bucket {
			if len(out) == limit {
				break
			}
			rank := int64(0)
			if len(out) > 0 && out[len(out)-1].FollowerCount == m.count {
				rank = out[len(out)-1].Rank
			} else {
				rank = r.rank(m.count)
			}
			out = append(out, store.Ranked{Rank: rank, PK: m.pk, FollowerCount: m.count})
		}
	}
	return out
}

// progress counts, for one minute, the samples stored and the (pk, minute)
// pairs recorded as missed; reconciled says Reconcile accounted for it.
type progress struct {
	stored, missed int64
	reconciled     bool
}

// historyEntry is the tracked count in effect from at on.
type historyEntry struct {
	at      time.Time
	tracked int64
}

// rollup is one hourly or daily bucket of a pk; times are Unix seconds.
type rollup struct {
	start                 int64
	n                     int64
	fSum, fMin, fMax      int64
	gSum, gMin, gMax      int64
	last                  int64
	followerL, followingL int64
}

func (r *rollup) add(minute, follower, following int64) {
	if r.n == 0 {
		*r = rollup{start: r.start, fMin: follower, fMax: follower, gMin: following, gMax: following, last: minute - 1}
	}
	r.n++
	r.fSum += follower
	r.gSum += following
	r.fMin, r.fMax = min(r.fMin, follower), max(r.fMax, follower)
	r.gMin, r.gMax = min(r.gMin, following), max(r.gMax, following)
	if minute > r.last {
		r.last, r.followerL, r.followingL = minute, follower, following
	}
}

func (r *rollup) bucket() store.Bucket {
	return store.Bucket{
		Start:         time.Unix(r.start, 0).UTC(),
		Samples:       r.n,
		FollowerAvg:   float64(r.fSum) / float64(r.n),
		FollowerMin:   r.fMin,
		FollowerMax:   r.fMax,
		FollowerLast:  r.followerL,
		FollowingAvg:  float64(r.gSum) / float64(r.n),
		FollowingMin:  r.gMin,
		FollowingMax:  r.gMax,
		FollowingLast: r.followingL,
		LastMinute:    time.Unix(r.last, 0).UTC(),
	}
}

// addRollup folds one stored minute into the pk's buckets of step
// (sorted by start).
func addRollup(buckets []rollup, step time.Duration, minute, follower, following int64) []rollup {
	start := store.BucketStart(time.Unix(minute, 0), step).Unix()
	i, found := slices.BinarySearchFunc(buckets, start, func(r rollup, s int64) int { return cmp.Compare(r.start, s) })
	if !found {
		buckets = slices.Insert(buckets, i, rollup{start: start})
	}
	buckets[i].add(minute, follower, following)
	return buckets
}

func (s *Store) isActive(pk int64) bool {
	e, ok := s.registry[pk]
	return ok && e.active
}

func (s *Store) addProgress(minute, stored, missed int64) {
	p := s.progress[minute]
	if p == nil {
		p = &progress{}
		s.progress[minute] = p
	}
	p.stored += stored
	p.missed += missed
}

// trackedAt is the tracked count in effect at t: the last registry change
// at or before t (0 before the first).
func (s *Store) trackedAt(t time.Time) int64 {
	for i := len(s.history) - 1; i >= 0; i-- {
		if !s.history[i].at.After(t) {
			return s.history[i].tracked
		}
	}
	return 0
}

// Rank implements store.Store.
func (s *Store) Rank(ctx context.Context, pk int64) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sum, ok := s.summary[pk]
	if !ok || !s.isActive(pk) {
		return 0, fmt.Errorf("rank of pk %d: %w", pk, store.ErrNotFound)
	}
	return s.rank.rank(sum.FollowerCount), nil
}

// Leaderboard implements store.Store.
func (s *Store) Leaderboard(ctx context.Context, after *store.Cursor, limit int) ([]store.Ranked, error) {
	if err := store.ValidateLeaderboardLimit(limit); err != nil {
		return nil, fmt.Errorf("leaderboard: %w", err)
	}
	if after != nil && (after.FollowerCount < 0 || after.FollowerCount > influencer.MaxCount) {
		return nil, fmt.Errorf("leaderboard: %w: cursor follower count %d out of range", store.ErrInvalid, after.FollowerCount)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := s.rank.page(after, limit)
	for i := range out {
		sum := s.summary[out[i].PK]
		out[i].Username, out[i].FollowingCount = sum.Username, sum.FollowingCount
	}
	return out, nil
}

// Stats implements store.Store.
func (s *Store) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := store.Stats{Tracked: s.tracked, Influencers: s.rank.n, FollowerTotal: s.rank.total}
	since := now.Add(-time.Hour)
	// Oldest first: the last complete minute stops at the first gap after
	// the window's first minute with data.
	seenAny := false
	for m := ceilMinute(since); !m.After(now); m = m.Add(time.Minute) {
		p, seen := s.progress[m.Unix()]
		complete := seen && p.reconciled || !seen && s.trackedAt(m) == 0 ||
			seen && p.stored+p.missed >= s.trackedAt(m)
		seenAny = seenAny || seen
		if !complete && seenAny {
			break
		}
		if complete && seen {
			st.LastCompleteMinute = m.UTC()
		}
	}
	lo, hi := ceilUnix(since), now.Unix()
	for m, p := range s.progress {
		if m >= lo && m <= hi {
			st.MissedLastHour += p.missed
		}
	}
	return st, nil
}

// Rollup implements store.Store.
func (s *Store) Rollup(ctx context.Context, pk int64, step time.Duration, from, to time.Time, limit int) ([]store.Bucket, error) {
	if err := store.ValidateRollup(step, limit); err != nil {
		return nil, fmt.Errorf("rollup of pk %d: %w", pk, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	buckets := s.hourly[pk]
	if step == store.Daily {
		buckets = s.daily[pk]
	}
	lo, hi := ceilUnix(from), ceilUnix(to)
	i, _ := slices.BinarySearchFunc(buckets, lo, func(r rollup, s int64) int { return cmp.Compare(r.start, s) })
	out := make([]store.Bucket, 0, min(limit, len(buckets)-i))
	for ; i < len(buckets) && buckets[i].start < hi && len(out) < limit; i++ {
		out = append(out, buckets[i].bucket())
	}
	return out, nil
}

// Prune implements store.Store with the Postgres store's semantics:
// minute points and missed entries of the UTC days before
// store.RetentionCutoff(now, keep) are dropped, progress counters older
// than store.ProgressRetention too; rollups, summaries and counters stay.
func (s *Store) Prune(ctx context.Context, now time.Time, keep time.Duration) error {
	if keep <= 0 {
		return fmt.Errorf("prune: %w: keep %s is not positive", store.ErrInvalid, keep)
	}
	cutoff := store.RetentionCutoff(now, keep).Unix()
	progressCutoff := now.Add(-store.ProgressRetention)
	s.mu.Lock()
	defer s.mu.Unlock()
	for pk, tl := range s.timeline {
		i, _ := slices.BinarySearchFunc(tl, cutoff, comparePoint)
		if i == 0 {
			continue
		}
		if i == len(tl) {
			delete(s.timeline, pk)
			continue
		}
		s.timeline[pk] = slices.Clone(tl[i:])
	}
	for k := range s.missed {
		if k.minute < cutoff {
			delete(s.missed, k)
			delete(s.missedPerMinute, k.minute)
		}
	}
	for m := range s.progress {
		if m < ceilUnix(progressCutoff) {
			delete(s.progress, m)
		}
	}
	// Keep the newest history entry before the cutoff: it is the tracked
	// count in effect at the cutoff.
	i := 0
	for i+1 < len(s.history) && s.history[i+1].at.Before(progressCutoff) {
		i++
	}
	s.history = slices.Clone(s.history[i:])
	return nil
}
