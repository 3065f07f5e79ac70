package memory

import (
	"context"
	"time"

	"github.com/mockstagram/pipeline/store"
)

// Expire implements store.Store. The memory store deletes in one pass per
// kind (its locks are held for a map walk, not a disk write).
func (s *Store) Expire(ctx context.Context, deadLettersBefore, missedBefore time.Time) (store.Expired, error) {
	var out store.Expired
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if !deadLettersBefore.IsZero() {
		s.dlMu.Lock()
		for id, d := range s.deadLetters {
			if d.ReceivedAt.Before(deadLettersBefore) {
				delete(s.deadLetters, id)
				out.DeadLetters++
			}
		}
		s.dlMu.Unlock()
	}
	if !missedBefore.IsZero() {
		s.mu.Lock()
		out.Missed = s.expireMissedLocked(ceilUnix(missedBefore))
		s.mu.Unlock()
	}
	return out, nil
}

// expireMissedLocked deletes the missed groups of the minutes (Unix
// seconds) before cutoff and returns how many entries went; s.mu is held.
func (s *Store) expireMissedLocked(cutoff int64) int64 {
	var n int64
	for k, groups := range s.missed {
		if k.minute >= cutoff {
			continue
		}
		for _, g := range groups {
			n += int64(len(g.pks))
		}
		delete(s.missed, k)
		delete(s.missedPerMinute, k.minute)
	}
	return n
}
