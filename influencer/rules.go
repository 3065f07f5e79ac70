package influencer

import (
	"errors"
	"fmt"
	"time"
)

// Deadline is when work for minute m expires: the end of the minute plus
// grace. A value fetched after it is never stored for m. This is the one
// place the rule is written; the scheduler, the fetcher and dead-letter
// replay call it.
func Deadline(minute time.Time, grace time.Duration) time.Time {
	return minute.Add(time.Minute + grace)
}

// IsMinute reports whether t is a non-zero, minute-aligned instant.
func IsMinute(t time.Time) bool {
	return !t.IsZero() && t.Equal(t.Truncate(time.Minute))
}

// ValidateMinute reports why t cannot be a sample's minute, or nil.
func ValidateMinute(t time.Time) error {
	if !IsMinute(t) {
		return fmt.Errorf("minute %s is not minute-aligned", t.Format(time.RFC3339Nano))
	}
	return nil
}

// ValidateValues reports why the values of a sample (as the API answered
// them, before a minute is attached) must not be stored, or nil.
func (s Sample) ValidateValues() error {
	var errs []error
	if s.PK <= 0 {
		errs = append(errs, fmt.Errorf("pk %d is not positive", s.PK))
	}
	if s.FollowerCount < 0 || s.FollowerCount > MaxCount {
		errs = append(errs, fmt.Errorf("followerCount %d out of range [0, %d]", s.FollowerCount, int64(MaxCount)))
	}
	if s.FollowingCount < 0 || s.FollowingCount > MaxCount {
		errs = append(errs, fmt.Errorf("followingCount %d out of range [0, %d]", s.FollowingCount, int64(MaxCount)))
	}
	if err := ValidateUsername(s.Username); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SpreadOffset is when shard s of shards is published, relative to the
// start of its period (a minute for fetch tasks): at s/shards of window.
// This is the one place the rule is written; the scheduler publishes by it
// and the HTTP API tells when a newly tracked pk's first sample is due.
func SpreadOffset(shard, shards int, window time.Duration) time.Duration {
	return time.Duration(int64(window) * int64(shard) / int64(shards))
}
