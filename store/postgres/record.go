package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// recordSQL writes a whole batch in one statement. The data-modifying CTEs
// all see the snapshot taken before the statement, so:
//   - ins inserts the samples, ignoring (pk, minute) conflicts, and returns
//     only the rows it inserted; everything below is derived from ins, so a
//     redelivered batch changes nothing;
//   - summ folds exactly those rows into influencer_summary (the batch has
//     distinct pks, so each summary row is touched once); current values,
//     username and rank bucket move only forward in time. A new row takes
//     its active flag from the registry. RETURNING gives the current count
//     before (prev_follower_count, read under the row lock, so right even
//     when another recorder updated the row after our snapshot) and after;
//   - chg keeps the active rows whose current count changed; rb moves them
//     between rank buckets (fine and grouped, keys in sorted order so
//     concurrent recorders lock bucket rows in the same order) and gs adds
//     the count and follower-total deltas to the batch's global_stats stripe;
//   - rh and rd fold the inserted rows of minutes before the rollup
//     watermark into the hourly and daily rollups (later minutes are
//     folded set-based by FoldRollups, see rollup.go);
//   - filled finds the missed pks that inserted samples fill, in the
//     missed_batches rows of the samples' (minute, bucket)s only (a pk's
//     bucket is store.MissedBucket, computed here in Go: $6);
//     unmiss_all drops the rows all of whose pks are filled, unmiss_some
//     takes the filled pks out of the others;
//   - miss records the failures, grouped in Go by minute, bucket, class
//     and reason (store.GroupFailures: $7-$10 one element per group, $11,
//     $12 and $15 the pks with their group's ordinal and minute), as one
//     row per group:
//     a pk already missed in its (minute, bucket), or with a sample
//     before the statement (samples) or inserted by it (ins), is left out;
//   - prog adds the stored and missed counts per minute to the stripe's
//     minute_progress rows (a filled gap moves one from missed to stored).
//
// It runs after recordLockSQL in the same implicit transaction (one pgx
// batch, one round trip): the shared registry lock keeps Track/Untrack,
// which flip active flags and move the same counters, out of the way, and
// the shared locks on the samples' hours and days keep FoldRollups from
// folding them meanwhile. The exclusive locks on the batch's (minute,
// bucket)s (missedLockKey) keep two recorders from missing one (pk,
// minute) twice, or from missing it while the other stores it: the
// missed_batches rows have no per-pk key that would. recordSQL's snapshot
// is taken after the locks are granted, so it reads the watermark a fold
// committed before and the misses a recorder of the same buckets did.
const recordSQL = `
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::text[], $6::integer[])
        AS i(pk, minute, follower_count, following_count, username, bucket)
), ins AS (
    INSERT INTO samples (pk, minute, follower_count, following_count)
    SELECT pk, minute, follower_count, following_count FROM input
    ON CONFLICT DO NOTHING
    RETURNING pk, minute, follower_count, following_count
), summ AS (
    INSERT INTO influencer_summary AS s
        (pk, username, follower_count, following_count, last_minute, samples, follower_sum,
         active, rank_bucket, prev_follower_count)
    SELECT ins.pk, input.username, ins.follower_count, ins.following_count, ins.minute, 1, ins.follower_count,
           coalesce(r.active, false), rank_bucket(ins.follower_count), NULL
    FROM ins JOIN input ON input.pk = ins.pk LEFT JOIN influencers r ON r.pk = ins.pk
    ON CONFLICT (pk) DO UPDATE SET
        samples             = s.samples + 1,
        follower_sum        = s.follower_sum + EXCLUDED.follower_sum,
        prev_follower_count = s.follower_count,
        username        = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.username ELSE s.username END,
        follower_count  = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.follower_count ELSE s.follower_count END,
        following_count = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.following_count ELSE s.following_count END,
        rank_bucket     = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.rank_bucket ELSE s.rank_bucket END,
        last_minute     = greatest(s.last_minute, EXCLUDED.last_minute)
    RETURNING s.active, s.prev_follower_count AS old_count, s.follower_count AS new_count,
              rank_bucket(s.prev_follower_count) AS old_bucket, s.rank_bucket AS new_bucket
), chg AS (
    SELECT old_count, new_count, old_bucket, new_bucket FROM summ
    WHERE active AND old_count IS DISTINCT FROM new_count
), rb AS (
    INSERT INTO rank_buckets AS r (level, bucket, n)
    SELECT level, bucket, sum(d) FROM (
        SELECT 0 AS level, new_bucket AS bucket, 1 AS d FROM chg WHERE old_bucket IS DISTINCT FROM new_bucket
        UNION ALL
        SELECT 0, old_bucket, -1 FROM chg WHERE old_bucket <> new_bucket
        UNION ALL
        SELECT 1, new_bucket >> 7, 1 FROM chg WHERE old_bucket >> 7 IS DISTINCT FROM new_bucket >> 7
        UNION ALL
        SELECT 1, old_bucket >> 7, -1 FROM chg WHERE old_bucket >> 7 <> new_bucket >> 7
    ) d
    GROUP BY level, bucket HAVING sum(d) <> 0
    ORDER BY level, bucket
    ON CONFLICT (level, bucket) DO UPDATE SET n = r.n + EXCLUDED.n
    RETURNING 1
), gs AS (
    UPDATE global_stats g SET
        influencers    = g.influencers + d.n,
        follower_total = g.follower_total + d.t
    FROM (SELECT count(*) FILTER (WHERE old_count IS NULL) AS n,
                 coalesce(sum(new_count - coalesce(old_count, 0)), 0) AS t
          FROM chg) d
    WHERE g.stripe = $14 AND (d.n <> 0 OR d.t <> 0)
    RETURNING 1
), rh AS (
    INSERT INTO rollup_hourly AS r ` + rollupColumns + `
    SELECT pk, date_bin('1 hour', minute, timestamptz '2000-01-01 00:00:00+00'), ` + recordRollupValues + `
    ` + rollupMerge + `
    RETURNING 1
), rd AS (
    INSERT INTO rollup_daily AS r ` + rollupColumns + `
    SELECT pk, date_bin('1 day', minute, timestamptz '2000-01-01 00:00:00+00'), ` + recordRollupValues + `
    ` + rollupMerge + `
    RETURNING 1
), filled AS (
    -- The pks of missed_batches rows that inserted samples fill: only the
    -- rows of the samples' (minute, bucket)s are read.
    SELECT b.minute, b.bucket, b.seq, b.n, array_agg(u.pk) AS gone
    FROM (SELECT DISTINCT input.minute, input.bucket FROM ins JOIN input ON input.pk = ins.pk) k
    JOIN missed_batches b ON b.minute = k.minute AND b.bucket = k.bucket
    CROSS JOIN LATERAL unnest(b.pks) AS u(pk)
    JOIN ins ON ins.pk = u.pk AND ins.minute = b.minute
    GROUP BY b.minute, b.bucket, b.seq, b.n
), unmiss_all AS (
    DELETE FROM missed_batches b USING filled f
    WHERE b.minute = f.minute AND b.bucket = f.bucket AND b.seq = f.seq AND cardinality(f.gone) >= f.n
    RETURNING f.minute, cardinality(f.gone) AS k
), unmiss_some AS (
    UPDATE missed_batches b SET
        pks = ARRAY(SELECT unnest(b.pks) EXCEPT SELECT unnest(f.gone) ORDER BY 1),
        n   = b.n - cardinality(f.gone)
    FROM filled f
    WHERE b.minute = f.minute AND b.bucket = f.bucket AND b.seq = f.seq AND cardinality(f.gone) < f.n
    RETURNING f.minute, cardinality(f.gone) AS k
), unmiss AS (
    SELECT minute, k FROM unmiss_all UNION ALL SELECT minute, k FROM unmiss_some
), grp AS (
    SELECT * FROM unnest($7::timestamptz[], $8::integer[], $9::text[], $10::text[])
        WITH ORDINALITY AS g(minute, bucket, class, reason, idx)
), already AS MATERIALIZED (
    -- The pks already missed in the groups' (minute, bucket)s.
    SELECT b.minute, u.pk
    FROM (SELECT DISTINCT minute, bucket FROM grp) k
    JOIN missed_batches b ON b.minute = k.minute AND b.bucket = k.bucket
    CROSS JOIN LATERAL unnest(b.pks) AS u(pk)
), fail AS (
    SELECT f.idx, f.pk
    FROM unnest($11::bigint[], $12::bigint[], $15::timestamptz[]) AS f(pk, idx, minute)
    WHERE NOT EXISTS (SELECT 1 FROM samples x WHERE x.pk = f.pk AND x.minute = f.minute)
      AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.pk = f.pk AND ins.minute = f.minute)
      AND NOT EXISTS (SELECT 1 FROM already a WHERE a.pk = f.pk AND a.minute = f.minute)
), miss AS (
    INSERT INTO missed_batches (minute, bucket, class, reason, n, pks, recorded_at)
    SELECT g.minute, g.bucket, g.class, g.reason, count(*), array_agg(f.pk ORDER BY f.pk), $13::timestamptz
    FROM fail f JOIN grp g ON g.idx = f.idx
    GROUP BY g.idx, g.minute, g.bucket, g.class, g.reason
    ORDER BY g.idx
    RETURNING minute, n
), prog AS (
    INSERT INTO minute_progress AS p (minute, stripe, stored, missed)
    SELECT minute, $14, sum(st), sum(mi) FROM (
        SELECT minute, 1 AS st, 0 AS mi FROM ins
        UNION ALL
        SELECT minute, 0, -k FROM unmiss
        UNION ALL
        SELECT minute, 0, n FROM miss
    ) x
    GROUP BY minute
    ORDER BY minute
    ON CONFLICT (minute, stripe) DO UPDATE SET
        stored = p.stored + EXCLUDED.stored,
        missed = p.missed + EXCLUDED.missed
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT coalesce(sum(k), 0) FROM unmiss), (SELECT coalesce(sum(n), 0) FROM miss)`

// recordRollupValues are the rollup columns after bucket_start of one
// inserted sample (a bucket of one minute), the rows of minutes before
// the watermark only, in key order.
const recordRollupValues = `1,
           follower_count, follower_count, follower_count,
           following_count, following_count, following_count, minute, follower_count, following_count
    FROM ins
    WHERE ins.minute < (SELECT folded_before FROM rollup_watermark)
    ORDER BY 1, 2`

// The registry lock: Record holds it shared for its transaction,
// Track/Untrack/Bootstrap exclusively. Without it a first sample of a pk
// could read the registry just before a concurrent Track flips the pk,
// while Track's update cannot see the summary row not yet committed: the
// pk would then be tracked but missing from the rank counters for good.
// Shared advisory locks are taken in memory only, so recorders pay nothing
// measurable, and registry changes are rare admin operations. The two-key
// form lives in a lock space apart from TryLead's single-key locks.
// recordLockSQL takes the (class, key) pairs of recordLocks in order,
// shared or (for the missed buckets) exclusive.
const (
	registryLockClass = 0x6d6b7374 // "mkst"
	registryLockID    = 1
	missedLockClass   = 0x6d6b736d // "mksm"
	recordLockSQL     = `
SELECT CASE WHEN x THEN pg_advisory_xact_lock(c, k) ELSE pg_advisory_xact_lock_shared(c, k) END
FROM unnest($1::integer[], $2::integer[], $3::boolean[]) AS l(c, k, x)`
)

// missedLockKeys is the number of missed lock keys: a batch takes at most
// this many locks for its (minute, bucket)s, however many buckets its pks
// span. Consecutive shards of the pipeline's 1024 (recorded at about the
// same time) get distinct keys.
const missedLockKeys = 64

func missedLockKey(minute time.Time, bucket int) int32 {
	return int32(((minute.Unix()/60+int64(bucket))%missedLockKeys + missedLockKeys) % missedLockKeys)
}

// statsStripes is the number of global_stats and minute_progress stripes.
const statsStripes = 16

func stripeOf(shard int) int {
	return ((shard % statsStripes) + statsStripes) % statsStripes
}

// recordAttempts bounds retries of a batch that hit a deadlock or a missing
// partition.
const recordAttempts = 3

// Record implements store.Store. A sample whose day has no partition
// yet (an old or far-future minute) gets its partition created and the
// batch is retried, so such a minute never wedges the pipeline.
func (s *Store) Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
	return s.record(ctx, nil, b)
}

// RecordInTx records b as Record does, inside tx, a transaction on the
// store's database (the Postgres broker's read transaction of the message
// that carries b, which shares the store's pool): the batch is stored if and
// only if tx commits. tx must be READ COMMITTED (each statement sees what
// committed before it, as recordSQL's locking requires).
//
// Every attempt runs in a savepoint of tx: an error (a deadlock, a missing
// partition, a row the store rejects, a lost connection) rolls back that
// attempt only, and tx is left as it was before the call, usable for the
// next call or for the broker's nack, unless the connection itself is gone.
// A retried attempt (deadlock, partition created on demand) is retried in
// tx as well; the partition is created by another connection.
func (s *Store) RecordInTx(ctx context.Context, tx pgx.Tx, b influencer.Batch) (store.RecordResult, error) {
	if tx == nil {
		return store.RecordResult{}, errors.New("record in transaction: no transaction")
	}
	return s.record(ctx, tx, b)
}

// record stores b in one transaction of its own (tx nil) or in a savepoint
// per attempt inside tx.
func (s *Store) record(ctx context.Context, tx pgx.Tx, b influencer.Batch) (store.RecordResult, error) {
	if err := store.ValidateBatch(b); err != nil {
		return store.RecordResult{}, err
	}
	// Rows are written in pk order so concurrent batches that share pks
	// lock them in the same order and do not deadlock.
	samples := slices.Clone(b.Samples)
	slices.SortFunc(samples, func(a, b influencer.Sample) int { return cmp.Compare(a.PK, b.PK) })
	groups := store.GroupFailures(b.Failures)

	var (
		pks       = make([]int64, len(samples))
		minutes   = make([]time.Time, len(samples))
		followers = make([]int64, len(samples))
		following = make([]int64, len(samples))
		usernames = make([]string, len(samples))
		buckets   = make([]int32, len(samples))
		gMinutes  = make([]time.Time, len(groups))
		gBuckets  = make([]int32, len(groups))
		gClasses  = make([]string, len(groups))
		gReasons  = make([]string, len(groups))
		fPKs      = make([]int64, 0, len(b.Failures))
		fGroups   = make([]int64, 0, len(b.Failures))
		fMinutes  = make([]time.Time, 0, len(b.Failures))
		missKeys  = make([]int32, 0, 1)
	)
	for i, smp := range samples {
		pks[i], minutes[i], followers[i], following[i], usernames[i] =
			smp.PK, smp.Minute, smp.FollowerCount, smp.FollowingCount, smp.Username
		bucket := store.MissedBucket(smp.PK)
		buckets[i] = int32(bucket)
		missKeys = append(missKeys, missedLockKey(smp.Minute, bucket))
	}
	for i, g := range groups {
		gMinutes[i], gBuckets[i], gClasses[i], gReasons[i] = g.Minute, int32(g.Bucket), g.Class, g.Reason
		for _, pk := range g.PKs {
			fPKs, fGroups, fMinutes = append(fPKs, pk), append(fGroups, int64(i+1)), append(fMinutes, g.Minute)
		}
		missKeys = append(missKeys, missedLockKey(g.Minute, g.Bucket))
	}

	lockClasses, lockKeys, lockExclusive := recordLocks(samples, missKeys)

	fail := func(err error) (store.RecordResult, error) {
		return store.RecordResult{}, classify(err)
	}
	partitionsEnsured := false
	for attempt := 1; ; attempt++ {
		var inserted, unmissed, missed int64
		if err := s.acquireWriteSlot(ctx); err != nil {
			return fail(err)
		}
		err := s.recordOnce(ctx, tx, lockClasses, lockKeys, lockExclusive, func(row pgx.Row) error {
			return row.Scan(&inserted, &unmissed, &missed)
		}, pks, minutes, followers, following, usernames, buckets,
			gMinutes, gBuckets, gClasses, gReasons, fPKs, fGroups, s.clock.Now(), stripeOf(b.Shard), fMinutes)
		<-s.writeSlots
		if err == nil {
			return store.RecordResult{
				Inserted:   int(inserted),
				Duplicates: len(samples) - int(inserted),
				Missed:     int(missed),
			}, nil
		}
		if attempt >= recordAttempts {
			return fail(err)
		}
		switch sqlState(err) {
		case stateNoPartition:
			if partitionsEnsured {
				return fail(err)
			}
			if perr := s.ensureDays(ctx, sampleDays(samples)); perr != nil {
				return fail(perr)
			}
			partitionsEnsured = true
		case stateDeadlock, stateSerialize:
			s.logger.WarnContext(ctx, "record retried",
				slog.Int("shard", b.Shard), slog.Int("attempt", attempt), slog.String("error", err.Error()))
		default:
			return fail(err)
		}
	}
}

// acquireWriteSlot waits for one of the store's batch-write slots
// (WithWriters) or for ctx to end; the caller gives it back after its
// attempt. A slot is held for one attempt's round trip only, never while a
// caller's transaction waits for its commit or creates a partition.
func (s *Store) acquireWriteSlot(ctx context.Context) error {
	select {
	case s.writeSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a write slot: %w", context.Cause(ctx))
	}
}

// classify marks errors caused by the batch's data as store.ErrInvalid (the
// Postgres error text ends with its SQLSTATE): class 22 (data exception: a
// value out of range, bad text) and class 23 (integrity constraint
// violation, including a row no partition accepts). Retrying the same
// rows cannot succeed; the recorder isolates them instead. Everything else
// (connection errors, timeouts, serialization failures, deadlocks) stays
// transient.
func classify(err error) error {
	code := sqlState(err)
	if len(code) == 5 && (code[:2] == "22" || code[:2] == "23") {
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return err
}

// recordOnce sends the locks and recordSQL as one batch: one round trip,
// one implicit transaction. In tx the batch runs in a savepoint taken in a
// round trip of its own before it (not in the batch: pgx describes a
// statement new to the connection in a round trip ahead of the batch, and
// the relation locks of that describe would belong to tx itself, so a
// partition created on demand would wait for tx for good); the batch ends
// with its RELEASE. After an error the server skips the rest of the batch
// and the savepoint is rolled back, so tx is as it was before the attempt.
func (s *Store) recordOnce(ctx context.Context, tx pgx.Tx, lockClasses, lockKeys []int32, lockExclusive []bool,
	scan func(pgx.Row) error, args ...any) error {
	batch := &pgx.Batch{}
	batch.Queue(recordLockSQL, lockClasses, lockKeys, lockExclusive)
	batch.Queue(recordSQL, args...)
	var br pgx.BatchResults
	if tx == nil {
		br = s.pool.SendBatch(ctx, batch)
	} else {
		if _, err := tx.Exec(ctx, `SAVEPOINT `+recordSavepoint); err != nil {
			return fmt.Errorf("savepoint: %w", err) // tx was aborted already or is gone: nothing to roll back
		}
		batch.Queue(`RELEASE SAVEPOINT ` + recordSavepoint)
		br = tx.SendBatch(ctx, batch)
	}
	_, err := br.Exec()
	if err == nil {
		err = scan(br.QueryRow())
	}
	if err == nil && tx != nil {
		_, err = br.Exec()
	}
	closeErr := br.Close()
	if err == nil {
		err = closeErr
	}
	if err != nil && tx != nil {
		return rollbackAttempt(ctx, tx, err)
	}
	return err
}

// recordSavepoint is the savepoint of one RecordInTx attempt.
const recordSavepoint = "record_attempt"

// savepointRollbackTimeout bounds the rollback of a failed attempt.
const savepointRollbackTimeout = 5 * time.Second

// rollbackAttempt rolls tx back to the failed attempt's savepoint (and
// drops it) and returns err. It runs even when ctx has ended (the attempt
// may have failed because of it), on a bounded context of its own; when
// the connection is gone (pgx closes it when a context ends mid-statement)
// there is nothing to roll back to: the transaction is lost, and err says
// why.
func rollbackAttempt(ctx context.Context, tx pgx.Tx, err error) error {
	if tx.Conn().IsClosed() {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), savepointRollbackTimeout)
	defer cancel()
	if _, rerr := tx.Exec(rctx, `ROLLBACK TO SAVEPOINT `+recordSavepoint+`; RELEASE SAVEPOINT `+recordSavepoint); rerr != nil {
		return fmt.Errorf("%w (rollback to savepoint: %w)", err, rerr)
	}
	return err
}

// sampleDays returns the distinct UTC days of the samples' minutes.
func sampleDays(samples []influencer.Sample) []time.Time {
	var days []time.Time
	for _, smp := range samples {
		d := smp.Minute.UTC().Truncate(24 * time.Hour)
		if !slices.ContainsFunc(days, d.Equal) {
			days = append(days, d)
		}
	}
	return days
}
