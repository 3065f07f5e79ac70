package handlers

import (
	"strings"
	"testing"
	"time"
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
			s.Minute = time.Date(2025, 3, 14, 9, 26, 0, 0, time.UTC) // set by the fetcher
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted an invalid sample %+v: %v", s, err)
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
func checkRefusedBody(t *testing.T, ferr *fetchError) {
	t.Helper()
	if ferr.class != ClassMalformed && ferr.class != ClassInvalid {
		t.Fatalf("refused with class %q, want %q or %q", ferr.class, ClassMalformed, ClassInvalid)
	}
	if ferr.retryable {
		t.Fatalf("a bad body is retryable: %+v", ferr)
	}
	if ferr.reason == "" || len(ferr.reason) > 400 {
		t.Fatalf("reason of %d bytes: %q", len(ferr.reason), ferr.reason)
	}
	if !utf8.ValidString(ferr.reason) || strings.ContainsRune(ferr.reason, 0) {
		t.Fatalf("reason is not storable text: %q", ferr.reason)
	}
}
