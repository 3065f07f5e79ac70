package messages

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// SuspicionTask asks the suspicion checker to refresh the is_suspicious
// answers of one shard's pks for a round (a day by default).
type SuspicionTask struct {
	// Round is the start of the refresh round: a pk answered at or after it
	// is current and not checked again (redeliveries and replays are cheap).
	Round time.Time `json:"round"`
	Shard int       `json:"shard"`
	// Deadline: the next round's task for the shard supersedes this one; a
	// task received after it is skipped (counted), unfinished checks stop.
	Deadline time.Time `json:"deadline"`
	PKs      []int64   `json:"pks"`
}

// Validate reports why a suspicion task cannot be worked on.
func (t SuspicionTask) Validate() error {
	var errs []error
	if t.Round.IsZero() {
		errs = append(errs, errors.New("suspicion task round missing"))
	}
	if !t.Deadline.After(t.Round) {
		errs = append(errs, errors.New("suspicion task deadline not after its round"))
	}
	return errors.Join(append(errs, shardErrors("suspicion task", t.Shard, t.PKs)...)...)
}

// NewSuspicionTask builds the message for a suspicion task (metadata shard
// and minute = the round).
func NewSuspicionTask(t SuspicionTask) (*message.Message, error) {
	return newJSON(t, t.Shard, t.Round)
}

// DecodeSuspicionTask decodes and validates a suspicion task payload.
func DecodeSuspicionTask(payload []byte) (SuspicionTask, error) {
	var t SuspicionTask
	if err := decodeStrict(payload, &t); err != nil {
		return SuspicionTask{}, err
	}
	if err := t.Validate(); err != nil {
		return SuspicionTask{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return t, nil
}

// NewSuspicionDeadLetter builds a suspicion_dlq record for one pk the
// checker gave up on (Minute is the round); same shape as a fetch dead letter.
func NewSuspicionDeadLetter(d FetchDeadLetter) (*message.Message, error) {
	return newPKDeadLetter(d, HandlerSuspicion)
}
