package mockstagramapi

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mockstagram/pipeline/influencer"
)

// FuzzDecodeInfluencer: decodeInfluencer never panics on a hostile API body.
// What it accepts is a valid sample for the pk asked for; what it refuses is
// a permanent error (malformed or invalid, never retried) whose reason is
// bounded, valid UTF-8 text without NUL bytes, since reasons are stored as
// missed entries and dead letters in text columns. The seed corpus is under
// testdata/fuzz/FuzzDecodeInfluencer (valid bodies, huge and NaN numbers,
// negatives, missing fields, nested garbage, hostile usernames).
func FuzzDecodeInfluencer(f *testing.F) {
	f.Add(int64(7), []byte(`{"pk":7,"username":"u","followerCount":1,"followingCount":2}`))
	f.Fuzz(func(t *testing.T, pk int64, body []byte) {
		s, ferr := decodeInfluencer(pk, body)
		if ferr == nil {
			if s.PK != pk {
				t.Fatalf("accepted a sample for pk %d when asked for %d", s.PK, pk)
			}
			if err := s.ValidateValues(); err != nil {
				t.Fatalf("accepted an invalid sample %+v: %v", s, err)
			}
			if !s.Minute.IsZero() || !s.FetchedAt.IsZero() {
				t.Fatalf("the decoder set the minute or fetch time: %+v", s)
			}
			return
		}
		checkRefusedBody(t, ferr)
		if s != (influencer.Sample{}) {
			t.Fatalf("refused, yet returned a sample: %+v", s)
		}
	})
}

// FuzzDecodeSuspicion: decodeSuspicion never panics on a hostile
// is_suspicious body, and refuses it as a permanent error.
func FuzzDecodeSuspicion(f *testing.F) {
	f.Add(int64(7), []byte(`{"pk":7,"suspicious":true}`))
	f.Add(int64(7), []byte(`{"pk":8,"suspicious":false}`))
	f.Add(int64(7), []byte(`{"pk":7,"suspicious":"yes"}`))
	f.Add(int64(7), []byte(`{"pk":7}`))
	f.Add(int64(7), []byte(`[]`))
	f.Fuzz(func(t *testing.T, pk int64, body []byte) {
		if _, ferr := decodeSuspicion(pk, body); ferr != nil {
			checkRefusedBody(t, ferr)
		}
	})
}

// checkRefusedBody: a refused API body is a permanent error (malformed or
// invalid, never retried) whose reason is bounded, valid UTF-8 text without
// NUL bytes (reasons are stored in text columns).
func checkRefusedBody(t *testing.T, ferr *Error) {
	t.Helper()
	if ferr.Class != ClassMalformed && ferr.Class != ClassInvalid {
		t.Fatalf("refused with class %q, want %q or %q", ferr.Class, ClassMalformed, ClassInvalid)
	}
	if ferr.Retryable {
		t.Fatalf("a bad body is retryable: %+v", ferr)
	}
	if ferr.Reason == "" || len(ferr.Reason) > 400 {
		t.Fatalf("reason of %d bytes: %q", len(ferr.Reason), ferr.Reason)
	}
	if !utf8.ValidString(ferr.Reason) || strings.ContainsRune(ferr.Reason, 0) {
		t.Fatalf("reason is not storable text: %q", ferr.Reason)
	}
}
