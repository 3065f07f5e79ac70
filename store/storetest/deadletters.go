package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/store"
)

// deadLetterTests are the contract tests of the dead-letter archive.
var deadLetterTests = []contractTest{
	{"DeadLetterRoundTrip", testDeadLetterRoundTrip},
	{"DeadLetterIdempotent", testDeadLetterIdempotent},
	{"DeadLetterFilters", testDeadLetterFilters},
	{"DeadLetterPaging", testDeadLetterPaging},
	{"DeadLetterMarkReplayed", testDeadLetterMarkReplayed},
	{"DeadLetterInvalid", testDeadLetterInvalid},
}

func deadLetter(id, topic, reason string, received int) store.DeadLetter {
	shard := 7
	return store.DeadLetter{
		ID: id, Topic: topic, OriginalTopic: "original-" + topic,
		Reason: reason, Class: "http_5xx", Stage: "fetcher", Attempts: 3,
		Shard: &shard, PK: 1000001, Minute: minute(0),
		Payload:    []byte(`{"pk":1000001}`),
		Metadata:   map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "reason": reason},
		ReceivedAt: minute(received).Add(5 * time.Second),
	}
}

func saveDeadLetter(t *testing.T, s store.Store, d store.DeadLetter) {
	t.Helper()
	require.NoError(t, s.SaveDeadLetter(context.Background(), d))
}

func listDeadLetters(t *testing.T, s store.Store, f store.DeadLetterFilter) []store.DeadLetter {
	t.Helper()
	if f.Limit == 0 {
		f.Limit = 100
	}
	got, err := s.DeadLetters(context.Background(), f)
	require.NoError(t, err)
	require.NotNil(t, got)
	return got
}

func ids(ds []store.DeadLetter) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func testDeadLetterRoundTrip(t *testing.T, s store.Store) {
	full := deadLetter("a", "fetcher_dlq", "HTTP 503", 1)
	// A poisoned message: no shard, no minute, a payload that is not JSON
	// and no metadata.
	bare := store.DeadLetter{ID: "b", Topic: "result_handler_dlq", OriginalTopic: "fetcher_results",
		Reason: "malformed message: <html>", Class: "malformed", Stage: "recorder", Attempts: 1,
		Payload: []byte{0xff, 0x00, '<'}, ReceivedAt: minute(2)}
	saveDeadLetter(t, s, full)
	saveDeadLetter(t, s, bare)

	got := listDeadLetters(t, s, store.DeadLetterFilter{})
	bare.Metadata = map[string]string{}
	assert.Equal(t, []store.DeadLetter{full, bare}, got)
	assert.Empty(t, listDeadLetters(t, s, store.DeadLetterFilter{Topic: "nothing"}))
}

func testDeadLetterIdempotent(t *testing.T, s store.Store) {
	first := deadLetter("same-uuid", "fetcher_dlq", "HTTP 503", 1)
	saveDeadLetter(t, s, first)
	again := deadLetter("same-uuid", "fetcher_dlq", "redelivered with another reason", 3)
	saveDeadLetter(t, s, again)
	assert.Equal(t, []store.DeadLetter{first}, listDeadLetters(t, s, store.DeadLetterFilter{}))

	// A redelivery does not clear the replay mark either.
	at := minute(10)
	require.NoError(t, s.MarkReplayed(context.Background(), "same-uuid", at))
	saveDeadLetter(t, s, first)
	got := listDeadLetters(t, s, store.DeadLetterFilter{})
	require.Len(t, got, 1)
	require.NotNil(t, got[0].ReplayedAt)
	assert.Equal(t, at, *got[0].ReplayedAt)
}

func testDeadLetterFilters(t *testing.T, s store.Store) {
	saveDeadLetter(t, s, deadLetter("f1", "fetcher_dlq", "HTTP 503; gave up at the minute's deadline", 1))
	f2 := deadLetter("f2", "fetcher_dlq", "InfluencerNotFoundError", 2)
	f2.PK = 1000002
	saveDeadLetter(t, s, f2)
	r1 := deadLetter("r1", "result_handler_dlq", "malformed message: bad json", 3)
	r1.PK = 0 // a poisoned result: many pks
	saveDeadLetter(t, s, r1)
	saveDeadLetter(t, s, deadLetter("f3", "fetcher_dlq", "request timed out; gave up at the minute's deadline", 4))
	require.NoError(t, s.MarkReplayed(context.Background(), "f3", minute(9)))

	tests := []struct {
		name   string
		filter store.DeadLetterFilter
		want   []string
	}{
		{"all, by receive time", store.DeadLetterFilter{}, []string{"f1", "f2", "r1", "f3"}},
		{"topic", store.DeadLetterFilter{Topic: "fetcher_dlq"}, []string{"f1", "f2", "f3"}},
		{"other topic", store.DeadLetterFilter{Topic: "result_handler_dlq"}, []string{"r1"}},
		{"reason substring", store.DeadLetterFilter{Reason: "gave up"}, []string{"f1", "f3"}},
		{"reason is case-sensitive", store.DeadLetterFilter{Reason: "GAVE UP"}, []string{}},
		{"reason with LIKE wildcards is literal", store.DeadLetterFilter{Reason: "%"}, []string{}},
		{"since is inclusive", store.DeadLetterFilter{Since: minute(2).Add(5 * time.Second)}, []string{"f2", "r1", "f3"}},
		{"until is exclusive", store.DeadLetterFilter{Until: minute(3).Add(5 * time.Second)}, []string{"f1", "f2"}},
		{"since and until", store.DeadLetterFilter{Since: minute(2), Until: minute(4)}, []string{"f2", "r1"}},
		{"ids", store.DeadLetterFilter{IDs: []string{"f3", "r1", "unknown"}}, []string{"r1", "f3"}},
		{"not replayed", store.DeadLetterFilter{NotReplayed: true}, []string{"f1", "f2", "r1"}},
		{"pk", store.DeadLetterFilter{PK: 1000001}, []string{"f1", "f3"}},
		{"other pk", store.DeadLetterFilter{PK: 1000002}, []string{"f2"}},
		{"pk without letters", store.DeadLetterFilter{PK: 5}, []string{}},
		{"everything at once", store.DeadLetterFilter{Topic: "fetcher_dlq", Reason: "gave up", Since: minute(1), NotReplayed: true}, []string{"f1"}},
		{"limit", store.DeadLetterFilter{Limit: 2}, []string{"f1", "f2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ids(listDeadLetters(t, s, tc.filter)))
		})
	}
}

func testDeadLetterPaging(t *testing.T, s store.Store) {
	var want []string
	for i := range 7 {
		// Pairs share a receive time: the id breaks the tie.
		id := fmt.Sprintf("id-%d", 9-i)
		d := deadLetter(id, "fetcher_dlq", "HTTP 503", i/2)
		saveDeadLetter(t, s, d)
	}
	// received minute 0: id-9, id-8; 1: id-7, id-6; 2: id-5, id-4; 3: id-3.
	want = []string{"id-8", "id-9", "id-6", "id-7", "id-4", "id-5", "id-3"}

	var got []string
	after := ""
	for range 10 {
		page := listDeadLetters(t, s, store.DeadLetterFilter{Limit: 3, After: after})
		if len(page) == 0 {
			break
		}
		got = append(got, ids(page)...)
		after = page[len(page)-1].ID
	}
	assert.Equal(t, want, got)
	assert.Empty(t, listDeadLetters(t, s, store.DeadLetterFilter{After: "no-such-id"}))

	for _, limit := range []int{0, -1, store.MaxDeadLetterLimit + 1} {
		_, err := s.DeadLetters(context.Background(), store.DeadLetterFilter{Limit: limit})
		assert.ErrorIs(t, err, store.ErrInvalid, "limit %d", limit)
	}
	_, err := s.DeadLetters(context.Background(), store.DeadLetterFilter{Limit: 1, PK: -1})
	assert.ErrorIs(t, err, store.ErrInvalid, "negative pk")
}

func testDeadLetterMarkReplayed(t *testing.T, s store.Store) {
	ctx := context.Background()
	saveDeadLetter(t, s, deadLetter("x", "result_handler_dlq", "malformed", 1))
	saveDeadLetter(t, s, deadLetter("y", "result_handler_dlq", "malformed", 2))

	require.NoError(t, s.MarkReplayed(ctx, "x", minute(5)))
	got := listDeadLetters(t, s, store.DeadLetterFilter{})
	require.Len(t, got, 2)
	require.NotNil(t, got[0].ReplayedAt)
	assert.Equal(t, minute(5), *got[0].ReplayedAt)
	assert.Nil(t, got[1].ReplayedAt)

	// A second replay moves the mark.
	require.NoError(t, s.MarkReplayed(ctx, "x", minute(6)))
	got = listDeadLetters(t, s, store.DeadLetterFilter{IDs: []string{"x"}})
	require.Len(t, got, 1)
	assert.Equal(t, minute(6), *got[0].ReplayedAt)

	assert.ErrorIs(t, s.MarkReplayed(ctx, "nope", minute(7)), store.ErrNotFound)
}

func testDeadLetterInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		mod  func(d *store.DeadLetter)
	}{
		{"no id", func(d *store.DeadLetter) { d.ID = "" }},
		{"no topic", func(d *store.DeadLetter) { d.Topic = "" }},
		{"no original topic", func(d *store.DeadLetter) { d.OriginalTopic = "" }},
		{"no receive time", func(d *store.DeadLetter) { d.ReceivedAt = time.Time{} }},
		{"negative attempts", func(d *store.DeadLetter) { d.Attempts = -1 }},
		{"negative pk", func(d *store.DeadLetter) { d.PK = -1 }},
		{"NUL in reason", func(d *store.DeadLetter) { d.Reason = "a\x00b" }},
		{"invalid UTF-8 in metadata", func(d *store.DeadLetter) { d.Metadata = map[string]string{"k": "\xff"} }},
	}
	for _, tc := range tests {
		d := deadLetter("bad", "fetcher_dlq", "HTTP 503", 1)
		tc.mod(&d)
		assert.ErrorIs(t, s.SaveDeadLetter(ctx, d), store.ErrInvalid, tc.name)
	}
	assert.Empty(t, listDeadLetters(t, s, store.DeadLetterFilter{}))
}
