package httpapi_test

import (
	"testing"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/influencer"
)

// FuzzParseLeaderboardQuery: never panics; accepted limits are in range and
// accepted cursors round-trip through FormatCursor.
func FuzzParseLeaderboardQuery(f *testing.F) {
	for _, seed := range [][2]string{
		{"", ""}, {"50", ""}, {"1000", "9437297.1000004"}, {"0", ""}, {"1001", ""}, {"abc", ""},
		{"10", "x"}, {"10", "1.0"}, {"10", "-1.5"}, {"10", "5"}, {"10", ".5"}, {"10", "5."},
		{"10", "1.2.3"}, {"10", "10000000001.5"}, {"10", "99999999999999999999.1"}, {"1", "0.1"},
		{"-1", ""}, {"1e3", ""}, {" 10", ""}, {"10", "1 .2"}, {"10", "'; DROP TABLE samples; --"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, limitS, afterS string) {
		limit, after, err := httpapi.ParseLeaderboardQuery(limitS, afterS)
		if err != nil {
			return
		}
		if limit < 1 || limit > httpapi.MaxLeaderboardLimit {
			t.Fatalf("accepted limit %d from %q", limit, limitS)
		}
		if after == nil {
			if afterS != "" {
				t.Fatalf("cursor %q accepted as none", afterS)
			}
			return
		}
		if after.PK <= 0 || after.FollowerCount < 0 || after.FollowerCount > influencer.MaxCount {
			t.Fatalf("accepted cursor %+v from %q", *after, afterS)
		}
		back, err := httpapi.ParseCursor(httpapi.FormatCursor(*after))
		if err != nil || back != *after {
			t.Fatalf("cursor %+v does not round-trip: %+v, %v", *after, back, err)
		}
	})
}
