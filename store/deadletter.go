package store

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ValidateDeadLetter checks what a store requires of a dead letter: an id,
// the topics, a receive time, no negative attempts, and text (including the
// metadata) that is valid UTF-8 without NUL bytes. Errors wrap ErrInvalid.
func ValidateDeadLetter(d DeadLetter) error {
	switch {
	case d.ID == "":
		return fmt.Errorf("%w: dead letter without id", ErrInvalid)
	case d.Topic == "" || d.OriginalTopic == "":
		return fmt.Errorf("%w: dead letter %s: topic %q / original topic %q missing", ErrInvalid, d.ID, d.Topic, d.OriginalTopic)
	case d.ReceivedAt.IsZero():
		return fmt.Errorf("%w: dead letter %s: no receive time", ErrInvalid, d.ID)
	case d.Attempts < 0:
		return fmt.Errorf("%w: dead letter %s: attempts %d negative", ErrInvalid, d.ID, d.Attempts)
	case d.PK < 0:
		return fmt.Errorf("%w: dead letter %s: pk %d negative", ErrInvalid, d.ID, d.PK)
	}
	texts := []string{d.ID, d.Topic, d.OriginalTopic, d.Reason, d.Class, d.Stage}
	for k, v := range d.Metadata {
		texts = append(texts, k, v)
	}
	for _, s := range texts {
		if !CleanText(s) {
			return fmt.Errorf("%w: dead letter %s: text %q is not valid UTF-8 without NUL", ErrInvalid, d.ID, s)
		}
	}
	return nil
}

// CleanText reports whether s can be stored as text: valid UTF-8 without NUL.
func CleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// ValidateDeadLetterFilter checks the page size and the pk. Errors wrap
// ErrInvalid.
func ValidateDeadLetterFilter(f DeadLetterFilter) error {
	if f.Limit < 1 || f.Limit > MaxDeadLetterLimit {
		return fmt.Errorf("%w: dead letter limit %d not in [1, %d]", ErrInvalid, f.Limit, MaxDeadLetterLimit)
	}
	if f.PK < 0 {
		return fmt.Errorf("%w: dead letter pk %d negative", ErrInvalid, f.PK)
	}
	return nil
}

// MaxDeadLetterLimit bounds one page of DeadLetters.
const MaxDeadLetterLimit = 10_000

// DeadLetter is one archived message of a dead-letter topic: a pk the
// fetcher could not fetch for its minute (fetcher_dlq), a task or result
// message a handler could not process (poison queue), kept so it can be
// listed and replayed.
type DeadLetter struct {
	ID            string            // the dead-letter message's UUID; archiving is idempotent on it
	Topic         string            // the dead-letter topic it came from
	OriginalTopic string            // the topic a replay publishes to
	Reason        string            // why it was dead-lettered
	Class         string            // failure class (timeout, not_found, malformed, panic, ...)
	Stage         string            // the stage that dead-lettered it
	Attempts      int               // attempts made before giving up
	Shard         *int              // the shard, when known
	PK            int64             // the one pk of a pk failure; 0 for a message of many pks (or none)
	Minute        time.Time         // the minute it was for; zero when unknown
	Payload       []byte            // the message payload, as received
	Metadata      map[string]string // every metadata entry, as received (trace context included)
	ReceivedAt    time.Time         // when the archiver stored it
	ReplayedAt    *time.Time        // when it was last replayed; nil when never
}

// DeadLetterFilter selects dead letters. Zero fields do not filter.
type DeadLetterFilter struct {
	IDs         []string  // only these ids
	Topic       string    // dead-letter topic, exact
	Reason      string    // substring of the reason (case-sensitive)
	PK          int64     // only letters of this one pk (pk failures: DeadLetter.PK)
	Since       time.Time // received at or after
	Until       time.Time // received before
	NotReplayed bool      // only letters never replayed
	Limit       int       // page size, in [1, MaxDeadLetterLimit]
	After       string    // keyset cursor: the id of the last letter of the previous page
}
