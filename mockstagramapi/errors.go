package mockstagramapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

// Failure classes of a request. They are stored with missed pks and dead
// letters, so they never change.
const (
	ClassNotFound    = "not_found"
	ClassTimeout     = "timeout"
	ClassConnection  = "connection"
	ClassServer      = "http_5xx"
	ClassRateLimited = "rate_limited"
	ClassClient      = "http_4xx"
	ClassMalformed   = "malformed"
	ClassOversize    = "oversize"
	ClassInvalid     = influencer.ClassInvalid // the same class the recorder gives a refused row
	// ClassCircuitOpen: the circuit breaker failed the request fast, without
	// sending it, because the API is failing; retryable like a 5xx.
	ClassCircuitOpen = "circuit_open"
)

// ErrRateLimitDeadline: the request was not sent, because the rate limit's
// next token comes at or after the caller's deadline (or ctx ended while
// waiting for it). The token is given back.
var ErrRateLimitDeadline = errors.New("deadline passed while waiting for the rate limit")

// Error is a classified failure of a request: permanent (Retryable false:
// the same request will fail again), transient (Retryable), or rate limited
// (class rate_limited, Retryable, with the server's Retry-After).
type Error struct {
	Class      string        // one of the Class constants
	Reason     string        // bounded, human-readable; stored as text
	Retryable  bool          // the same request may succeed later
	RetryAfter time.Duration // the server's Retry-After (429 only), at most MaxRetryAfter
}

func (e *Error) Error() string { return e.Class + ": " + e.Reason }

// AsError returns err's classified error. An error the client did not
// classify (from a fake, say) is a retryable connection error.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Class: ClassConnection, Reason: err.Error(), Retryable: true}
}

// statusError classifies an answer other than 200: 429 (retryable, with
// Retry-After, the header's value), the real server's unknown pk, 5xx
// (retryable), other 4xx.
func statusError(status int, retryAfter string, body []byte, now time.Time) *Error {
	switch {
	case status == http.StatusTooManyRequests:
		return &Error{Class: ClassRateLimited, Reason: "HTTP 429", Retryable: true,
			RetryAfter: ParseRetryAfter(retryAfter, now)}
	case isNotFound(status, body):
		return &Error{Class: ClassNotFound, Reason: "InfluencerNotFoundError"}
	case status >= 500:
		return &Error{Class: ClassServer, Reason: fmt.Sprintf("HTTP %d", status), Retryable: true}
	default:
		return &Error{Class: ClassClient, Reason: fmt.Sprintf("HTTP %d", status)}
	}
}

// isNotFound recognises the real server's unknown-pk answer:
// HTTP 500 {"error":{"name":"InfluencerNotFoundError"}} (or the same on 404).
func isNotFound(status int, body []byte) bool {
	if status != http.StatusInternalServerError && status != http.StatusNotFound {
		return false
	}
	var e struct {
		Error struct {
			Name string `json:"name"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error.Name == "InfluencerNotFoundError"
}

// MaxRetryAfter bounds the wait a Retry-After asks for.
const MaxRetryAfter = time.Minute

// ParseRetryAfter reads a Retry-After value (delay-seconds or an HTTP date,
// relative to now) as a wait in [0, MaxRetryAfter]; 0 when absent or
// unreadable. The seconds are clamped before they become a Duration, so a
// huge value is MaxRetryAfter, never an overflowed (negative) wait.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	// ParseUint returns the largest uint64 with ErrRange for all-digit
	// values that do not fit.
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		return time.Duration(min(secs, uint64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
