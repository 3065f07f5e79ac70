package memory

import (
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

// sample is one stored minute in 16 bytes without pointers (the timeline is
// most of the store). key holds the minute in Unix minutes in its top 56
// bits and bits 32-35 of the follower and following counts in its low 8
// bits; follower and following hold the counts' low 32 bits. Counts are at
// most influencer.MaxCount < 2^36 (checked at compile time below), and
// sorting by key sorts by minute.
type sample struct {
	key       int64
	follower  uint32
	following uint32
}

// Compile-time check that a count fits 36 bits: a negative constant does
// not convert to uint64.
const _ uint64 = 1<<36 - 1 - influencer.MaxCount

// Minutes a sample key can hold: |minute| < 2^55 Unix minutes (about 68
// billion years, far beyond what Postgres stores).
const (
	minMinute = -(1 << 55)
	maxMinute = 1<<55 - 1
)

func packSample(minute, follower, following int64) sample {
	return sample{
		key:       minute<<8 | (follower>>32)<<4 | following>>32,
		follower:  uint32(follower),
		following: uint32(following),
	}
}

// minute is the sample's minute in Unix minutes.
func (p sample) minute() int64 { return p.key >> 8 }

func (p sample) followerCount() int64 { return (p.key>>4&0xf)<<32 | int64(p.follower) }

func (p sample) followingCount() int64 { return (p.key&0xf)<<32 | int64(p.following) }

func (p sample) point() influencer.Point {
	return influencer.Point{
		Minute:         minuteTime(p.minute()),
		FollowerCount:  p.followerCount(),
		FollowingCount: p.followingCount(),
	}
}

// minuteTime is the UTC time of a Unix minute.
func minuteTime(m int64) time.Time { return time.Unix(m*60, 0).UTC() }

// ceilMinute is the first Unix minute at or after t.
func ceilMinute(t time.Time) int64 {
	s := ceilUnix(t)
	q := s / 60
	if s%60 > 0 {
		q++
	}
	return q
}

// pkState is everything the store keeps about one pk, in one fixed-size
// record: the registry entry, the summary, the rank membership, the
// suspicion answer and the timeline. Times are integers (Unix minutes or
// microseconds) so a record holds only two pointers.
type pkState struct {
	pk       int64
	username string // latest, set with the first sample

	follower, following int64 // values of the newest minute
	followerSum         int64
	samples             int64
	lastMinute          int64 // Unix minutes of the newest sample
	updatedAt           int64 // registry change, Unix microseconds
	checkedAt           int64 // suspicion answer, Unix microseconds

	timeline []sample // sorted by minute

	rankPos    int32 // position in the rank bucket's member list
	hasData    bool  // at least one sample stored (has a summary)
	registered bool  // has a registry row
	active     bool
	inRank     bool
	checked    bool // has a suspicion answer
	suspicious bool
}

// find returns the timeline position of minute (Unix minutes) and whether
// a sample is stored there.
func (st *pkState) find(minute int64) (int, bool) {
	tl := st.timeline
	// Samples mostly arrive in minute order: check the end first.
	if n := len(tl); n == 0 || tl[n-1].minute() < minute {
		return n, false
	}
	lo, hi := 0, len(tl)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if tl[mid].minute() < minute {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(tl) && tl[lo].minute() == minute
}

// chunkBits sizes the chunks of the pk table: records never move once
// allocated (pointers to them stay valid) and growing the table never
// copies it.
const chunkBits = 10

// pkTable holds one pkState per pk ever seen, addressed by a dense int32
// index.
type pkTable struct {
	index  map[int64]int32
	chunks [][]pkState
	n      int32
}

func newPKTable() *pkTable { return &pkTable{index: make(map[int64]int32)} }

// reserve sizes an empty table's index for n pks at once (a bootstrap).
func (t *pkTable) reserve(n int) {
	if t.n == 0 && len(t.index) == 0 && n > 0 {
		t.index = make(map[int64]int32, n)
		t.chunks = make([][]pkState, 0, n>>chunkBits+1)
	}
}

func (t *pkTable) at(i int32) *pkState { return &t.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

func (t *pkTable) lookup(pk int64) (*pkState, bool) {
	i, ok := t.index[pk]
	if !ok {
		return nil, false
	}
	return t.at(i), true
}

// get returns pk's record, adding an empty one when pk is new.
func (t *pkTable) get(pk int64) (int32, *pkState) {
	if i, ok := t.index[pk]; ok {
		return i, t.at(i)
	}
	i := t.n
	if int(i>>chunkBits) == len(t.chunks) {
		t.chunks = append(t.chunks, make([]pkState, 1<<chunkBits))
	}
	t.n++
	t.index[pk] = i
	st := t.at(i)
	st.pk = pk
	return i, st
}

// len is the number of records.
func (t *pkTable) len() int32 { return t.n }
