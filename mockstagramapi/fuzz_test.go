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
// negatives, missing fields, nested garbage, hostile usernames). Its
// verdict (sample or error, reason included) is encoding/json's: the
// hand-written scanner of the usual body changes the cost, never the answer.
func FuzzDecodeInfluencer(f *testing.F) {
	f.Add(int64(7), []byte(`{"pk":7,"username":"u","followerCount":1,"followingCount":2}`))
	// The scanner's edges: what it takes and what it leaves to encoding/json.
	for _, body := range []string{
		` { "followingCount" : 2 ,"username":"u", "pk":7,"followerCount":1 }` + "\n\t",
		`{"pk":7,"username":"u","followerCount":0,"followingCount":-0}`,
		`{"pk":7,"username":"u","followerCount":01,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":9223372036854775807,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":9223372036854775808,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":-9223372036854775808,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":-9223372036854775809,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":18446744073709551616,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":1e3,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":1.0,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":-,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":1,"followingCount":2,"pk":8}`,
		`{"PK":7,"username":"u","followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":"\u0075","followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":"a\"b","followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":"del\x7f","followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":"tab\there","followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":"ü","followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":null,"followerCount":1,"followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":1,"followingCount":2}x`,
		`{"pk":7,"username":"u","followerCount":1,"followingCount":2,}`,
		`{"pk":7,"username":"u","followerCount":1 "followingCount":2}`,
		`{"pk":7,"username":"u","followerCount":1,"followingCount":2`,
		`{"pk":7,"username":"","followerCount":1,"followingCount":2}`,
		`{}`, `{"pk":7}`, ``, ` `, `{"pk":7,"username":"u","followerCount":true,"followingCount":2}`,
	} {
		f.Add(int64(7), []byte(body))
	}
	f.Fuzz(func(t *testing.T, pk int64, body []byte) {
		s, ferr := decodeInfluencer(pk, body)
		js, jerr := decodeInfluencerJSON(pk, body)
		if s != js || (ferr == nil) != (jerr == nil) || (ferr != nil && *ferr != *jerr) {
			t.Fatalf("body %q: decoded %+v, %+v; encoding/json says %+v, %+v", body, s, ferr, js, jerr)
		}
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

// The scanner takes the body as the API writes it (so the fuzz target's
// comparison is not vacuous) and leaves the unusual to encoding/json.
func TestScanInfluencer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"pk":1000007,"username":"influencer-1000007","followerCount":1200,"followingCount":300}`, true},
		{` {"followingCount": 0, "pk": -3, "username": "a b", "followerCount": 10000000000} `, true},
		{`{"pk":7,"username":"u","followerCount":1,"followingCount":2,"verified":true}`, false},
		{`{"pk":7,"username":"\u00fc","followerCount":1,"followingCount":2}`, false},
		{`{"pk":7,"username":"u","followerCount":1e2,"followingCount":2}`, false},
	}
	for _, tt := range tests {
		_, ok := scanInfluencer([]byte(tt.body))
		if ok != tt.ok {
			t.Errorf("scanInfluencer(%s): ok %v, want %v", tt.body, ok, tt.ok)
		}
	}
	got, ok := scanInfluencer([]byte(tests[1].body))
	if want := (scannedInfluencer{pk: -3, username: "a b", followerCount: 10000000000}); !ok || got != want {
		t.Errorf("scanned %+v, want %+v", got, want)
	}
}
