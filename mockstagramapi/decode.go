package mockstagramapi

import (
	"encoding/json"
	"fmt"

	"github.com/mockstagram/pipeline/influencer"
)

// apiInfluencer is the influencer answer; pointers detect missing fields.
type apiInfluencer struct {
	PK             *int64  `json:"pk"`
	Username       *string `json:"username"`
	FollowerCount  *int64  `json:"followerCount"`
	FollowingCount *int64  `json:"followingCount"`
}

// decodeInfluencer parses and validates an influencer answer for pk. The
// sample has no minute (the caller sets it); its values are valid.
func decodeInfluencer(pk int64, body []byte) (influencer.Sample, *Error) {
	var in apiInfluencer
	if err := json.Unmarshal(body, &in); err != nil {
		return influencer.Sample{}, &Error{Class: ClassMalformed, Reason: "malformed body: " + truncate(err.Error(), 200)}
	}
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
