package influencer

import "time"

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
