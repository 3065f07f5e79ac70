package simulator

import (
	"math"
	"strconv"
	"time"
)

// Constants of the count model.
const (
	minFollowers = 100
	maxFollowers = 10_000_000
	minFollowing = 10
	maxFollowing = 7_500

	// trendPeriod is the longest period, in minutes, of the deterministic
	// trend (a week); minTrendHalf the shortest half-period.
	trendPeriod  = 7 * 24 * 60
	minTrendHalf = 5

	suspiciousPercent = 3
)

// Hash salts, so the same pk feeds independent streams.
const (
	saltFollower   = 0x9e3779b97f4a7c15
	saltFollowing  = 0xbf58476d1ce4e5b9
	saltMinute     = 0x94d049bb133111eb
	saltSuspicious = 0x2545f4914f6cdd1d
	saltUnknown    = 0xd6e8feb86659fd93
	saltRequest    = 0xa0761d6478bd642f
)

// Username is the username the server gives pk: "influencer-<pk>", like the
// real server.
func Username(pk int64) string {
	return "influencer-" + strconv.FormatInt(pk, 10)
}

// Suspicious is the deterministic is_suspicious answer for pk (about 3% of pks
// are suspicious).
func Suspicious(pk int64) bool {
	return mix64(uint64(pk)^saltSuspicious)%100 < suspiciousPercent
}

// Counts is the deterministic model: the follower and following counts of pk
// in the minute containing minute. It is a pure function of (pk, minute).
//
// Every pk has a base (followers log-distributed over ~100..~10,000,000,
// following over ~10..~7,500), a trend that moves the follower count by
// exactly one step (1 + base/100,000) every minute, up then down, within about
// 5% of the base (a triangle wave whose half-period is up to half a week), and
// a hashed wobble smaller than a step. So consecutive minutes always differ,
// counts are never negative, and following is never 0.
func Counts(pk int64, minute time.Time) (follower, following int64) {
	m := floorDiv(minute.Unix(), 60)
	f0, g0 := baseCounts(uint64(pk), 0)
	step := 1 + f0/100_000
	half := min(max(f0/20/step, minTrendHalf), trendPeriod/2)
	h := mix64(uint64(pk)*saltFollower ^ uint64(m)*saltMinute)
	follower = f0 + step*triangle(m, half) + int64(h%uint64(step))
	wobble := 1 + g0/200
	following = g0 + int64((h>>32)%uint64(wobble+1))
	return follower, following
}

// baseCounts derives plausible starting counts for key (a pk, salted with a
// seed for the random walk).
func baseCounts(key, seed uint64) (follower, following int64) {
	u := unit(mix64(key ^ seed*saltFollower ^ saltFollowing))
	v := unit(mix64(key ^ seed*saltFollowing ^ saltFollower))
	// u*u skews towards small accounts: the median is ~1,800 followers.
	follower = int64(math.Round(minFollowers * math.Exp(u*u*math.Log(maxFollowers/minFollowers))))
	following = int64(math.Round(minFollowing * math.Exp(v*math.Log(maxFollowing/minFollowing))))
	return follower, following
}

// triangle is a triangle wave over minutes that rises from 0 to half and falls
// back: 0, 1, ..., half, half-1, ..., 1, 0, 1, ...; consecutive values differ
// by exactly 1.
func triangle(m, half int64) int64 {
	k := m % (2 * half)
	if k < 0 {
		k += 2 * half
	}
	if k <= half {
		return k
	}
	return 2*half - k
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// mix64 is the splitmix64 finalizer: a fast, well-distributed 64-bit hash.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 {
	return float64(h>>11) / (1 << 53)
}

// rng is a splitmix64 generator: a value type, so a request's generator lives
// on the stack and costs no allocation and no lock.
type rng struct{ state uint64 }

// newRNG seeds a generator for the n-th request of a server seeded with seed.
func newRNG(seed int64, n int64) rng {
	return rng{state: mix64(uint64(seed)^saltRequest) + uint64(n)*saltFollower}
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix64(r.state)
}

// float returns a uniform float in [0, 1).
func (r *rng) float() float64 { return unit(r.next()) }

// durationBelow returns a uniform duration in [0, d); 0 if d <= 0.
func (r *rng) durationBelow(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(r.next() % uint64(d))
}
