package influencer

import (
	"time"
)

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
	Since       time.Time // received at or after
	Until       time.Time // received before
	NotReplayed bool      // only letters never replayed
	Limit       int       // page size, in [1, MaxDeadLetterLimit]
	After       string    // keyset cursor: the id of the last letter of the previous page
}
