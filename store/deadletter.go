package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mockstagram/pipeline/influencer"
)

// ValidateDeadLetter checks what a store requires of a dead letter: an id,
// the topics, a receive time, no negative attempts, and text (including the
// metadata) that is valid UTF-8 without NUL bytes. Errors wrap ErrInvalid.
func ValidateDeadLetter(d influencer.DeadLetter) error {
	switch {
	case d.ID == "":
		return fmt.Errorf("%w: dead letter without id", ErrInvalid)
	case d.Topic == "" || d.OriginalTopic == "":
		return fmt.Errorf("%w: dead letter %s: topic %q / original topic %q missing", ErrInvalid, d.ID, d.Topic, d.OriginalTopic)
	case d.ReceivedAt.IsZero():
		return fmt.Errorf("%w: dead letter %s: no receive time", ErrInvalid, d.ID)
	case d.Attempts < 0:
		return fmt.Errorf("%w: dead letter %s: attempts %d negative", ErrInvalid, d.ID, d.Attempts)
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

// ValidateDeadLetterFilter checks the page size. Errors wrap ErrInvalid.
func ValidateDeadLetterFilter(f influencer.DeadLetterFilter) error {
	if f.Limit < 1 || f.Limit > influencer.MaxDeadLetterLimit {
		return fmt.Errorf("%w: dead letter limit %d not in [1, %d]", ErrInvalid, f.Limit, influencer.MaxDeadLetterLimit)
	}
	return nil
}
