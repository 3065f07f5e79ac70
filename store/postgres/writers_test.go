package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/storetest"
)

// waitingWriters polls until n sessions of s's database wait for the
// registry lock (Record takes it shared, so a session holding it
// exclusively keeps every batch write waiting inside its statement).
func waitingWriters(t *testing.T, s *postgres.Store, n int) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var waiting int
		require.NoError(c, s.Pool().QueryRow(context.Background(), `
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			postgres.RegistryLockClass, postgres.RegistryLockID).Scan(&waiting))
		assert.Equal(c, n, waiting)
	}, 10*time.Second, 10*time.Millisecond)
}

// WithWriters bounds the batch writes that run at once: with one slot, a
// second batch waits for it (bounded by its context) while the first one
// runs, and gets it once the first is done; with two, both run.
func TestWritersBoundConcurrentBatchWrites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		writers, running int
	}{{1, 1}, {2, 2}} {
		t.Run(fmt.Sprintf("writers=%d", tc.writers), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()), postgres.WithWriters(tc.writers))
			holder, err := s.Pool().Acquire(ctx)
			require.NoError(t, err)
			defer holder.Release()
			_, err = holder.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, postgres.RegistryLockClass, postgres.RegistryLockID)
			require.NoError(t, err)

			first := make(chan error, 1)
			go func() {
				_, err := s.Record(ctx, txBatch(storetest.Now(), 3))
				first <- err
			}()
			waitingWriters(t, s, 1)

			second := txBatch(storetest.Now().Add(-time.Minute), 3)
			if tc.writers == 1 {
				short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				_, err = s.Record(short, second)
				cancel()
				require.Error(t, err, "the only slot is taken")
				assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
				assert.ErrorContains(t, err, "write slot")
				waitingWriters(t, s, 1) // it never reached the server
			}
			secondDone := make(chan error, 1)
			go func() {
				_, err := s.Record(ctx, second)
				secondDone <- err
			}()
			waitingWriters(t, s, tc.running)

			_, err = holder.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, postgres.RegistryLockClass, postgres.RegistryLockID)
			require.NoError(t, err)
			require.NoError(t, <-first)
			require.NoError(t, <-secondDone)
			assert.Equal(t, 3, storedPoints(t, s, txBatch(storetest.Now(), 3)))
			assert.Equal(t, 3, storedPoints(t, s, second))
		})
	}
}
