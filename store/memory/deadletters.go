package memory

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mockstagram/pipeline/store"
)

// SaveDeadLetter implements store.Store.
func (s *Store) SaveDeadLetter(ctx context.Context, d store.DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.ValidateDeadLetter(d); err != nil {
		return fmt.Errorf("save dead letter: %w", err)
	}
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	if _, dup := s.deadLetters[d.ID]; dup {
		return nil
	}
	s.deadLetters[d.ID] = copyDeadLetter(d)
	return nil
}

// DeadLetters implements store.Store.
func (s *Store) DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := store.ValidateDeadLetterFilter(f); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	var after *store.DeadLetter
	if f.After != "" {
		a, ok := s.deadLetters[f.After]
		if !ok {
			return []store.DeadLetter{}, nil
		}
		after = &a
	}
	out := []store.DeadLetter{}
	for _, d := range s.deadLetters {
		switch {
		case len(f.IDs) > 0 && !slices.Contains(f.IDs, d.ID),
			f.Topic != "" && d.Topic != f.Topic,
			f.Reason != "" && !strings.Contains(d.Reason, f.Reason),
			f.PK != 0 && d.PK != f.PK,
			!f.Since.IsZero() && d.ReceivedAt.Before(f.Since),
			!f.Until.IsZero() && !d.ReceivedAt.Before(f.Until),
			f.NotReplayed && d.ReplayedAt != nil,
			after != nil && compareDeadLetters(d, *after) <= 0:
			continue
		}
		out = append(out, copyDeadLetter(d))
	}
	slices.SortFunc(out, compareDeadLetters)
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// MarkReplayed implements store.Store.
func (s *Store) MarkReplayed(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	d, ok := s.deadLetters[id]
	if !ok {
		return fmt.Errorf("mark dead letter %s replayed: %w", id, store.ErrNotFound)
	}
	at = at.UTC()
	d.ReplayedAt = &at
	s.deadLetters[id] = d
	return nil
}

// compareDeadLetters orders by receive time, then id.
func compareDeadLetters(a, b store.DeadLetter) int {
	if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// copyDeadLetter returns a deep copy with UTC times (as Postgres returns them).
func copyDeadLetter(d store.DeadLetter) store.DeadLetter {
	d.Payload = slices.Clone(d.Payload)
	if d.Payload == nil {
		d.Payload = []byte{}
	}
	d.Metadata = maps.Clone(d.Metadata)
	if d.Metadata == nil {
		d.Metadata = map[string]string{}
	}
	if d.Shard != nil {
		v := *d.Shard
		d.Shard = &v
	}
	if d.ReplayedAt != nil {
		v := d.ReplayedAt.UTC()
		d.ReplayedAt = &v
	}
	if !d.Minute.IsZero() {
		d.Minute = d.Minute.UTC()
	}
	d.ReceivedAt = d.ReceivedAt.UTC()
	return d
}
