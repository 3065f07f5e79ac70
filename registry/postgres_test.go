package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

// TestLargeAddLetsRecordersIn adds a large range on Postgres while a
// recorder writes in a loop, and checks that a write started after the
// change's first batch completed before its last one: the registry lock,
// which Record shares, is held a batch at a time, not for the whole change.
// With the change in one transaction the write would wait for its commit.
func TestLargeAddLetsRecordersIn(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("slow")
	}
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s, err := postgres.New(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler), clockwork.NewFakeClockAt(now))
	require.NoError(t, err)
	t.Cleanup(s.Close)
	_, err = s.Track(ctx, []int64{1})
	require.NoError(t, err)

	const from, size = 10_000_000, 20 * registry.Batch
	var done atomic.Int64
	midChange := make(chan int64, 1) // Done after a write started and ended mid-change
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for m := 0; ; m++ {
			select {
			case <-stop:
				return
			default:
			}
			started := done.Load()
			minute := now.Add(time.Duration(m-600) * time.Minute)
			_, err := s.Record(ctx, influencer.Batch{Minute: minute, Samples: []influencer.Sample{{
				PK: 1, Username: "u", FollowerCount: int64(m), FollowingCount: 1, Minute: minute, FetchedAt: minute.Add(time.Second),
			}}})
			if err != nil {
				t.Errorf("record during the change: %v", err)
				return
			}
			if ended := done.Load(); started > 0 && ended < size {
				midChange <- ended
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)

	var got int64 = -1
	n, err := registry.New(s).Apply(ctx, registry.OpAdd, registry.Change{Range: fmt.Sprintf("%d-%d", from, from+size-1)},
		func(p registry.Progress) {
			done.Store(p.Done)
			if p.Done != size-registry.Batch {
				return
			}
			// Before the last batch: a write must have got in by now.
			select {
			case got = <-midChange:
			case <-time.After(time.Minute):
			}
		})
	require.NoError(t, err)
	assert.Equal(t, size, n)
	assert.Positive(t, got, "a recorder write started and finished while the change was in progress")
	assert.Less(t, got, int64(size))
	active, _, err := s.ActivePKs(ctx)
	require.NoError(t, err)
	assert.Len(t, active, size+1)
}
