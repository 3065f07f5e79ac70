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
// are scanned for the rest. Members are pk table indexes (4 bytes each);
// a member's count is its record's follower count, and its record knows
// its position in the bucket's list. It also keeps the count and the
// follower total for the global average. Everything but the member lists
// is sized once.
type rankIndex struct {
	pks     *pkTable
	tree    []int64   // Fenwick tree over buckets 1..len(tree)-1
	members [][]int32 // per bucket, unordered
	n       int64     // members
	total   int64     // sum of members' follower counts
	top     int       // highest bucket
}

func newRankIndex(pks *pkTable) *rankIndex {
	top := store.RankBucket(influencer.MaxCount)
	return &rankIndex{pks: pks, tree: make([]int64, top+1), members: make([][]int32, top+1), top: top}
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

// add makes record i (not a member) a member with its follower count.
func (r *rankIndex) add(i int32) {
	st := r.pks.at(i)
	r.insert(i, st)
	r.n++
	r.total += st.follower
}

func (r *rankIndex) insert(i int32, st *pkState) {
	b := store.RankBucket(st.follower)
	st.rankPos, st.inRank = int32(len(r.members[b])), true
	r.members[b] = append(r.members[b], i)
	r.addTree(b, 1)
}

// remove takes record i out of the members, if it is one.
func (r *rankIndex) remove(i int32) {
	st := r.pks.at(i)
	if !st.inRank {
		return
	}
	r.delete(st)
	r.n--
	r.total -= st.follower
}

func (r *rankIndex) delete(st *pkState) {
	b := store.RankBucket(st.follower)
	m := r.members[b]
	last := m[len(m)-1]
	m[st.rankPos] = last
	r.pks.at(last).rankPos = st.rankPos
	r.members[b] = m[:len(m)-1]
	st.inRank = false
	r.addTree(b, -1)
}

// setCount changes record i's follower count, moving it between buckets
// when it is a member.
func (r *rankIndex) setCount(i int32, count int64) {
	st := r.pks.at(i)
	if !st.inRank {
		st.follower = count
		return
	}
	r.total += count - st.follower
	if store.RankBucket(count) == store.RankBucket(st.follower) {
		st.follower = count
		return
	}
	r.delete(st)
	st.follower = count
	r.insert(i, st)
}

// rank is 1 + the number of members with a count greater than count.
func (r *rankIndex) rank(count int64) int64 {
	b := store.RankBucket(count)
	n := r.n - r.atMost(b)
	for _, i := range r.members[b] {
		if r.pks.at(i).follower > count {
			n++
		}
	}
	return n + 1
}

// page lists up to limit members after the cursor in the order count DESC,
// pk ASC, with ranks.
func (r *rankIndex) page(after *store.Cursor, limit int) []store.Ranked {
	out := make([]store.Ranked, 0, min(int64(limit), r.n))
	b := r.top
	if after != nil {
		b = store.RankBucket(after.FollowerCount)
	}
	var bucket []*pkState
	for ; b > 0 && len(out) < limit; b-- {
		if len(r.members[b]) == 0 {
			continue
		}
		bucket = bucket[:0]
		for _, i := range r.members[b] {
			st := r.pks.at(i)
			if c := st.follower; after == nil || c < after.FollowerCount || (c == after.FollowerCount && st.pk > after.PK) {
				bucket = append(bucket, st)
			}
		}
		slices.SortFunc(bucket, func(x, y *pkState) int {
			if c := cmp.Compare(y.follower, x.follower); c != 0 {
				return c
			}
			return cmp.Compare(x.pk, y.pk)
		})
		for _, st := range bucket {
			if len(out) == limit {
				break
			}
			rank := int64(0)
			if len(out) > 0 && out[len(out)-1].FollowerCount == st.follower {
				rank = out[len(out)-1].Rank
			} else {
				rank = r.rank(st.follower)
			}
			out = append(out, store.Ranked{Rank: rank, PK: st.pk, Username: st.username,
				FollowerCount: st.follower, FollowingCount: st.following})
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

// merge folds bucket o (same start) into r.
func (r *rollup) merge(o rollup) {
	if r.n == 0 {
		*r = o
		return
	}
	r.n += o.n
	r.fSum += o.fSum
	r.gSum += o.gSum
	r.fMin, r.fMax = min(r.fMin, o.fMin), max(r.fMax, o.fMax)
	r.gMin, r.gMax = min(r.gMin, o.gMin), max(r.gMax, o.gMax)
	if o.last > r.last {
		r.last, r.followerL, r.followingL = o.last, o.followerL, o.followingL
	}
}

// addRollup folds one minute (Unix seconds) into the buckets of step
// (sorted by start).
func addRollup(buckets []rollup, step time.Duration, minute, follower, following int64) []rollup {
	start := bucketStart(minute, step)
	i, found := slices.BinarySearchFunc(buckets, start, func(r rollup, s int64) int { return cmp.Compare(r.start, s) })
	if !found {
		buckets = slices.Insert(buckets, i, rollup{start: start})
	}
	buckets[i].add(minute, follower, following)
	return buckets
}

// bucketStart is the start (Unix seconds) of the step's bucket containing
// the Unix second sec.
func bucketStart(sec int64, step time.Duration) int64 {
	return store.BucketStart(time.Unix(sec, 0), step).Unix()
}

// timelineRollups computes the buckets of step with lo <= start < hi
// (Unix seconds) from a timeline, oldest first, at most limit of them.
func timelineRollups(tl []sample, step time.Duration, lo, hi int64, limit int) []rollup {
	var out []rollup
	i := 0
	for i < len(tl) && tl[i].minute()*60 < lo {
		i++
	}
	for ; i < len(tl); i++ {
		sec := tl[i].minute() * 60
		start := bucketStart(sec, step)
		if start < lo {
			continue
		}
		if start >= hi {
			break
		}
		if len(out) == 0 || out[len(out)-1].start != start {
			if len(out) == limit {
				break
			}
			out = append(out, rollup{start: start})
		}
		out[len(out)-1].add(sec, tl[i].followerCount(), tl[i].followingCount())
	}
	return out
}

// mergeRollups merges two lists sorted by start, folding buckets with the
// same start, and keeps the first limit.
func mergeRollups(a, b []rollup, limit int) []rollup {
	out := make([]rollup, 0, min(limit, len(a)+len(b)))
	i, j := 0, 0
	for len(out) < limit && (i < len(a) || j < len(b)) {
		switch {
		case j == len(b) || (i < len(a) && a[i].start < b[j].start):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].start < a[i].start:
			out = append(out, b[j])
			j++
		default:
			r := a[i]
			r.merge(b[j])
			out = append(out, r)
			i++
			j++
		}
	}
	return out
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
	st, ok := s.pks.lookup(pk)
	if !ok || !st.hasData || !st.active {
		return 0, fmt.Errorf("rank of pk %d: %w", pk, store.ErrNotFound)
	}
	return s.rank.rank(st.follower), nil
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
	return s.rank.page(after, limit), nil
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
	for m := ceilMinuteTime(since); !m.After(now); m = m.Add(time.Minute) {
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

// Rollup implements store.Store: the buckets of pruned days merged with
// those computed from the stored minutes.
func (s *Store) Rollup(ctx context.Context, pk int64, step time.Duration, from, to time.Time, limit int) ([]store.Bucket, error) {
	if err := store.ValidateRollup(step, limit); err != nil {
		return nil, fmt.Errorf("rollup of pk %d: %w", pk, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.pks.index[pk]
	if !ok {
		return []store.Bucket{}, nil
	}
	pruned := s.hourly[i]
	if step == store.Daily {
		pruned = s.daily[i]
	}
	lo, hi := ceilUnix(from), ceilUnix(to)
	j, _ := slices.BinarySearchFunc(pruned, lo, func(r rollup, s int64) int { return cmp.Compare(r.start, s) })
	k := j
	for k < len(pruned) && pruned[k].start < hi {
		k++
	}
	buckets := mergeRollups(pruned[j:k], timelineRollups(s.pks.at(i).timeline, step, lo, hi, limit), limit)
	out := make([]store.Bucket, len(buckets))
	for n, r := range buckets {
		out[n] = r.bucket()
	}
	return out, nil
}

// Prune implements store.Store with the Postgres store's semantics:
// minute points and missed entries of the UTC days before
// store.RetentionCutoff(now, keep) are dropped (their minutes folded into
// the kept hourly and daily buckets first), progress counters older than
// store.ProgressRetention too; rollups, summaries and counters stay.
func (s *Store) Prune(ctx context.Context, now time.Time, keep time.Duration) error {
	if keep <= 0 {
		return fmt.Errorf("prune: %w: keep %s is not positive", store.ErrInvalid, keep)
	}
	cutoff := store.RetentionCutoff(now, keep).Unix()
	progressCutoff := now.Add(-store.ProgressRetention)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.pks.len() {
		st := s.pks.at(i)
		n, _ := st.find(ceilMinute(time.Unix(cutoff, 0)))
		if n == 0 {
			continue
		}
		for _, p := range st.timeline[:n] {
			sec := p.minute() * 60
			s.hourly[i] = addRollup(s.hourly[i], store.Hourly, sec, p.followerCount(), p.followingCount())
			s.daily[i] = addRollup(s.daily[i], store.Daily, sec, p.followerCount(), p.followingCount())
		}
		if n == len(st.timeline) {
			st.timeline = nil
			continue
		}
		st.timeline = slices.Clone(st.timeline[n:])
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
