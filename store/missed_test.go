package store_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

func TestMissedBucketIsShardOf(t *testing.T) {
	pks := []int64{1, 9, 10, 99, 1_000_000, 1_999_999, 123456789012, math.MaxInt64, -5, math.MinInt64 + 1}
	for pk := int64(1_000_000); pk < 1_010_000; pk++ {
		pks = append(pks, pk)
	}
	for _, pk := range pks {
		assert.Equal(t, influencer.ShardOf(pk, store.MissedBuckets), store.MissedBucket(pk), "pk %d", pk)
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() { store.MissedBucket(1_234_567) }))
}

func TestGroupFailures(t *testing.T) {
	m0 := time.Date(2025, 3, 14, 9, 26, 0, 0, time.UTC)
	m1 := m0.Add(time.Minute)
	// pks of one bucket, as one shard of 1024 has them.
	var same []int64
	for pk := int64(1_000_000); len(same) < 8; pk++ {
		if store.MissedBucket(pk) == 7 {
			same = append(same, pk)
		}
	}
	other := int64(1_000_000)
	for store.MissedBucket(other) != 3 {
		other++
	}
	fail := func(pk int64, m time.Time, class, reason string) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: m, Class: class, Reason: reason, Attempts: 1}
	}
	tests := []struct {
		name string
		in   []influencer.Failure
		want []store.MissedGroup
	}{
		{"none", nil, nil},
		{"one group per minute, class and reason, pks ascending",
			[]influencer.Failure{
				fail(same[2], m0, "timeout", "t"), fail(same[0], m0, "timeout", "t"), fail(same[1], m0, "http_5xx", "HTTP 503"),
				fail(same[3], m1, "timeout", "t"), fail(same[4], m0, "timeout", "other"),
			},
			[]store.MissedGroup{
				{Minute: m0, Bucket: 7, Class: "http_5xx", Reason: "HTTP 503", PKs: []int64{same[1]}},
				{Minute: m0, Bucket: 7, Class: "timeout", Reason: "other", PKs: []int64{same[4]}},
				{Minute: m0, Bucket: 7, Class: "timeout", Reason: "t", PKs: []int64{same[0], same[2]}},
				{Minute: m1, Bucket: 7, Class: "timeout", Reason: "t", PKs: []int64{same[3]}},
			}},
		{"the first failure of a (pk, minute) counts",
			[]influencer.Failure{fail(same[0], m0, "timeout", "t"), fail(same[0], m0, "http_5xx", "x"), fail(same[0], m1, "http_5xx", "x")},
			[]store.MissedGroup{
				{Minute: m0, Bucket: 7, Class: "timeout", Reason: "t", PKs: []int64{same[0]}},
				{Minute: m1, Bucket: 7, Class: "http_5xx", Reason: "x", PKs: []int64{same[0]}},
			}},
		{"pks of other buckets make groups of their own",
			[]influencer.Failure{fail(same[0], m0, "timeout", "t"), fail(other, m0, "timeout", "t")},
			[]store.MissedGroup{
				{Minute: m0, Bucket: 3, Class: "timeout", Reason: "t", PKs: []int64{other}},
				{Minute: m0, Bucket: 7, Class: "timeout", Reason: "t", PKs: []int64{same[0]}},
			}},
		{"many reasons: the most frequent keep theirs, the rest are summarized",
			[]influencer.Failure{
				fail(same[0], m0, "connection", "dial a"), fail(same[1], m0, "connection", "dial b"),
				fail(same[2], m0, "connection", "dial c"), fail(same[3], m0, "connection", "dial d"),
				fail(same[4], m0, "connection", "dial e"), fail(same[5], m0, "connection", "dial a"),
				fail(same[6], m0, "connection", "dial e"), fail(same[7], m0, "timeout", "t"),
			},
			[]store.MissedGroup{
				{Minute: m0, Bucket: 7, Class: "connection", Reason: "dial a", PKs: []int64{same[0], same[5]}},
				{Minute: m0, Bucket: 7, Class: "connection", Reason: "dial b", PKs: []int64{same[1]}},
				{Minute: m0, Bucket: 7, Class: "connection", Reason: "dial c [and 1 other reasons]", PKs: []int64{same[2], same[3]}},
				{Minute: m0, Bucket: 7, Class: "connection", Reason: "dial e", PKs: []int64{same[4], same[6]}},
				{Minute: m0, Bucket: 7, Class: "timeout", Reason: "t", PKs: []int64{same[7]}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, store.GroupFailures(tc.in))
		})
	}
}
