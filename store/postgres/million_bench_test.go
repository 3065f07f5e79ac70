package postgres_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/storetest"
)

// serverCounters are the server-wide costs of writing, read from the
// statistics views: WAL records, full-page images and bytes (pg_stat_wal),
// checkpoints and the buffers written by backends (pg_stat_bgwriter). They
// count every database of the server, so other load on it counts too.
type serverCounters struct {
	walRecords, walFPI, walBytes          int64
	checkpoints, buffersBackend, bufClean int64
	buffersCheckpoint                     int64
	// pages is the buffer accesses (hits and reads) in the benchmark's
	// database (pg_stat_database): its own, unlike the rest.
	pages int64
}

func readServerCounters(tb testing.TB, pool *pgxpool.Pool) serverCounters {
	tb.Helper()
	var c serverCounters
	err := pool.QueryRow(context.Background(), `
SELECT w.wal_records, w.wal_fpi, w.wal_bytes::bigint,
       b.checkpoints_timed + b.checkpoints_req, b.buffers_backend, b.buffers_clean, b.buffers_checkpoint,
       d.blks_hit + d.blks_read
FROM pg_stat_wal w, pg_stat_bgwriter b, pg_stat_database d
WHERE d.datname = current_database()`).Scan(
		&c.walRecords, &c.walFPI, &c.walBytes, &c.checkpoints, &c.buffersBackend, &c.bufClean, &c.buffersCheckpoint,
		&c.pages)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkRecordMillion records one minute of one million tracked
// influencers per iteration into a store that already holds their
// summaries (LoadFixture, one minute), as the pipeline writes them: one
// batch per shard of 1024, 4 writers, counts from the simulator's model
// (every count changes every minute), the counter tables vacuumed after
// each minute. Run it with -benchtime 2x or 3x (an iteration is a million
// samples). Besides the backends' CPU (dbcpu-µs/sample) it reports the
// server's background processes' CPU (bgcpu-µs/sample: checkpointer, WAL
// writer, background writer), WAL bytes and full-page images per sample,
// and the checkpoints and backend buffer writes during the run, and the
// database's buffer accesses per sample (pages/sample: of this database
// only, so unlike the others not disturbed by other load on the server).
//
// Knobs for experiments: MILLION_WRITERS (default 4) concurrent writers;
// MILLION_SETUP, SQL run once after the fixture is loaded (say, a fill
// factor and a CLUSTER); MILLION_AFTER_MINUTE, SQL run after each minute
// (say, VACUUM influencer_summary).
func BenchmarkRecordMillion(b *testing.B) {
	const n = 1_000_000
	s, _ := newStore(b, clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	start := storetest.Now().Add(-time.Minute)
	if err := postgres.LoadFixture(ctx, s.Pool(), n, 1, start); err != nil {
		b.Fatal(err)
	}
	// The pipeline's watermark trails the clock by an hour or more: the
	// minutes recorded here are after it, so Record does not fold them
	// into the rollups row by row (the fixture's own minute is then counted
	// twice by rollup reads, which this benchmark does not make).
	if _, err := s.Pool().Exec(ctx, `UPDATE rollup_watermark SET folded_before = $1`,
		start.Truncate(time.Hour)); err != nil {
		b.Fatal(err)
	}
	if x := os.Getenv("MILLION_SETUP"); x != "" {
		if _, err := s.Pool().Exec(ctx, x); err != nil {
			b.Fatal(err)
		}
	}
	writers := 4
	if w, err := strconv.Atoi(os.Getenv("MILLION_WRITERS")); err == nil && w > 0 {
		writers = w
	}
	byShard := shardPKs()
	usernames := make(map[int64]string, n)
	for pk := int64(postgres.FixtureFirstPK); pk < postgres.FixtureFirstPK+n; pk++ {
		usernames[pk] = simulator.Username(pk)
	}
	if _, err := s.Pool().Exec(ctx, `CHECKPOINT`); err != nil {
		b.Fatal(err)
	}
	tables := readTablePages(b, s.Pool())
	cpu, bg := backendCPU(b, s.Pool()), serverCPU(b, s.Pool())
	before := readServerCounters(b, s.Pool())
	var samples int64
	m := 0
	b.ResetTimer()
	for b.Loop() {
		minute := storetest.Now().Add(time.Duration(m) * time.Minute)
		shards := make(chan int)
		var (
			wg   sync.WaitGroup
			once sync.Once
			fail error
		)
		for range writers {
			wg.Go(func() {
				for shard := range shards {
					batch := influencer.Batch{Minute: minute, Shard: shard}
					for _, pk := range byShard[shard] {
						f, g := simulator.Counts(pk, minute)
						batch.Samples = append(batch.Samples, influencer.Sample{
							PK: pk, Username: usernames[pk], FollowerCount: f, FollowingCount: g, Minute: minute})
					}
					if _, err := s.Record(ctx, batch); err != nil {
						once.Do(func() { fail = err })
					}
				}
			})
		}
		for shard := range byShard {
			shards <- shard
		}
		close(shards)
		wg.Wait()
		if fail != nil {
			b.Fatal(fail)
		}
		if err := s.VacuumCounters(ctx); err != nil {
			b.Fatal(err)
		}
		if x := os.Getenv("MILLION_AFTER_MINUTE"); x != "" {
			if _, err := s.Pool().Exec(ctx, x); err != nil {
				b.Fatal(err)
			}
		}
		samples += n
		m++
	}
	b.StopTimer()
	after := readServerCounters(b, s.Pool())
	logTablePages(b, s.Pool(), tables, samples)
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
	reportBackendCPU(b, s.Pool(), cpu, samples)
	reportCPUPer(b, bg, serverCPU(b, s.Pool()), samples, "bgcpu-µs/sample")
	b.ReportMetric(float64(after.walBytes-before.walBytes)/float64(samples), "wal-B/sample")
	b.ReportMetric(float64(after.walFPI-before.walFPI)/float64(samples), "fpi/sample")
	b.ReportMetric(float64(after.walRecords-before.walRecords)/float64(samples), "walrec/sample")
	b.ReportMetric(float64(after.checkpoints-before.checkpoints), "checkpoints")
	b.ReportMetric(float64(after.pages-before.pages)/float64(samples), "pages/sample")
	b.ReportMetric(float64(after.buffersBackend-before.buffersBackend)/float64(samples), "backendwrites/sample")
	b.ReportMetric(float64(after.buffersCheckpoint-before.buffersCheckpoint+after.bufClean-before.bufClean)/float64(samples), "bgwrites/sample")
}

// tablePages are a table's buffer accesses (heap and index hits and reads,
// pg_statio_user_tables, partitions summed under their parent's name) and
// updates, HOT ones apart (pg_stat_user_tables).
type tablePages struct{ pages, upd, hot int64 }

func readTablePages(tb testing.TB, pool *pgxpool.Pool) map[string]tablePages {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `
SELECT regexp_replace(io.relname, '^samples_[0-9]+$', 'samples'),
       sum(coalesce(io.heap_blks_hit, 0) + coalesce(io.heap_blks_read, 0) + coalesce(io.idx_blks_hit, 0) + coalesce(io.idx_blks_read, 0))::bigint,
       sum(t.n_tup_upd)::bigint, sum(t.n_tup_hot_upd)::bigint
FROM pg_statio_user_tables io JOIN pg_stat_user_tables t USING (relid)
GROUP BY 1`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]tablePages{}
	for rows.Next() {
		var (
			name string
			p    tablePages
		)
		if err := rows.Scan(&name, &p.pages, &p.upd, &p.hot); err != nil {
			tb.Fatal(err)
		}
		out[name] = p
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// logTablePages logs, per table, the buffer accesses per sample and the
// share of HOT updates since before.
func logTablePages(tb testing.TB, pool *pgxpool.Pool, before map[string]tablePages, samples int64) {
	tb.Helper()
	for name, a := range readTablePages(tb, pool) {
		d := tablePages{a.pages - before[name].pages, a.upd - before[name].upd, a.hot - before[name].hot}
		if d.pages == 0 {
			continue
		}
		hot := 0.0
		if d.upd > 0 {
			hot = 100 * float64(d.hot) / float64(d.upd)
		}
		tb.Logf("%-20s %7.2f pages/sample, %9d updates (%.0f%% HOT)", name, float64(d.pages)/float64(samples), d.upd, hot)
	}
}
