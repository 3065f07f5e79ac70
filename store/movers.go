package store

import (
	"fmt"
	"time"
)

// GrowthLookback bounds how far before an instant a store looks for the
// value "at" it (Store.PointAt): the newest stored minute M with
// at-GrowthLookback < M <= at. A gap longer than that has no value.
const GrowthLookback = time.Hour

// MoversWindow is the window of the top-movers list the stores keep.
const MoversWindow = 24 * time.Hour

// MaxMovers is how many movers a store keeps per window and direction (the
// largest page Movers returns).
const MaxMovers = 100

// Direction orders a movers list: Up lists the largest follower gains
// first, Down the largest losses.
type Direction int8

const (
	Up   Direction = 1
	Down Direction = -1
)

// Mover is one row of a movers list: an active influencer whose follower
// count moved by Growth = FollowerCount - BaseFollowerCount over the window,
// FollowerCount being its current count when the list was computed and
// BaseFollowerCount its value at BaseMinute (see Store.PointAt).
type Mover struct {
	Rank              int // 1-based position in the list
	PK                int64
	Username          string
	FollowerCount     int64
	BaseFollowerCount int64
	BaseMinute        time.Time
	Growth            int64
}

// Movers is a computed movers list.
type Movers struct {
	// ComputedAt is the now of the RecomputeMovers call that computed it;
	// zero when none ever ran for the window.
	ComputedAt time.Time
	Items      []Mover
}

// ValidateMovers checks a movers query: a positive window of whole
// minutes, Up or Down, and 1 <= limit <= MaxMovers. Errors wrap ErrInvalid.
func ValidateMovers(window time.Duration, dir Direction, limit int) error {
	if err := ValidateMoversWindow(window); err != nil {
		return err
	}
	if dir != Up && dir != Down {
		return fmt.Errorf("%w: movers direction %d is neither up nor down", ErrInvalid, dir)
	}
	if limit < 1 || limit > MaxMovers {
		return fmt.Errorf("%w: movers limit %d not in [1, %d]", ErrInvalid, limit, MaxMovers)
	}
	return nil
}

// ValidateMoversWindow checks a movers window: a positive number of whole
// minutes. Errors wrap ErrInvalid.
func ValidateMoversWindow(window time.Duration) error {
	if window <= 0 || window%time.Minute != 0 {
		return fmt.Errorf("%w: movers window %s is not a positive number of minutes", ErrInvalid, window)
	}
	return nil
}
