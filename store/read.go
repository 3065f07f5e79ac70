package store

import (
	"fmt"
	"math/bits"
	"time"
)

// MaxLeaderboardLimit is the largest leaderboard page a store returns.
const MaxLeaderboardLimit = 1000

// Rank buckets. Both stores count active influencers per follower-count
// bucket so that a rank is a sum over a bounded number of buckets plus a
// count inside one bucket. A bucket is a 10-bit "mantissa" of count+1:
// counts below 2047 get a bucket each (exact), larger ones share a bucket
// with the counts within 1/1024 (~0.1 %) of them. The function is monotonic,
// uses integers only, and is mirrored exactly by the SQL function
// rank_bucket (migration 00004), which a test checks.
const (
	// RankBucketGroupShift groups fine buckets by 128 into coarse ones:
	// a rank reads at most ~200 coarse and 127 fine bucket counters.
	RankBucketGroupShift = 7
	rankMantissaBits     = 10
)

// RankBucket is the rank bucket of a follower count (0 <= count <=
// influencer.MaxCount gives 1..25599).
func RankBucket(count int64) int {
	v := uint64(count) + 1
	if v < 1<<(rankMantissaBits+1) {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - rankMantissaBits // floor(log2 v) - 10
	return shift<<rankMantissaBits + int(v>>shift)
}

// ValidateLeaderboardLimit checks 1 <= limit <= MaxLeaderboardLimit. Errors
// wrap ErrInvalid.
func ValidateLeaderboardLimit(limit int) error {
	if limit < 1 || limit > MaxLeaderboardLimit {
		return fmt.Errorf("%w: leaderboard limit %d not in [1, %d]", ErrInvalid, limit, MaxLeaderboardLimit)
	}
	return nil
}

// Rollup steps a store keeps.
const (
	Hourly = time.Hour
	Daily  = 24 * time.Hour
)

// ValidateRollup checks a rollup query: step Hourly or Daily and a positive
// limit. Errors wrap ErrInvalid.
func ValidateRollup(step time.Duration, limit int) error {
	if step != Hourly && step != Daily {
		return fmt.Errorf("%w: rollup step %s is neither 1h nor 24h", ErrInvalid, step)
	}
	if limit <= 0 {
		return fmt.Errorf("%w: rollup limit %d is not positive", ErrInvalid, limit)
	}
	return nil
}

// BucketStart is the UTC start of the hour or day (step) containing t.
func BucketStart(t time.Time, step time.Duration) time.Time {
	return t.UTC().Truncate(step)
}

// RetentionCutoff is the first instant whose minute data a store keeps when
// minute data is kept for keep: minute points are dropped by whole UTC days,
// those that ended at or before now-keep. Everything before the cutoff goes.
func RetentionCutoff(now time.Time, keep time.Duration) time.Time {
	return now.Add(-keep).UTC().Truncate(24 * time.Hour)
}

// ProgressRetention is how long stores keep per-minute progress counters
// (only the last hour is read).
const ProgressRetention = 24 * time.Hour

// Ranked is one row of the leaderboard: an active influencer with data and
// its follower rank (1 = most followers; equal counts share a rank).
type Ranked struct {
	Rank           int64
	PK             int64
	Username       string
	FollowerCount  int64
	FollowingCount int64
}

// Cursor is the keyset position of a leaderboard page: the follower count
// and pk of the last row returned. The next page starts strictly after it in
// the order followerCount DESC, pk ASC.
type Cursor struct {
	FollowerCount int64
	PK            int64
}

// Stats is the state of the whole tracked population, maintained
// incrementally by the recorder.
type Stats struct {
	// Tracked is the number of active registry entries.
	Tracked int64
	// Influencers is the number of active influencers with data.
	Influencers int64
	// FollowerTotal is the sum of their current follower counts.
	FollowerTotal int64
	// LastCompleteMinute is the newest minute of the last hour for which
	// every influencer tracked at that minute was either stored or
	// recorded as missed; zero when there is none.
	LastCompleteMinute time.Time
	// MissedLastHour counts missed (pk, minute) entries with a minute in
	// [now-1h, now].
	MissedLastHour int64
}

// AverageFollowerCount is the mean of the Influencers' current follower
// counts, or 0 without influencers.
func (s Stats) AverageFollowerCount() float64 {
	if s.Influencers == 0 {
		return 0
	}
	return float64(s.FollowerTotal) / float64(s.Influencers)
}

// Freshness is how long ago the last complete minute ended, and false when
// there is none.
func (s Stats) Freshness(now time.Time) (time.Duration, bool) {
	if s.LastCompleteMinute.IsZero() {
		return 0, false
	}
	return now.Sub(s.LastCompleteMinute.Add(time.Minute)), true
}

// Bucket is one hourly or daily aggregate of an influencer's minutes.
type Bucket struct {
	Start         time.Time // UTC start of the hour or day
	Samples       int64     // stored minutes in the bucket
	FollowerAvg   float64
	FollowerMin   int64
	FollowerMax   int64
	FollowerLast  int64 // value of the newest minute in the bucket
	FollowingAvg  float64
	FollowingMin  int64
	FollowingMax  int64
	FollowingLast int64
	LastMinute    time.Time // newest minute in the bucket
}
