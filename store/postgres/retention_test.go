package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/storetest"
)

// TestMaintainExpires fills more than a batch of old dead letters and
// missed rows and checks that Maintain deletes them (several statements of
// store.ExpireBatch) under the configured retentions and keeps the newer.
func TestMaintainExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := storetest.Now()
	clock := clockwork.NewFakeClockAt(now)
	s, _ := newStore(t, clock, postgres.WithDeadLetterRetention(48*time.Hour), postgres.WithMissedRetention(24*time.Hour))
	const old = 2*store.ExpireBatch + 500
	_, err := s.Pool().Exec(ctx, `
INSERT INTO dead_letters (id, topic, original_topic, reason, class, stage, attempts, payload, metadata, received_at)
SELECT 'dl-' || i, 'fetcher_dlq', 'fetcher_tasks', 'InfluencerNotFoundError', 'not_found', 'fetcher', 1, ''::bytea, '{}'::jsonb,
       $1::timestamptz - interval '49 hours' + i * interval '1 millisecond'
FROM generate_series(1, $2::integer) AS i
UNION ALL
SELECT 'keep-' || i, 'fetcher_dlq', 'fetcher_tasks', 'InfluencerNotFoundError', 'not_found', 'fetcher', 1, ''::bytea, '{}'::jsonb,
       $1::timestamptz - interval '47 hours'
FROM generate_series(1, 3) AS i`, now, old)
	require.NoError(t, err)
	// Old missed rows: a minute each, one pk each, spread over buckets;
	// the kept ones are an hour old.
	_, err = s.Pool().Exec(ctx, `
INSERT INTO missed_batches (minute, bucket, class, reason, n, pks, recorded_at)
SELECT $1::timestamptz - interval '25 hours' - (i / 1024) * interval '1 minute', i % 1024, 'not_found', 'r', 2,
       ARRAY[i, i + 1000000]::bigint[], $1::timestamptz
FROM generate_series(0, $2::integer - 1) AS i
UNION ALL
SELECT $1::timestamptz - interval '1 hour', i, 'timeout', 'r', 1, ARRAY[i]::bigint[], $1::timestamptz
FROM generate_series(0, 4) AS i`, now, old)
	require.NoError(t, err)
	missed, err := s.MissedSince(ctx, time.Time{})
	require.NoError(t, err)
	require.EqualValues(t, 2*old+5, missed)

	require.NoError(t, s.Maintain(ctx))

	letters, err := s.DeadLetters(ctx, store.DeadLetterFilter{Limit: 100})
	require.NoError(t, err)
	var ids []string
	for _, d := range letters {
		ids = append(ids, d.ID)
	}
	assert.Equal(t, []string{"keep-1", "keep-2", "keep-3"}, ids)
	missed, err = s.MissedSince(ctx, time.Time{})
	require.NoError(t, err)
	assert.EqualValues(t, 5, missed, "the hour-old misses stay")

	got, err := s.Expire(ctx, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, store.Expired{}, got, "nothing left to expire")
}
