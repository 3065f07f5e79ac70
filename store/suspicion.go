package store

import (
	"fmt"

	"github.com/mockstagram/pipeline/influencer"
)

// ValidateSuspicions rejects a non-positive pk or a zero CheckedAt, for
// SaveSuspicion. Errors wrap ErrInvalid.
func ValidateSuspicions(answers []influencer.Suspicion) error {
	for i, a := range answers {
		if a.PK <= 0 {
			return fmt.Errorf("%w: answer %d: pk %d is not positive", ErrInvalid, i, a.PK)
		}
		if a.CheckedAt.IsZero() {
			return fmt.Errorf("%w: answer %d (pk %d): zero check time", ErrInvalid, i, a.PK)
		}
	}
	return nil
}
