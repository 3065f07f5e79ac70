package messages_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
)

// Payloads as the pipeline wrote them before the wire types moved out of
// the domain (JSON tags on influencer.Batch, Sample and Failure): stored
// dead letters and messages still in a topic must decode, and what is
// written now must be the same bytes.
func TestResultWireFormatIsStable(t *testing.T) {
	t.Parallel()
	plus1 := time.FixedZone("x", 3600)
	for _, tc := range []struct {
		name    string
		payload string
		batch   influencer.Batch
	}{
		{"samples and failures",
			`{"minute":"2026-11-25T12:07:00Z","shard":9,"samples":[{"pk":1000000,"username":"alice","followerCount":100,"followingCount":0,"minute":"2026-11-25T12:07:00Z","fetchedAt":"2026-11-25T12:07:02.345Z"},{"pk":1000009,"username":"bøb \"q\" \u003cx\u003e","followerCount":10000000000,"followingCount":7,"minute":"2026-11-25T13:07:00+01:00","fetchedAt":"2026-11-25T12:07:04Z"}],"failures":[{"pk":1000018,"minute":"2026-11-25T12:07:00Z","class":"timeout","reason":"deadline exceeded","attempts":3},{"pk":1000027,"minute":"2026-11-25T12:07:00Z","class":"invalid","reason":"username is empty"}]}`,
			influencer.Batch{Minute: minute, Shard: 9, Samples: []influencer.Sample{
				{PK: 1000000, Username: "alice", FollowerCount: 100, Minute: minute, FetchedAt: minute.Add(2345 * time.Millisecond)},
				{PK: 1000009, Username: `bøb "q" <x>`, FollowerCount: 10000000000, FollowingCount: 7, Minute: minute.In(plus1), FetchedAt: minute.Add(4 * time.Second)},
			}, Failures: []influencer.Failure{
				{PK: 1000018, Minute: minute, Class: "timeout", Reason: "deadline exceeded", Attempts: 3},
				{PK: 1000027, Minute: minute, Class: "invalid", Reason: "username is empty"},
			}}},
		{"no samples", `{"minute":"2026-11-25T12:07:00Z","shard":0,"samples":null}`,
			influencer.Batch{Minute: minute}},
		{"empty samples", `{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":[]}`,
			influencer.Batch{Minute: minute, Shard: 1, Samples: []influencer.Sample{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := messages.DecodeResult([]byte(tc.payload))
			require.NoError(t, err)
			assertBatchEqual(t, tc.batch, got)
			assert.Equal(t, tc.batch.Samples == nil, got.Samples == nil, "null and [] samples stay apart")

			msg, err := messages.NewResult(tc.batch)
			require.NoError(t, err)
			assert.Equal(t, tc.payload, string(msg.Payload))
		})
	}
}

func TestFetchDeadLetterWireFormatIsStable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		payload string
		letter  messages.FetchDeadLetter
	}{
		{`{"pk":1000042,"minute":"2026-11-25T12:07:00Z","class":"http_5xx","reason":"503","attempts":4,"shard":12}`,
			messages.FetchDeadLetter{Failure: influencer.Failure{PK: 1000042, Minute: minute, Class: "http_5xx", Reason: "503", Attempts: 4}, Shard: 12}},
		{`{"pk":1000043,"minute":"2026-11-25T12:07:00Z","class":"timeout","reason":"x","shard":0}`,
			messages.FetchDeadLetter{Failure: influencer.Failure{PK: 1000043, Minute: minute, Class: "timeout", Reason: "x"}}},
	} {
		var got messages.FetchDeadLetter
		require.NoError(t, json.Unmarshal([]byte(tc.payload), &got))
		assert.True(t, tc.letter.Minute.Equal(got.Minute))
		got.Minute = tc.letter.Minute
		assert.Equal(t, tc.letter, got)

		msg, err := messages.NewFetchDeadLetter(tc.letter)
		require.NoError(t, err)
		assert.Equal(t, tc.payload, string(msg.Payload))
	}
}

func TestResultOfAndBatchRoundTrip(t *testing.T) {
	t.Parallel()
	b := influencer.Batch{Minute: minute, Shard: 2,
		Samples:  []influencer.Sample{{PK: 1, Username: "a", FollowerCount: 3, FollowingCount: 4, Minute: minute, FetchedAt: minute.Add(time.Second)}},
		Failures: []influencer.Failure{{PK: 2, Minute: minute, Class: "timeout", Reason: "r", Attempts: 1}}}
	assert.Equal(t, b, messages.ResultOf(b).Batch())
	assert.Equal(t, influencer.Batch{Minute: minute}, messages.ResultOf(influencer.Batch{Minute: minute}).Batch())
}
