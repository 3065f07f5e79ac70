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
