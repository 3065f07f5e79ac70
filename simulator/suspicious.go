package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/mockstagram/pipeline/influencer"
)

const maxSuspiciousBody = 64 << 10

// suspiciousRequest is the is_suspicious body; pointers tell missing fields
// from zeros.
type suspiciousRequest struct {
	PK             *int64  `json:"pk"`
	Username       *string `json:"username"`
	FollowerCount  *int64  `json:"followerCount"`
	FollowingCount *int64  `json:"followingCount"`
}

func (q suspiciousRequest) validate() error {
	var errs []error
	switch {
	case q.PK == nil:
		errs = append(errs, errors.New("pk is missing"))
	case *q.PK <= 0:
		errs = append(errs, fmt.Errorf("pk %d is not positive", *q.PK))
	}
	if q.Username == nil {
		errs = append(errs, errors.New("username is missing"))
	} else if err := influencer.ValidateUsername(*q.Username); err != nil {
		errs = append(errs, err)
	}
	for _, c := range []struct {
		name string
		v    *int64
	}{{"followerCount", q.FollowerCount}, {"followingCount", q.FollowingCount}} {
		switch {
		case c.v == nil:
			errs = append(errs, fmt.Errorf("%s is missing", c.name))
		case *c.v < 0 || *c.v > influencer.MaxCount:
			errs = append(errs, fmt.Errorf("%s %d out of range [0, %d]", c.name, *c.v, int64(influencer.MaxCount)))
		}
	}
	return errors.Join(errs...)
}

// serveSuspicious waits for its Capacity slot, then answers is_suspicious
// after a delay (asynchronous on the real server, so outside the slot) in
// [SuspiciousDelayMin, SuspiciousDelayMax] on the server's clock, or returns
// without an answer when the client gives up first.
func (s *Server) serveSuspicious(w http.ResponseWriter, r *http.Request) {
	if s.queue != nil && !s.queue.wait(r.Context()) {
		return // the client gave up while queued
	}
	var q suspiciousRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSuspiciousBody))
	if err := dec.Decode(&q); err != nil {
		s.writeBadRequest(w, fmt.Errorf("decode body: %w", err))
		return
	}
	if err := q.validate(); err != nil {
		s.writeBadRequest(w, err)
		return
	}

	rnd := newRNG(^s.cfg.Seed, s.posts.Add(1))
	span := s.cfg.SuspiciousDelayMax - s.cfg.SuspiciousDelayMin
	delay := s.cfg.SuspiciousDelayMin
	if span > 0 {
		delay += rnd.durationBelow(span + 1)
	}
	if s.cfg.SuspiciousNoDelay {
		delay = 0
	}
	if err := s.sleep(r.Context(), delay); err != nil {
		return
	}

	pk := *q.PK
	b := make([]byte, 0, 48)
	b = append(b, `{"pk":`...)
	b = strconv.AppendInt(b, pk, 10)
	b = append(b, `,"suspicious":`...)
	b = strconv.AppendBool(b, Suspicious(pk))
	b = append(b, '}')
	w.Header()["Content-Type"] = s.ctJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// errorBody is the JSON error document of the API.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Name    string `json:"name"`
	Message string `json:"message,omitempty"`
}

// writeBadRequest answers 400 {"error":{"name":"ValidationError","message":...}}.
func (s *Server) writeBadRequest(w http.ResponseWriter, err error) {
	body, mErr := json.Marshal(errorBody{Error: errorDetail{Name: "ValidationError", Message: err.Error()}})
	if mErr != nil { // cannot happen for strings; keep a valid answer anyway
		body = []byte(`{"error":{"name":"ValidationError"}}`)
	}
	w.Header()["Content-Type"] = s.ctJSON
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}
