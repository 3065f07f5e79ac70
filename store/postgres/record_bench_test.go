package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/storetest"
)

// backendCPU returns the CPU time used so far by each server process
// connected to pool's database (its backends, and autovacuum workers while
// they work on it), read from /proc/<pid>/schedstat: the database server's
// cost of what the benchmark sends, apart from the shared background
// processes (WAL writer, checkpointer). It is empty when the server is not
// on this machine.
func backendCPU(tb testing.TB, pool *pgxpool.Pool) map[int]time.Duration {
	tb.Helper()
	return processCPU(tb, pool, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
}

// serverCPU is backendCPU of the server's own processes (checkpointer, WAL
// writer, background writer, ...), which serve every database.
func serverCPU(tb testing.TB, pool *pgxpool.Pool) map[int]time.Duration {
	tb.Helper()
	return processCPU(tb, pool, `SELECT pid FROM pg_stat_activity WHERE datname IS NULL`)
}

// processCPU returns the CPU time used so far by each server process the
// query lists.
func processCPU(tb testing.TB, pool *pgxpool.Pool, query string) map[int]time.Duration {
	tb.Helper()
	rows, err := pool.Query(context.Background(), query)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
		if err != nil {
			continue // not local, or gone
		}
		ns, err := strconv.ParseInt(string(bytes.Fields(raw)[0]), 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		out[int(pid)] = time.Duration(ns)
	}
	return out
}

// reportBackendCPU reports the database CPU per sample between before and
// now (processes that started meanwhile count from zero).
func reportBackendCPU(b *testing.B, pool *pgxpool.Pool, before map[int]time.Duration, samples int64) {
	reportBackendCPUPer(b, pool, before, samples, "dbcpu-µs/sample")
}

// reportBackendCPUPer is reportBackendCPU per n of unit.
func reportBackendCPUPer(b *testing.B, pool *pgxpool.Pool, before map[int]time.Duration, samples int64, unit string) {
	b.Helper()
	reportCPUPer(b, before, backendCPU(b, pool), samples, unit)
}

// reportCPUPer reports the CPU used between before and after per n of unit.
func reportCPUPer(b *testing.B, before, after map[int]time.Duration, samples int64, unit string) {
	b.Helper()
	if len(after) == 0 || samples == 0 {
		return
	}
	var used time.Duration
	for pid, t := range after {
		used += t - before[pid]
	}
	b.ReportMetric(float64(used.Microseconds())/float64(samples), unit)
}

func BenchmarkRecord(b *testing.B) {
	s, _ := newStore(b, clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	const batchSize = 1000
	samples := make([]influencer.Sample, batchSize)
	m := 0
	cpu := backendCPU(b, s.Pool())
	for b.Loop() {
		minute := storetest.Now().Add(time.Duration(m) * time.Minute)
		for i := range samples {
			samples[i] = influencer.Sample{
				PK: int64(1_000_000 + i), Username: "influencer-1000000",
				FollowerCount: int64(50_000 + m), FollowingCount: 1000, Minute: minute,
			}
		}
		if _, err := s.Record(ctx, influencer.Batch{Minute: minute, Samples: samples}); err != nil {
			b.Fatal(err)
		}
		m++
	}
	b.ReportMetric(float64(m*batchSize)/b.Elapsed().Seconds(), "samples/s")
	reportBackendCPU(b, s.Pool(), cpu, int64(m*batchSize))
}

// BenchmarkRecordParallel is BenchmarkRecord with concurrent recorders, each
// on its own shard of pks, as several recorder processes would write.
func BenchmarkRecordParallel(b *testing.B) {
	s, _ := newStore(b, clockwork.NewFakeClockAt(storetest.Now()))
	const batchSize = 1000
	var (
		shards  atomic.Int64
		samples atomic.Int64
	)
	b.SetParallelism(2)
	cpu := backendCPU(b, s.Pool())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		base := 1_000_000 + shards.Add(1)*batchSize
		batch := make([]influencer.Sample, batchSize)
		for m := 0; pb.Next(); m++ {
			minute := storetest.Now().Add(time.Duration(m) * time.Minute)
			for i := range batch {
				batch[i] = influencer.Sample{
					PK: base + int64(i), Username: "influencer-1000000",
					FollowerCount: int64(50_000 + m), FollowingCount: 1000, Minute: minute,
				}
			}
			if _, err := s.Record(context.Background(), influencer.Batch{Minute: minute, Samples: batch}); err != nil {
				b.Error(err)
				return
			}
			samples.Add(batchSize)
		}
	})
	b.ReportMetric(float64(samples.Load())/b.Elapsed().Seconds(), "samples/s")
	reportBackendCPU(b, s.Pool(), cpu, samples.Load())
}

// BenchmarkRecordTracked is BenchmarkRecord with the pks tracked, so every
// batch also moves the rank counters (about a fifth of the rows change rank
// bucket each minute), the global stats and the rank index, as in
// production.
func BenchmarkRecordTracked(b *testing.B) {
	s, _ := newStore(b, clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	const batchSize = 1000
	pks := make([]int64, batchSize)
	for i := range pks {
		pks[i] = int64(1_000_000 + i)
	}
	if _, err := s.Track(ctx, pks); err != nil {
		b.Fatal(err)
	}
	samples := make([]influencer.Sample, batchSize)
	m := 0
	cpu := backendCPU(b, s.Pool())
	for b.Loop() {
		minute := storetest.Now().Add(time.Duration(m) * time.Minute)
		for i := range samples {
			samples[i] = influencer.Sample{
				PK: pks[i], Username: "influencer-1000000",
				FollowerCount: int64(50_000 + i*37 + m*10), FollowingCount: 1000, Minute: minute,
			}
		}
		if _, err := s.Record(ctx, influencer.Batch{Minute: minute, Shard: m, Samples: samples}); err != nil {
			b.Fatal(err)
		}
		m++
	}
	b.ReportMetric(float64(m*batchSize)/b.Elapsed().Seconds(), "samples/s")
	reportBackendCPU(b, s.Pool(), cpu, int64(m*batchSize))
}

// shardPKs returns the pks of [1_000_000, 2_000_000) by shard of 1024, as
// the scheduler deals them out (influencer.ShardOf).
func shardPKs() [][]int64 {
	const shards = 1024
	out := make([][]int64, shards)
	for pk := int64(1_000_000); pk < 2_000_000; pk++ {
		s := influencer.ShardOf(pk, shards)
		out[s] = append(out[s], pk)
	}
	return out
}

// BenchmarkRecordMissed records one shard's batch (about 977 pks of a
// million, 1024 shards) per iteration, shard after shard through the
// minutes, with a share of the pks failed, as an overloaded fetcher
// reports them. dbcpu-µs/pk is the database CPU per pk of the batch:
// with failed=100% the cost of a missed pk, with 0% that of a sample.
func BenchmarkRecordMissed(b *testing.B) {
	byShard := shardPKs()
	for _, failedPct := range []int{0, 50, 100} {
		b.Run(fmt.Sprintf("failed=%d%%", failedPct), func(b *testing.B) {
			s, _ := newStore(b, clockwork.NewFakeClockAt(storetest.Now()))
			ctx := context.Background()
			var pks int64
			i := 0
			cpu := backendCPU(b, s.Pool())
			for b.Loop() {
				shard := i % len(byShard)
				minute := storetest.Now().Add(time.Duration(i/len(byShard)) * time.Minute)
				batch := influencer.Batch{Minute: minute, Shard: shard}
				for j, pk := range byShard[shard] {
					if j*100 < failedPct*len(byShard[shard]) && (failedPct == 100 || j%2 == 0) {
						batch.Failures = append(batch.Failures, influencer.Failure{PK: pk, Minute: minute,
							Class: "timeout", Reason: "request still running; gave up at the minute's deadline", Attempts: 1})
						continue
					}
					batch.Samples = append(batch.Samples, influencer.Sample{PK: pk, Username: "influencer-1000000",
						FollowerCount: int64(50_000 + j), FollowingCount: 1000, Minute: minute})
				}
				if _, err := s.Record(ctx, batch); err != nil {
					b.Fatal(err)
				}
				pks += int64(len(byShard[shard]))
				i++
			}
			b.ReportMetric(float64(pks)/b.Elapsed().Seconds(), "pks/s")
			reportBackendCPUPer(b, s.Pool(), cpu, pks, "dbcpu-µs/pk")
		})
	}
}
