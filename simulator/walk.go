package simulator

import (
	"sync/atomic"

	"github.com/mockstagram/pipeline/influencer"
)

// The random walk packs (follower, following) into one atomic word per pk so
// concurrent GETs of the same pk are race-free without locks: following in the
// low followingBits bits (never 0, so 0 means "not initialised yet") and
// follower in the rest.
const (
	followingBits = 20
	followingMask = 1<<followingBits - 1
	walkMaxFollow = influencer.MaxCount // follower cap; fits in 64-followingBits bits
)

// walk holds the random-walk state of a pk range: 8 bytes per pk, allocated
// once, each cell lazily initialised from a hash of (pk, seed).
type walk struct {
	seed  uint64
	from  int64
	cells []atomic.Uint64
}

func newWalk(from, to, seed int64) *walk {
	return &walk{seed: uint64(seed), from: from, cells: make([]atomic.Uint64, to-from+1)}
}

// step moves pk's counts by one small random step and returns the new counts.
// pk must be in the range.
func (w *walk) step(pk int64, r *rng) (follower, following int64) {
	cell := &w.cells[pk-w.from]
	for {
		old := cell.Load()
		if old == 0 {
			follower, following = baseCounts(uint64(pk), w.seed)
		} else {
			follower, following = int64(old>>followingBits), int64(old&followingMask)
		}
		follower, following = move(follower, following, r.next())
		if cell.CompareAndSwap(old, uint64(follower)<<followingBits|uint64(following)) {
			return follower, following
		}
	}
}

// move is one random-walk step driven by the random word x: followers move by
// up to about 0.005% of their count (at least 1), drifting slightly upwards;
// following moves by one a quarter of the time. Follower never goes below 0,
// following never below 1.
func move(follower, following int64, x uint64) (int64, int64) {
	scale := 1 + follower/20_000
	follower += int64((x&0xffffffff)%uint64(3*scale+1)) - scale
	follower = min(max(follower, 0), walkMaxFollow)
	switch (x >> 32) & 7 {
	case 0:
		following--
	case 1:
		following++
	}
	following = min(max(following, 1), followingMask)
	return follower, following
}
