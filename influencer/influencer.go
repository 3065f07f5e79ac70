// Package influencer holds the domain types of the follower pipeline: samples,
// batches, summaries and the stable shard assignment. It has no dependencies on
// brokers, stores or HTTP.
package influencer

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on values accepted from the Mockstagram API. They protect the store
// from absurd values; anything outside them is rejected with a reason.
const (
	MaxCount          = 10_000_000_000 // no account has ten billion followers
	MaxUsernameLength = 64
)

// Sample is one fetched observation of an influencer for one minute.
type Sample struct {
	PK             int64
	Username       string
	FollowerCount  int64
	FollowingCount int64
	Minute         time.Time
	FetchedAt      time.Time
}

// Validate reports why a sample must not be stored, or nil: its values and
// its minute.
func (s Sample) Validate() error {
	return errors.Join(s.ValidateValues(), ValidateMinute(s.Minute))
}

// ValidateUsername rejects empty, overlong and control-character usernames.
func ValidateUsername(u string) error {
	switch {
	case u == "":
		return errors.New("username is empty")
	case !utf8.ValidString(u):
		return errors.New("username is not valid UTF-8")
	case len(u) > MaxUsernameLength:
		return fmt.Errorf("username longer than %d bytes", MaxUsernameLength)
	case strings.IndexFunc(u, unicode.IsControl) >= 0:
		return errors.New("username contains control characters")
	}
	return nil
}

// Failure is a pk that could not be fetched for a minute, with the reason.
type Failure struct {
	PK     int64
	Minute time.Time
	// Class is a short machine-readable class: expired, not_found, timeout,
	// http_5xx, rate_limited, malformed, invalid, connection, ...
	Class    string
	Reason   string
	Attempts int
}

// Batch is everything learnt about one shard in one minute: the samples to
// store and the pks that could not be fetched (recorded as missed).
type Batch struct {
	Minute   time.Time
	Shard    int
	Samples  []Sample
	Failures []Failure
}

// Summary is the latest state of one influencer, maintained incrementally.
type Summary struct {
	PK             int64
	Username       string
	FollowerCount  int64
	FollowingCount int64
	LastMinute     time.Time
	Samples        int64 // number of stored minutes
	FollowerSum    int64 // sum of followerCount over stored minutes
	// Suspicion is the latest is_suspicious answer; nil when never checked.
	Suspicion *Suspicion
}

// Suspicion is an is_suspicious answer for an influencer.
type Suspicion struct {
	PK         int64
	Suspicious bool
	CheckedAt  time.Time // when the answer was received
}

// SuspicionCandidate is what an is_suspicious request sends: the
// influencer's latest stored values.
type SuspicionCandidate struct {
	PK             int64
	Username       string
	FollowerCount  int64
	FollowingCount int64
}

// AverageFollowerCount is the mean followerCount over the stored history.
func (s Summary) AverageFollowerCount() float64 {
	if s.Samples == 0 {
		return 0
	}
	return float64(s.FollowerSum) / float64(s.Samples)
}

// Point is one minute (or one aggregate bucket) of an influencer's timeline.
type Point struct {
	Minute         time.Time
	FollowerCount  int64
	FollowingCount int64
}

// Ratio returns follower/following, and false when following is zero.
func Ratio(follower, following int64) (float64, bool) {
	if following == 0 {
		return 0, false
	}
	r := float64(follower) / float64(following)
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return 0, false
	}
	return r, true
}

// Tracked is one row of the registry of tracked influencers.
type Tracked struct {
	PK        int64
	Username  string // latest known username, empty before the first sample
	Active    bool
	UpdatedAt time.Time
}

// ShardOf assigns a pk to one of shards shards with a stable hash (FNV-1a of
// the decimal pk), so the assignment never changes between processes or
// releases for the same shard count.
func ShardOf(pk int64, shards int) int {
	h := fnv.New32a()
	var buf [20]byte
	b := appendInt(buf[:0], pk)
	_, _ = h.Write(b)
	return int(h.Sum32() % uint32(shards))
}

func appendInt(b []byte, v int64) []byte {
	return strconv.AppendInt(b, v, 10)
}

// Range is an inclusive pk range, e.g. 1000000-1999999.
type Range struct{ From, To int64 }

// ParseRange parses "FROM-TO" (inclusive) or a single pk.
func ParseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	from, to, found := strings.Cut(s, "-")
	var (
		r   Range
		err error
	)
	if r.From, err = strconv.ParseInt(strings.TrimSpace(from), 10, 64); err != nil {
		return Range{}, fmt.Errorf("range %q: bad start: %w", s, err)
	}
	r.To = r.From
	if found {
		if r.To, err = strconv.ParseInt(strings.TrimSpace(to), 10, 64); err != nil {
			return Range{}, fmt.Errorf("range %q: bad end: %w", s, err)
		}
	}
	if r.From <= 0 || r.To < r.From {
		return Range{}, fmt.Errorf("range %q: want 0 < FROM <= TO", s)
	}
	if r.To-r.From >= 10_000_000 {
		return Range{}, fmt.Errorf("range %q: more than 10,000,000 pks", s)
	}
	return r, nil
}

// PKs expands the range.
func (r Range) PKs() []int64 {
	out := make([]int64, 0, r.To-r.From+1)
	for pk := r.From; pk <= r.To; pk++ {
		out = append(out, pk)
	}
	return out
}

// String formats the range as FROM-TO.
func (r Range) String() string { return fmt.Sprintf("%d-%d", r.From, r.To) }
