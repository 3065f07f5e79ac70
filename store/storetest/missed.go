package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// missedTests check the grouped misses (store.GroupFailures): exact counts
// per minute whatever the buckets, reasons and batches, a pk never both
// missed and stored in a minute, redeliveries changing nothing.
var missedTests = []contractTest{
	{"MissedAgainstModel", testMissedAgainstModel},
	{"MissedManyReasons", testMissedManyReasons},
	{"ConcurrentMissAndStore", testConcurrentMissAndStore},
}

// missedPerMinute returns MissedSince(minute m) - MissedSince(minute m+1)
// for m in [0, minutes).
func missedPerMinute(t *testing.T, s store.Store, minutes int) []int64 {
	t.Helper()
	out := make([]int64, minutes)
	next := int64(0)
	for m := minutes; m >= 0; m-- {
		n, err := s.MissedSince(context.Background(), minute(m))
		require.NoError(t, err)
		if m < minutes {
			out[m] = n - next
		}
		next = n
	}
	return out
}

// storedPerMinute counts the stored points of pks 1..pks per minute.
func storedPerMinute(t *testing.T, s store.Store, pks int64, minutes int) []int64 {
	t.Helper()
	out := make([]int64, minutes)
	for pk := int64(1); pk <= pks; pk++ {
		tl, err := s.Timeline(context.Background(), pk, minute(0), minute(minutes), 10*minutes)
		require.NoError(t, err)
		for _, p := range tl {
			out[int(p.Minute.Sub(minute(0))/time.Minute)]++
		}
	}
	return out
}

// testMissedAgainstModel records random batches (samples and failures of
// pks spread over many buckets, several minutes per batch, redeliveries,
// shards that do not match the pks) and compares every minute's missed
// count, and what Record reports, with a model: a (pk, minute) is missed
// once its first failure is recorded while it has no sample, and no longer
// once a sample comes.
func testMissedAgainstModel(t *testing.T, s store.Store) {
	const (
		pks     = 300
		minutes = 4
	)
	rng := rand.New(rand.NewPCG(7, 9))
	type key struct {
		pk int64
		m  int
	}
	stored := map[key]bool{}
	missed := map[key]bool{}
	classes := []string{"timeout", "http_5xx", "connection"}
	var batches []influencer.Batch
	for i := range 60 {
		if i > 0 && rng.IntN(5) == 0 {
			// A redelivery of an earlier batch.
			batches = append(batches, batches[rng.IntN(len(batches))])
			continue
		}
		b := influencer.Batch{Minute: minute(rng.IntN(minutes)), Shard: rng.IntN(8)}
		seen := map[int64]bool{}
		for range 1 + rng.IntN(40) {
			pk := 1 + rng.Int64N(pks)
			m := rng.IntN(minutes)
			if rng.IntN(3) == 0 && !seen[pk] {
				seen[pk] = true
				b.Samples = append(b.Samples, sample(pk, m, pk, int64(m)))
				continue
			}
			c := classes[rng.IntN(len(classes))]
			b.Failures = append(b.Failures, influencer.Failure{PK: pk, Minute: minute(m), Class: c,
				Reason: fmt.Sprintf("%s of pk %d", c, pk%3)})
		}
		batches = append(batches, b)
	}
	for i, b := range batches {
		var want store.RecordResult
		for _, smp := range b.Samples {
			k := key{smp.PK, int(smp.Minute.Sub(minute(0)) / time.Minute)}
			if stored[k] {
				want.Duplicates++
				continue
			}
			stored[k], missed[k] = true, false
			want.Inserted++
		}
		for _, f := range b.Failures {
			k := key{f.PK, int(f.Minute.Sub(minute(0)) / time.Minute)}
			if stored[k] || missed[k] {
				continue
			}
			missed[k] = true
			want.Missed++
		}
		require.Equal(t, want, record(t, s, b), "batch %d", i)
	}
	wantMissed, wantStored := make([]int64, minutes), make([]int64, minutes)
	for k, v := range missed {
		if v {
			wantMissed[k.m]++
		}
	}
	for k := range stored {
		wantStored[k.m]++
	}
	assert.Equal(t, wantMissed, missedPerMinute(t, s, minutes))
	assert.Equal(t, wantStored, storedPerMinute(t, s, pks, minutes))
}

// testMissedManyReasons: failures whose reasons all differ (say connection
// errors naming the pk) still count one miss each, with their class, and
// samples fill them one by one.
func testMissedManyReasons(t *testing.T, s store.Store) {
	ctx := context.Background()
	b := influencer.Batch{Minute: minute(0), Shard: 3}
	for pk := int64(1); pk <= 200; pk++ {
		b.Failures = append(b.Failures, influencer.Failure{PK: pk, Minute: minute(0), Class: "connection",
			Reason: fmt.Sprintf(`Get "http://api/%d": connection refused`, pk)})
	}
	assert.Equal(t, store.RecordResult{Missed: 200}, record(t, s, b))
	assert.Equal(t, store.RecordResult{}, record(t, s, b), "redelivered")
	for pk := int64(1); pk <= 200; pk += 2 {
		assert.Equal(t, store.RecordResult{Inserted: 1}, record(t, s, batch(0, sample(pk, 0, 1, 1))))
	}
	n, err := s.MissedSince(ctx, minute(0))
	require.NoError(t, err)
	assert.EqualValues(t, 100, n)
	assert.Equal(t, store.RecordResult{}, record(t, s, b), "redelivered after the fills")
	n, err = s.MissedSince(ctx, minute(0))
	require.NoError(t, err)
	assert.EqualValues(t, 100, n)
}

// testConcurrentMissAndStore: recorders race on the same (pk, minute)s, one
// storing samples, others reporting them missed, another redelivering the
// failures: every (pk, minute) ends up stored or missed, never both, never
// missed twice, and the progress counters agree.
func testConcurrentMissAndStore(t *testing.T, s store.Store) {
	const (
		pks     = 120
		minutes = 6
	)
	ctx := context.Background()
	track(t, s, func() []int64 {
		out := make([]int64, pks)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}()...)
	samples := func(m int, parity int64) influencer.Batch {
		b := influencer.Batch{Minute: minute(m), Shard: m}
		for pk := int64(1); pk <= pks; pk++ {
			if pk%3 == parity {
				b.Samples = append(b.Samples, sample(pk, m, pk, 1))
			}
		}
		return b
	}
	failures := func(m int, class string) influencer.Batch {
		b := influencer.Batch{Minute: minute(m), Shard: m + 100}
		for pk := int64(1); pk <= pks; pk++ {
			b.Failures = append(b.Failures, influencer.Failure{PK: pk, Minute: minute(m), Class: class, Reason: class})
		}
		return b
	}
	var wg sync.WaitGroup
	run := func(mk func(m int) influencer.Batch) {
		wg.Go(func() {
			for m := range minutes {
				_, err := s.Record(ctx, mk(m))
				assert.NoError(t, err)
			}
		})
	}
	run(func(m int) influencer.Batch { return samples(m, 0) })
	run(func(m int) influencer.Batch { return samples(m, 1) })
	run(func(m int) influencer.Batch { return failures(m, "timeout") })
	run(func(m int) influencer.Batch { return failures(m, "http_5xx") })
	run(func(m int) influencer.Batch { return failures(m, "timeout") })
	wg.Wait()

	missed, stored := missedPerMinute(t, s, minutes), storedPerMinute(t, s, pks, minutes)
	for m := range minutes {
		assert.EqualValues(t, pks/3*2, stored[m], "minute %d stored", m)
		assert.EqualValues(t, pks, stored[m]+missed[m], "minute %d: stored %d + missed %d", m, stored[m], missed[m])
	}
	// The progress counters say every minute is complete, with as many
	// missed as counted.
	st := stats(t, s, minute(minutes-1))
	assert.Equal(t, minute(minutes-1), st.LastCompleteMinute)
	var sum int64
	for _, n := range missed {
		sum += n
	}
	assert.Equal(t, sum, st.MissedLastHour)
}
