package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/store"
)

const (
	saveDeadLetterSQL = `
INSERT INTO dead_letters (id, topic, original_topic, reason, class, stage, attempts, shard, minute,
                          payload, metadata, received_at, replayed_at, pk)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING`
	// deadLettersSQL filters with nullable parameters; the keyset cursor is
	// the (received_at, id) of the letter whose id is $7 (none: no rows).
	deadLettersSQL = `
SELECT id, topic, original_topic, reason, class, stage, attempts, shard, minute,
       payload, metadata, received_at, replayed_at, coalesce(pk, 0)
FROM dead_letters
WHERE ($1::text[] IS NULL OR id = ANY($1::text[]))
  AND ($2::text = '' OR topic = $2::text)
  AND ($3::text = '' OR strpos(reason, $3::text) > 0)
  AND ($4::timestamptz IS NULL OR received_at >= $4::timestamptz)
  AND ($5::timestamptz IS NULL OR received_at < $5::timestamptz)
  AND (NOT $6::boolean OR replayed_at IS NULL)
  AND ($7::text = '' OR (received_at, id) > (SELECT received_at, id FROM dead_letters WHERE id = $7::text))
  AND ($9::bigint IS NULL OR pk = $9::bigint)
ORDER BY received_at, id
LIMIT $8`
	markReplayedSQL = `UPDATE dead_letters SET replayed_at = $2 WHERE id = $1`
)

// SaveDeadLetter implements store.Store.
func (s *Store) SaveDeadLetter(ctx context.Context, d store.DeadLetter) error {
	if err := store.ValidateDeadLetter(d); err != nil {
		return fmt.Errorf("save dead letter: %w", err)
	}
	meta := d.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("save dead letter %s: metadata: %w", d.ID, err)
	}
	payload := d.Payload
	if payload == nil {
		payload = []byte{}
	}
	_, err = s.pool.Exec(ctx, saveDeadLetterSQL, d.ID, d.Topic, d.OriginalTopic, d.Reason, d.Class, d.Stage,
		d.Attempts, d.Shard, nullTime(d.Minute), payload, metaJSON, d.ReceivedAt, d.ReplayedAt, nullPK(d.PK))
	if err != nil {
		return fmt.Errorf("save dead letter %s: %w", d.ID, err)
	}
	return nil
}

// DeadLetters implements store.Store.
func (s *Store) DeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.DeadLetter, error) {
	if err := store.ValidateDeadLetterFilter(f); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	var ids []string
	if len(f.IDs) > 0 {
		ids = f.IDs
	}
	rows, err := s.pool.Query(ctx, deadLettersSQL, ids, f.Topic, f.Reason, nullTime(f.Since), nullTime(f.Until),
		f.NotReplayed, f.After, f.Limit, nullPK(f.PK))
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeadLetter, error) {
		var (
			d        store.DeadLetter
			shard    *int32
			minute   *time.Time
			metaJSON []byte
		)
		if err := row.Scan(&d.ID, &d.Topic, &d.OriginalTopic, &d.Reason, &d.Class, &d.Stage, &d.Attempts,
			&shard, &minute, &d.Payload, &metaJSON, &d.ReceivedAt, &d.ReplayedAt, &d.PK); err != nil {
			return d, err
		}
		if shard != nil {
			v := int(*shard)
			d.Shard = &v
		}
		if minute != nil {
			d.Minute = minute.UTC()
		}
		if d.Payload == nil {
			d.Payload = []byte{}
		}
		d.Metadata = map[string]string{}
		if err := json.Unmarshal(metaJSON, &d.Metadata); err != nil {
			return d, fmt.Errorf("metadata of %s: %w", d.ID, err)
		}
		d.ReceivedAt = d.ReceivedAt.UTC()
		if d.ReplayedAt != nil {
			v := d.ReplayedAt.UTC()
			d.ReplayedAt = &v
		}
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// MarkReplayed implements store.Store.
func (s *Store) MarkReplayed(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, markReplayedSQL, id, at)
	if err != nil {
		return fmt.Errorf("mark dead letter %s replayed: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("mark dead letter %s replayed: %w", id, store.ErrNotFound)
	}
	return nil
}

// nullPK is a dead letter's pk column: NULL for none (0).
func nullPK(pk int64) *int64 {
	if pk == 0 {
		return nil
	}
	return &pk
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
