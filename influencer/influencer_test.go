package influencer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
)

var minute = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func validSample() influencer.Sample {
	return influencer.Sample{
		PK: 1000000, Username: "alice", FollowerCount: 100, FollowingCount: 10,
		Minute: minute, FetchedAt: minute.Add(3 * time.Second),
	}
}

func TestSampleValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*influencer.Sample)
		want   []string // substrings of the error; nil means valid
	}{
		{"valid", func(*influencer.Sample) {}, nil},
		{"zero counts", func(s *influencer.Sample) { s.FollowerCount, s.FollowingCount = 0, 0 }, nil},
		{"max counts", func(s *influencer.Sample) {
			s.FollowerCount, s.FollowingCount = influencer.MaxCount, influencer.MaxCount
		}, nil},
		{"zero pk", func(s *influencer.Sample) { s.PK = 0 }, []string{"pk 0 is not positive"}},
		{"negative pk", func(s *influencer.Sample) { s.PK = -3 }, []string{"pk -3 is not positive"}},
		{"negative followers", func(s *influencer.Sample) { s.FollowerCount = -1 },
			[]string{"followerCount -1 out of range [0, 10000000000]"}},
		{"too many followers", func(s *influencer.Sample) { s.FollowerCount = influencer.MaxCount + 1 },
			[]string{"followerCount 10000000001 out of range [0, 10000000000]"}},
		{"negative following", func(s *influencer.Sample) { s.FollowingCount = -1 },
			[]string{"followingCount -1 out of range [0, 10000000000]"}},
		{"too many following", func(s *influencer.Sample) { s.FollowingCount = influencer.MaxCount + 1 },
			[]string{"followingCount 10000000001 out of range [0, 10000000000]"}},
		{"empty username", func(s *influencer.Sample) { s.Username = "" }, []string{"username is empty"}},
		{"zero minute", func(s *influencer.Sample) { s.Minute = time.Time{} }, []string{"is not minute-aligned"}},
		{"unaligned minute", func(s *influencer.Sample) { s.Minute = minute.Add(time.Second) },
			[]string{"minute 2026-11-25T12:00:01Z is not minute-aligned"}},
		{"unaligned by a nanosecond", func(s *influencer.Sample) { s.Minute = minute.Add(time.Nanosecond) },
			[]string{"minute 2026-11-25T12:00:00.000000001Z is not minute-aligned"}},
		{"every rule at once", func(s *influencer.Sample) {
			*s = influencer.Sample{PK: -1, FollowerCount: -1, FollowingCount: -2, Minute: minute.Add(time.Second)}
		}, []string{"pk -1", "followerCount -1", "followingCount -2", "username is empty", "not minute-aligned"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := validSample()
			tc.mutate(&s)
			err := s.Validate()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidateUsername(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, username, want string
	}{
		{"simple", "alice", ""},
		{"unicode", "Zoë_ünïcode.日本", ""},
		{"with space", "a b", ""},
		{"exactly max bytes", strings.Repeat("a", influencer.MaxUsernameLength), ""},
		{"empty", "", "username is empty"},
		{"one byte too long", strings.Repeat("a", influencer.MaxUsernameLength+1), "username longer than 64 bytes"},
		{"multibyte over max bytes", strings.Repeat("é", 33), "username longer than 64 bytes"},
		{"invalid utf8", "ab\xffcd", "username is not valid UTF-8"},
		{"newline", "a\nb", "username contains control characters"},
		{"nul", "a\x00b", "username contains control characters"},
		{"tab", "\tx", "username contains control characters"},
		{"c1 control", "a\u0085b", "username contains control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := influencer.ValidateUsername(tc.username)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

func TestRatio(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                string
		follower, following int64
		want                float64
		wantOK              bool
	}{
		{"zero following", 100, 0, 0, false},
		{"both zero", 0, 0, 0, false},
		{"whole", 100, 10, 10, true},
		{"fraction", 1, 4, 0.25, true},
		{"zero followers", 0, 5, 0, true},
		{"max", influencer.MaxCount, 1, 1e10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := influencer.Ratio(tc.follower, tc.following)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestShardOfIsStable(t *testing.T) {
	t.Parallel()
	// Computed once from FNV-1a of the decimal pk; these must never change,
	// or every deployed shard assignment moves.
	for _, tc := range []struct {
		pk     int64
		shards int
		want   int
	}{
		{1, 1, 0},
		{1, 7, 2},
		{1, 1024, 796},
		{42, 7, 6},
		{42, 1024, 387},
		{1000000, 7, 6},
		{1000000, 1024, 924},
		{1000001, 7, 4},
		{1000001, 1024, 303},
		{1999999, 7, 3},
		{1999999, 1024, 862},
	} {
		assert.Equal(t, tc.want, influencer.ShardOf(tc.pk, tc.shards), "ShardOf(%d, %d)", tc.pk, tc.shards)
	}
}

func TestShardOfRangeAndSpread(t *testing.T) {
	t.Parallel()
	const (
		shards = 1024
		n      = 100_000
	)
	counts := make([]int, shards)
	for pk := int64(1_000_000); pk < 1_000_000+n; pk++ {
		s := influencer.ShardOf(pk, shards)
		require.GreaterOrEqual(t, s, 0)
		require.Less(t, s, shards)
		require.Equal(t, s, influencer.ShardOf(pk, shards), "same input, same shard")
		counts[s]++
	}
	mean := float64(n) / shards
	for s, c := range counts {
		assert.LessOrEqual(t, float64(c), 2*mean, "shard %d has %d pks, mean %.1f", s, c, mean)
	}
	for _, shardCount := range []int{1, 2, 3, 1 << 20} {
		for _, pk := range []int64{1, 1 << 62, 9223372036854775807} {
			s := influencer.ShardOf(pk, shardCount)
			assert.True(t, s >= 0 && s < shardCount, "ShardOf(%d, %d) = %d", pk, shardCount, s)
		}
	}
}

func TestParseRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    influencer.Range
		wantErr string
	}{
		{in: "1000000-1999999", want: influencer.Range{From: 1000000, To: 1999999}},
		{in: "5", want: influencer.Range{From: 5, To: 5}},
		{in: " 10 - 20 ", want: influencer.Range{From: 10, To: 20}},
		{in: "7-7", want: influencer.Range{From: 7, To: 7}},
		{in: "1-10000000", want: influencer.Range{From: 1, To: 10000000}},
		{in: "20-10", wantErr: `range "20-10": want 0 < FROM <= TO`},
		{in: "0", wantErr: `range "0": want 0 < FROM <= TO`},
		{in: "0-5", wantErr: `range "0-5": want 0 < FROM <= TO`},
		{in: "1x-2", wantErr: `range "1x-2": bad start`},
		{in: "1-2x", wantErr: `range "1-2x": bad end`},
		{in: "", wantErr: `range "": bad start`},
		{in: "-5", wantErr: `range "-5": bad start`},
		{in: "1-", wantErr: `range "1-": bad end`},
		{in: "1-10000001", wantErr: `range "1-10000001": more than 10,000,000 pks`},
		{in: "1-9223372036854775807", wantErr: "more than 10,000,000 pks"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := influencer.ParseRange(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.Equal(t, influencer.Range{}, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestRangePKsAndString(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []int64{5}, influencer.Range{From: 5, To: 5}.PKs())
	assert.Equal(t, []int64{1000000, 1000001, 1000002, 1000003}, influencer.Range{From: 1000000, To: 1000003}.PKs())
	assert.Equal(t, "1000000-1000003", influencer.Range{From: 1000000, To: 1000003}.String())
	r, err := influencer.ParseRange(influencer.Range{From: 3, To: 9}.String())
	require.NoError(t, err)
	assert.Len(t, r.PKs(), 7)
}

func TestSummaryAverageFollowerCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    influencer.Summary
		want float64
	}{
		{"no samples", influencer.Summary{}, 0},
		{"no samples but a sum", influencer.Summary{FollowerSum: 10}, 0},
		{"one", influencer.Summary{Samples: 1, FollowerSum: 42}, 42},
		{"fraction", influencer.Summary{Samples: 4, FollowerSum: 10}, 2.5},
		{"large", influencer.Summary{Samples: 3, FollowerSum: 3 * influencer.MaxCount}, 1e10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, tc.s.AverageFollowerCount())
		})
	}
}
