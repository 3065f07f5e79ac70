package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
)

var minute = time.Date(2026, 11, 25, 12, 7, 0, 0, time.UTC)

func TestTaskRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		task messages.Task
	}{
		{"with pks", messages.Task{Minute: minute, Shard: 17, Deadline: minute.Add(time.Minute), PKs: []int64{1000000, 1000017, 5}}},
		{"shard zero, deadline equals minute", messages.Task{Minute: minute, Shard: 0, Deadline: minute, PKs: []int64{1}}},
		{"no pks", messages.Task{Minute: minute, Shard: 3, Deadline: minute.Add(75 * time.Second), PKs: []int64{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg, err := messages.NewTask(tc.task)
			require.NoError(t, err)
			assert.NotEmpty(t, msg.UUID)
			assert.Equal(t, strconv.Itoa(tc.task.Shard), msg.Metadata.Get(messages.MetaShard))
			assert.Equal(t, "2026-11-25T12:07:00Z", msg.Metadata.Get(messages.MetaMinute))

			got, err := messages.DecodeTask(msg.Payload)
			require.NoError(t, err)
			assert.True(t, tc.task.Minute.Equal(got.Minute))
			assert.True(t, tc.task.Deadline.Equal(got.Deadline))
			assert.Equal(t, tc.task.Shard, got.Shard)
			assert.Equal(t, tc.task.PKs, got.PKs)
		})
	}
}

func TestNewTaskMinuteMetadataIsUTC(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("UTC+2", 2*60*60)
	msg, err := messages.NewTask(messages.Task{Minute: minute.In(loc), Shard: 1, Deadline: minute.Add(time.Minute), PKs: []int64{1}})
	require.NoError(t, err)
	assert.Equal(t, "2026-11-25T12:07:00Z", msg.Metadata.Get(messages.MetaMinute))
	assert.Equal(t, "1", msg.Metadata.Get(messages.MetaShard))
}

func taskJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestDecodeTaskRejects(t *testing.T) {
	t.Parallel()
	good := taskJSON(t, messages.Task{Minute: minute, Shard: 2, Deadline: minute.Add(time.Minute), PKs: []int64{1, 2}})
	_, err := messages.DecodeTask(good)
	require.NoError(t, err, "the base payload is valid")

	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"empty", []byte(""), "EOF"},
		{"invalid json", []byte(`{"minute":`), "unexpected EOF"},
		{"not an object", []byte(`[1,2]`), "cannot unmarshal array"},
		{"wrong type", []byte(`{"minute":"2026-11-25T12:07:00Z","shard":"2","deadline":"2026-11-25T12:08:00Z","pks":[1]}`), "cannot unmarshal string"},
		{"unknown field", []byte(`{"minute":"2026-11-25T12:07:00Z","shard":2,"deadline":"2026-11-25T12:08:00Z","pks":[1],"extra":1}`), `unknown field "extra"`},
		{"trailing data", append(append([]byte{}, good...), []byte(` {}`)...), "trailing data"},
		{"trailing garbage", append(append([]byte{}, good...), []byte(`x`)...), "trailing data"},
		{"missing minute", []byte(`{"shard":2,"deadline":"2026-11-25T12:08:00Z","pks":[1]}`), "task minute missing or not minute-aligned"},
		{"unaligned minute", taskJSON(t, messages.Task{Minute: minute.Add(time.Second), Shard: 2, Deadline: minute.Add(time.Minute), PKs: []int64{1}}), "task minute missing or not minute-aligned"},
		{"deadline before minute", taskJSON(t, messages.Task{Minute: minute, Shard: 2, Deadline: minute.Add(-time.Second), PKs: []int64{1}}), "task deadline before its minute"},
		{"negative shard", taskJSON(t, messages.Task{Minute: minute, Shard: -1, Deadline: minute.Add(time.Minute), PKs: []int64{1}}), "task shard -1 negative"},
		{"zero pk", taskJSON(t, messages.Task{Minute: minute, Shard: 2, Deadline: minute.Add(time.Minute), PKs: []int64{1, 0}}), "task pk 0 not positive"},
		{"negative pk", taskJSON(t, messages.Task{Minute: minute, Shard: 2, Deadline: minute.Add(time.Minute), PKs: []int64{-7}}), "task pk -7 not positive"},
		{"oversize payload", oversize(), "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := messages.DecodeTask(tc.payload)
			require.Error(t, err)
			assert.True(t, errors.Is(err, messages.ErrMalformed), "error %v must wrap ErrMalformed", err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, messages.Task{}, got)
		})
	}
}

func oversize() []byte {
	// Valid JSON beyond the limit: the size check must come first.
	var b bytes.Buffer
	b.WriteString(`{"minute":"2026-11-25T12:07:00Z","shard":0,"deadline":"2026-11-25T12:08:00Z","pks":[1`)
	b.WriteString(strings.Repeat(" ", messages.MaxPayload))
	b.WriteString(`]}`)
	return b.Bytes()
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	b := influencer.Batch{
		Minute: minute, Shard: 9,
		Samples: []influencer.Sample{
			{PK: 1000000, Username: "alice", FollowerCount: 100, FollowingCount: 0, Minute: minute, FetchedAt: minute.Add(2 * time.Second)},
			{PK: 1000009, Username: "bob", FollowerCount: 5, FollowingCount: 7, Minute: minute, FetchedAt: minute.Add(4 * time.Second)},
		},
		Failures: []influencer.Failure{{PK: 1000018, Minute: minute, Class: "timeout", Reason: "deadline exceeded", Attempts: 3}},
	}
	msg, err := messages.NewResult(b)
	require.NoError(t, err)
	assert.Equal(t, "9", msg.Metadata.Get(messages.MetaShard))
	assert.Equal(t, "2026-11-25T12:07:00Z", msg.Metadata.Get(messages.MetaMinute))

	got, err := messages.DecodeResult(msg.Payload)
	require.NoError(t, err)
	assertBatchEqual(t, b, got)
}

func assertBatchEqual(t *testing.T, want, got influencer.Batch) {
	t.Helper()
	// Times compare by instant; the JSON form is the canonical comparison.
	wj, err := json.Marshal(messages.ResultOf(want))
	require.NoError(t, err)
	gj, err := json.Marshal(messages.ResultOf(got))
	require.NoError(t, err)
	assert.JSONEq(t, string(wj), string(gj))
}

func TestDecodeResultRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		payload string
		want    string
	}{
		{"invalid json", `{`, "unexpected EOF"},
		{"unknown field", `{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":[],"bogus":true}`, `unknown field "bogus"`},
		{"unknown sample field", `{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":[{"pk":1,"x":2}]}`, `unknown field "x"`},
		{"trailing data", `{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":[]}{}`, "trailing data"},
		{"missing minute", `{"shard":1,"samples":[]}`, "result minute missing or not minute-aligned"},
		{"unaligned minute", `{"minute":"2026-11-25T12:07:30Z","shard":1,"samples":[]}`, "result minute missing or not minute-aligned"},
		{"negative shard", `{"minute":"2026-11-25T12:07:00Z","shard":-2,"samples":[]}`, "result shard -2 negative"},
		{"bad time", `{"minute":"yesterday","shard":1}`, "cannot parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := messages.DecodeResult([]byte(tc.payload))
			require.Error(t, err)
			assert.True(t, errors.Is(err, messages.ErrMalformed), "error %v must wrap ErrMalformed", err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, influencer.Batch{}, got)
		})
	}

	t.Run("oversize", func(t *testing.T) {
		t.Parallel()
		_, err := messages.DecodeResult(oversize())
		require.ErrorIs(t, err, messages.ErrMalformed)
		assert.Contains(t, err.Error(), "exceeds")
	})
}

func TestNewFetchDeadLetter(t *testing.T) {
	t.Parallel()
	d := messages.FetchDeadLetter{
		Failure: influencer.Failure{PK: 1000042, Minute: minute, Class: "http_5xx", Reason: "503 Service Unavailable", Attempts: 4},
		Shard:   12,
	}
	msg, err := messages.NewFetchDeadLetter(d)
	require.NoError(t, err)
	assert.Equal(t, "503 Service Unavailable", msg.Metadata.Get(messages.MetaReason))
	assert.Equal(t, "http_5xx", msg.Metadata.Get(messages.MetaClass))
	assert.Equal(t, messages.HandlerFetcher, msg.Metadata.Get(messages.MetaStage))
	assert.Equal(t, "4", msg.Metadata.Get(messages.MetaAttempts))
	assert.Equal(t, messages.DeadLetterPKFailure, msg.Metadata.Get(messages.MetaDeadLetterKind))
	assert.Equal(t, "12", msg.Metadata.Get(messages.MetaShard))
	assert.Equal(t, "2026-11-25T12:07:00Z", msg.Metadata.Get(messages.MetaMinute))
	assert.JSONEq(t,
		`{"pk":1000042,"minute":"2026-11-25T12:07:00Z","class":"http_5xx","reason":"503 Service Unavailable","attempts":4,"shard":12}`,
		string(msg.Payload))
}

func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":2,"deadline":"2026-11-25T12:08:00Z","pks":[1,2,3]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":0,"deadline":"2026-11-25T12:07:00Z","pks":[]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00+02:00","shard":0,"deadline":"2026-11-25T12:07:00Z","pks":null}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:01Z","shard":2,"deadline":"2026-11-25T12:08:00Z","pks":[1]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":-1,"deadline":"2026-11-25T12:08:00Z","pks":[0]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z"} {}`))
	f.Add([]byte(`{"x":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkDecoder(t, payload, messages.DecodeTask, messages.Task.Validate, messages.NewTask, func(a, b messages.Task) bool {
			return a.Minute.Equal(b.Minute) && a.Deadline.Equal(b.Deadline) && a.Shard == b.Shard && equalPKs(a.PKs, b.PKs)
		})
	})
}

// checkDecoder checks a decoder on a fuzzed payload: a refusal wraps
// ErrMalformed; what it accepts is valid and survives encode and decode
// unchanged.
func checkDecoder[T any](t *testing.T, payload []byte, decode func([]byte) (T, error), validate func(T) error,
	encode func(T) (*message.Message, error), same func(a, b T) bool) {
	t.Helper()
	v, err := decode(payload)
	if err != nil {
		if !errors.Is(err, messages.ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	if err := validate(v); err != nil {
		t.Fatalf("accepted an invalid value: %v", err)
	}
	msg, err := encode(v)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	again, err := decode(msg.Payload)
	if err != nil {
		t.Fatalf("re-decode %s: %v", msg.Payload, err)
	}
	if !same(v, again) {
		t.Fatalf("round trip changed the value: %+v != %+v", v, again)
	}
}

func equalPKs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":1,"samples":[{"pk":1,"username":"a","followerCount":1,"followingCount":0,"minute":"2026-11-25T12:07:00Z","fetchedAt":"2026-11-25T12:07:03.5Z"}],"failures":[{"pk":2,"minute":"2026-11-25T12:07:00Z","class":"timeout","reason":"x","attempts":2}]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":0,"samples":null}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":0,"samples":[],"failures":[]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:30Z","shard":0}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":-5}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":0}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := messages.DecodeResult(payload)
		if err != nil {
			if !errors.Is(err, messages.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		msg, err := messages.NewResult(b)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := messages.DecodeResult(msg.Payload)
		if err != nil {
			t.Fatalf("re-decode %s: %v", msg.Payload, err)
		}
		first, err := json.Marshal(messages.ResultOf(b))
		if err != nil {
			t.Fatal(err)
		}
		second, err := json.Marshal(messages.ResultOf(again))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the batch:\n%s\n%s", first, second)
		}
	})
}

func FuzzDecodeSuspicionTask(f *testing.F) {
	f.Add([]byte(`{"round":"2026-11-25T00:00:00Z","shard":2,"deadline":"2026-11-26T00:01:00Z","pks":[1,2,3]}`))
	f.Add([]byte(`{"round":"2026-11-25T00:00:00Z","shard":0,"deadline":"2026-11-25T00:00:00Z","pks":[]}`))
	f.Add([]byte(`{"round":"2026-11-25T00:00:00+02:00","shard":0,"deadline":"2026-11-26T00:00:00Z","pks":null}`))
	f.Add([]byte(`{"round":"2026-11-25T00:00:00Z","shard":-1,"deadline":"2026-11-26T00:00:00Z","pks":[0]}`))
	f.Add([]byte(`{"minute":"2026-11-25T12:07:00Z","shard":2,"deadline":"2026-11-25T12:08:00Z","pks":[1]}`))
	f.Add([]byte(`{"round":"2026-11-25T00:00:00Z"} {}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkDecoder(t, payload, messages.DecodeSuspicionTask, messages.SuspicionTask.Validate, messages.NewSuspicionTask,
			func(a, b messages.SuspicionTask) bool {
				return a.Round.Equal(b.Round) && a.Deadline.Equal(b.Deadline) && a.Shard == b.Shard && equalPKs(a.PKs, b.PKs)
			})
	})
}
