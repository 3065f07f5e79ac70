package mockstagramapi

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/mockstagram/pipeline/influencer"
)

// scannedInfluencer is what scanInfluencer read.
type scannedInfluencer struct {
	pk, followerCount, followingCount int64
	username                          string
}

// scanInfluencer reads the answer as the API writes it: one object with
// exactly the keys pk, username, followerCount and followingCount (any
// order, JSON whitespace between tokens), integer values that fit an int64
// and an ASCII username without escapes or control characters. ok is false
// for anything else (other keys, duplicates, null, escapes, non-ASCII,
// fractions, exponents, leading zeros, syntax errors): the caller then
// leaves the verdict to encoding/json. What it accepts, encoding/json
// decodes to the same values.
func scanInfluencer(b []byte) (out scannedInfluencer, ok bool) {
	const (
		havePK = 1 << iota
		haveUsername
		haveFollower
		haveFollowing
		haveAll = havePK | haveUsername | haveFollower | haveFollowing
	)
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return out, false
	}
	seen := 0
	for {
		i = skipSpace(b, i+1)
		// A key: a plain ASCII string.
		if i >= len(b) || b[i] != '"' {
			return out, false
		}
		end := i + 1
		for end < len(b) && b[end] != '"' {
			end++
		}
		if end >= len(b) {
			return out, false
		}
		key := b[i+1 : end]
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return out, false
		}
		i = skipSpace(b, i+1)
		var bit int
		switch string(key) { // no allocation: a comparison
		case "pk":
			bit = havePK
			out.pk, i, ok = scanInt(b, i)
		case "username":
			bit = haveUsername
			out.username, i, ok = scanPlainString(b, i)
		case "followerCount":
			bit = haveFollower
			out.followerCount, i, ok = scanInt(b, i)
		case "followingCount":
			bit = haveFollowing
			out.followingCount, i, ok = scanInt(b, i)
		default:
			return out, false
		}
		if !ok || seen&bit != 0 {
			return out, false
		}
		seen |= bit
		i = skipSpace(b, i)
		if i >= len(b) {
			return out, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return out, false
		}
	}
	if seen != haveAll || skipSpace(b, i+1) != len(b) {
		return out, false
	}
	return out, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanInt reads a JSON integer at b[i:]: an optional minus, then 0 or a
// digit 1-9 followed by digits, not followed by a fraction or exponent, and
// within the int64 range.
func scanInt(b []byte, i int) (v int64, next int, ok bool) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var u uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 19 { // 20 digits may overflow: leave it to encoding/json
			return 0, i, false
		}
		u = u*10 + uint64(b[i]-'0')
		i++
	}
	switch {
	case i == start, b[start] == '0' && i-start > 1:
		return 0, i, false
	case i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E'):
		return 0, i, false
	case !neg && u > math.MaxInt64, neg && u > math.MaxInt64+1:
		return 0, i, false
	}
	if neg {
		return int64(-u), i, true //nolint:gosec // in range: checked above
	}
	return int64(u), i, true
}

// scanPlainString reads a JSON string at b[i:] made of printable ASCII
// without escapes.
func scanPlainString(b []byte, i int) (s string, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	start := i + 1
	for i = start; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			return string(b[start:i]), i + 1, true
		}
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return "", i, false
		}
	}
	return "", i, false
}

// apiInfluencer is the influencer answer; pointers detect missing fields.
type apiInfluencer struct {
	PK             *int64  `json:"pk"`
	Username       *string `json:"username"`
	FollowerCount  *int64  `json:"followerCount"`
	FollowingCount *int64  `json:"followingCount"`
}

// decodeInfluencer parses and validates an influencer answer for pk. The
// sample has no minute (the caller sets it); its values are valid. The
// usual body is read by scanInfluencer without encoding/json; anything it
// does not take is decoded by encoding/json (the same verdicts either way).
func decodeInfluencer(pk int64, body []byte) (influencer.Sample, *Error) {
	var in apiInfluencer
	if f, ok := scanInfluencer(body); ok {
		in = apiInfluencer{PK: &f.pk, Username: &f.username, FollowerCount: &f.followerCount, FollowingCount: &f.followingCount}
		return checkInfluencer(pk, in)
	}
	return decodeInfluencerJSON(pk, body)
}

// decodeInfluencerJSON is decodeInfluencer with encoding/json alone.
func decodeInfluencerJSON(pk int64, body []byte) (influencer.Sample, *Error) {
	var in apiInfluencer
	if err := json.Unmarshal(body, &in); err != nil {
		return influencer.Sample{}, &Error{Class: ClassMalformed, Reason: "malformed body: " + truncate(err.Error(), 200)}
	}
	return checkInfluencer(pk, in)
}

// checkInfluencer checks a decoded answer for pk.
func checkInfluencer(pk int64, in apiInfluencer) (influencer.Sample, *Error) {
	var missing []string
	if in.PK == nil {
		missing = append(missing, "pk")
	}
	if in.Username == nil {
		missing = append(missing, "username")
	}
	if in.FollowerCount == nil {
		missing = append(missing, "followerCount")
	}
	if in.FollowingCount == nil {
		missing = append(missing, "followingCount")
	}
	if len(missing) > 0 {
		return influencer.Sample{}, &Error{Class: ClassMalformed, Reason: fmt.Sprintf("body misses %v", missing)}
	}
	if *in.PK != pk {
		return influencer.Sample{}, &Error{Class: ClassInvalid, Reason: fmt.Sprintf("body is for pk %d, asked for %d", *in.PK, pk)}
	}
	s := influencer.Sample{PK: pk, Username: *in.Username, FollowerCount: *in.FollowerCount, FollowingCount: *in.FollowingCount}
	if err := s.ValidateValues(); err != nil {
		return influencer.Sample{}, &Error{Class: ClassInvalid, Reason: truncate(err.Error(), 300)}
	}
	return s, nil
}

// suspicionRequest is the is_suspicious body.
type suspicionRequest struct {
	PK             int64  `json:"pk"`
	Username       string `json:"username"`
	FollowerCount  int64  `json:"followerCount"`
	FollowingCount int64  `json:"followingCount"`
}

// suspicionAnswer is the is_suspicious answer; pointers detect missing fields.
type suspicionAnswer struct {
	PK         *int64 `json:"pk"`
	Suspicious *bool  `json:"suspicious"`
}

// decodeSuspicion parses and checks an is_suspicious answer for pk.
func decodeSuspicion(pk int64, body []byte) (bool, *Error) {
	var a suspicionAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return false, &Error{Class: ClassMalformed, Reason: "malformed body: " + truncate(err.Error(), 200)}
	}
	if a.PK == nil || a.Suspicious == nil {
		return false, &Error{Class: ClassMalformed, Reason: "body misses pk or suspicious"}
	}
	if *a.PK != pk {
		return false, &Error{Class: ClassInvalid, Reason: fmt.Sprintf("body is for pk %d, asked for %d", *a.PK, pk)}
	}
	return *a.Suspicious, nil
}
