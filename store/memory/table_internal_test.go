package memory

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/mockstagram/pipeline/influencer"
)

func TestSamplePacking(t *testing.T) {
	tests := []struct {
		name                        string
		minute, follower, following int64
	}{
		{"zeros", 0, 0, 0},
		{"typical", 29_000_000, 123_456, 789},
		{"max counts", 29_000_000, influencer.MaxCount, influencer.MaxCount},
		{"32-bit boundary", 29_000_000, 1<<32 - 1, 1 << 32},
		{"other 32-bit boundary", 29_000_000, 1 << 32, 1<<32 - 1},
		{"negative minute", -1, 5, 6},
		{"year 1", time.Time{}.Unix() / 60, influencer.MaxCount, 0},
		{"smallest minute", minMinute, 1, influencer.MaxCount},
		{"largest minute", maxMinute, influencer.MaxCount, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := packSample(tc.minute, tc.follower, tc.following)
			assert.Equal(t, tc.minute, p.minute())
			assert.Equal(t, tc.follower, p.followerCount())
			assert.Equal(t, tc.following, p.followingCount())
		})
	}
}

func TestSampleKeysSortByMinute(t *testing.T) {
	// Counts must not change the order of different minutes.
	a := packSample(-2, influencer.MaxCount, influencer.MaxCount)
	b := packSample(-1, 0, 0)
	c := packSample(7, influencer.MaxCount, influencer.MaxCount)
	d := packSample(8, 0, 0)
	assert.Less(t, a.key, b.key)
	assert.Less(t, b.key, c.key)
	assert.Less(t, c.key, d.key)
}

func TestFind(t *testing.T) {
	st := &pkState{timeline: []sample{packSample(1, 0, 0), packSample(3, 0, 0), packSample(4, 0, 0)}}
	tests := []struct {
		minute int64
		pos    int
		found  bool
	}{
		{0, 0, false}, {1, 0, true}, {2, 1, false}, {3, 1, true}, {4, 2, true}, {5, 3, false},
	}
	for _, tc := range tests {
		pos, found := st.find(tc.minute)
		assert.Equal(t, tc.pos, pos, "minute %d", tc.minute)
		assert.Equal(t, tc.found, found, "minute %d", tc.minute)
	}
}

func TestCeilMinute(t *testing.T) {
	tests := []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(0, 1), 1},
		{time.Unix(60, 0), 1},
		{time.Unix(61, 0), 2},
		{time.Unix(-30, 0), 0},
		{time.Unix(-60, 0), -1},
		{time.Unix(-90, 0), -1},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, ceilMinute(tc.t), "%s", tc.t)
	}
}

func TestFloorDiv(t *testing.T) {
	assert.Equal(t, int64(1), floorDiv(119, 60))
	assert.Equal(t, int64(-1), floorDiv(-60, 60))
	assert.Equal(t, int64(-2), floorDiv(-61, 60))
}

func TestPKTableRecordsStayPut(t *testing.T) {
	tab := newPKTable()
	i, first := tab.get(7)
	first.follower = 42
	for pk := int64(100); pk < 100+3<<chunkBits; pk++ {
		tab.get(pk)
	}
	again, ok := tab.lookup(7)
	assert.True(t, ok)
	assert.Same(t, first, again)
	assert.Equal(t, int64(42), tab.at(i).follower)
	assert.Equal(t, int32(1+3<<chunkBits), tab.len())
	_, ok = tab.lookup(8)
	assert.False(t, ok)
}
