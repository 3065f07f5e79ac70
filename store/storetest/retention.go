package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// retentionTests check Expire: dead letters and missed entries older than
// their cutoff go, newer ones stay, and nothing else changes.
var retentionTests = []contractTest{
	{"ExpireDeadLetters", testExpireDeadLetters},
	{"ExpireMissed", testExpireMissed},
}

func testExpireDeadLetters(t *testing.T, s store.Store) {
	ctx := context.Background()
	const day = 24 * 60
	// Received at minute(m) + 5s.
	saveDeadLetter(t, s, deadLetter("old", "fetcher_dlq", "not found", -9*day))
	saveDeadLetter(t, s, deadLetter("old-replayed", "result_handler_dlq", "poisoned", -8*day))
	require.NoError(t, s.MarkReplayed(ctx, "old-replayed", minute(-8*day+1)))
	saveDeadLetter(t, s, deadLetter("edge", "fetcher_dlq", "not found", -7*day))
	saveDeadLetter(t, s, deadLetter("recent", "fetcher_dlq", "not found", -6*day))
	saveDeadLetter(t, s, deadLetter("now", "fetcher_dlq", "not found", 0))

	got, err := s.Expire(ctx, time.Time{}, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, store.Expired{}, got, "zero times expire nothing")
	assert.Equal(t, []string{"old", "old-replayed", "edge", "recent", "now"}, ids(listDeadLetters(t, s, store.DeadLetterFilter{})))

	// The cutoff is exclusive: "edge" was received at minute(-7 days)+5s.
	got, err = s.Expire(ctx, minute(-7*day).Add(5*time.Second), time.Time{})
	require.NoError(t, err)
	assert.Equal(t, store.Expired{DeadLetters: 2}, got)
	assert.Equal(t, []string{"edge", "recent", "now"}, ids(listDeadLetters(t, s, store.DeadLetterFilter{})))

	got, err = s.Expire(ctx, minute(-7*day).Add(5*time.Second), time.Time{})
	require.NoError(t, err)
	assert.Equal(t, store.Expired{}, got, "idempotent")

	got, err = s.Expire(ctx, minute(-7*day).Add(6*time.Second), time.Time{})
	require.NoError(t, err)
	assert.Equal(t, store.Expired{DeadLetters: 1}, got)
	assert.Equal(t, []string{"recent", "now"}, ids(listDeadLetters(t, s, store.DeadLetterFilter{})))

	// An expired letter's id is free again (a redelivery after expiry is
	// archived anew).
	saveDeadLetter(t, s, deadLetter("old", "fetcher_dlq", "not found", -9*day))
	assert.Equal(t, []string{"old", "recent", "now"}, ids(listDeadLetters(t, s, store.DeadLetterFilter{})))
}

func testExpireMissed(t *testing.T, s store.Store) {
	ctx := context.Background()
	const day = 24 * 60
	fail := func(pk int64, m int, class string) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: minute(m), Class: class, Reason: "InfluencerNotFoundError"}
	}
	missedSince := func(m int) int64 {
		t.Helper()
		n, err := s.MissedSince(ctx, minute(m))
		require.NoError(t, err)
		return n
	}
	track(t, s, 1, 2, 3)
	old, recent := -3*day, -1*day
	// pks spread over buckets, several groups (classes) per minute.
	record(t, s, influencer.Batch{Minute: minute(old), Failures: []influencer.Failure{
		fail(1, old, "not_found"), fail(2, old, "not_found"), fail(3, old, "timeout"), fail(4000, old, "not_found"),
	}})
	record(t, s, influencer.Batch{Minute: minute(old + 1), Failures: []influencer.Failure{fail(1, old+1, "not_found")}})
	record(t, s, influencer.Batch{Minute: minute(recent), Failures: []influencer.Failure{
		fail(1, recent, "not_found"), fail(2, recent, "timeout"),
	}})
	record(t, s, batch(recent, sample(3, recent, 10, 1)))
	record(t, s, influencer.Batch{Minute: minute(0), Failures: []influencer.Failure{fail(2, 0, "not_found")}})
	require.EqualValues(t, 8, missedSince(old-1))
	before := summary(t, s, 3)

	got, err := s.Expire(ctx, time.Time{}, minute(old+1))
	require.NoError(t, err)
	assert.Equal(t, store.Expired{Missed: 4}, got, "the minute before the cutoff")
	assert.EqualValues(t, 4, missedSince(old-1))
	assert.EqualValues(t, 4, missedSince(old+1), "the cutoff minute is kept")

	got, err = s.Expire(ctx, time.Time{}, minute(-2*day))
	require.NoError(t, err)
	assert.Equal(t, store.Expired{Missed: 1}, got)
	assert.EqualValues(t, 3, missedSince(old-1))
	assert.EqualValues(t, 3, missedSince(recent))

	got, err = s.Expire(ctx, time.Time{}, minute(-2*day))
	require.NoError(t, err)
	assert.Equal(t, store.Expired{}, got, "idempotent")

	assert.Equal(t, before, summary(t, s, 3), "samples and summaries stay")
	tl, err := s.Timeline(ctx, 3, minute(old), minute(1), 10)
	require.NoError(t, err)
	assert.Equal(t, []influencer.Point{{Minute: minute(recent), FollowerCount: 10, FollowingCount: 1}}, tl)

	// A late sample for an expired miss is stored; a late failure for it is
	// missed again (the store cannot tell it from a first one).
	res := record(t, s, influencer.Batch{Minute: minute(old),
		Samples:  []influencer.Sample{sample(1, old, 5, 5)},
		Failures: []influencer.Failure{fail(2, old, "not_found")}})
	assert.Equal(t, store.RecordResult{Inserted: 1, Missed: 1}, res)
	assert.EqualValues(t, 4, missedSince(old-1))
}
