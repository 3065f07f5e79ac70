package postgres

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// recordSQL writes a whole batch in one statement (so one transaction). The
// data-modifying CTEs all see the snapshot taken before the statement, so:
//   - ins inserts the samples, ignoring (pk, minute) conflicts, and returns
//     only the rows it inserted;
//   - summ folds exactly those rows into influencer_summary (the batch has
//     distinct pks, so each summary row is touched once); current values and
//     username move only forward in time;
//   - unmiss drops missed entries that a sample now fills;
//   - miss records failures unless a sample exists, either before the
//     statement (samples) or inserted by it (ins).
const recordSQL = `
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::text[])
        AS i(pk, minute, follower_count, following_count, username)
), ins AS (
    INSERT INTO samples (pk, minute, follower_count, following_count)
    SELECT pk, minute, follower_count, following_count FROM input
    ON CONFLICT DO NOTHING
    RETURNING pk, minute, follower_count, following_count
), summ AS (
    INSERT INTO influencer_summary AS s
        (pk, username, follower_count, following_count, last_minute, samples, follower_sum)
    SELECT ins.pk, input.username, ins.follower_count, ins.following_count, ins.minute, 1, ins.follower_count
    FROM ins JOIN input ON input.pk = ins.pk
    ON CONFLICT (pk) DO UPDATE SET
        samples         = s.samples + 1,
        follower_sum    = s.follower_sum + EXCLUDED.follower_sum,
        username        = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.username ELSE s.username END,
        follower_count  = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.follower_count ELSE s.follower_count END,
        following_count = CASE WHEN EXCLUDED.last_minute > s.last_minute THEN EXCLUDED.following_count ELSE s.following_count END,
        last_minute     = greatest(s.last_minute, EXCLUDED.last_minute)
    RETURNING 1
), unmiss AS (
    DELETE FROM missed m USING ins
    WHERE m.pk = ins.pk AND m.minute = ins.minute
    RETURNING 1
), fail AS (
    SELECT * FROM unnest($6::bigint[], $7::timestamptz[], $8::text[], $9::text[])
        AS f(pk, minute, class, reason)
), miss AS (
    INSERT INTO missed (pk, minute, class, reason, recorded_at)
    SELECT f.pk, f.minute, f.class, f.reason, $10::timestamptz
    FROM fail f
    WHERE NOT EXISTS (SELECT 1 FROM samples x WHERE x.pk = f.pk AND x.minute = f.minute)
      AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.pk = f.pk AND ins.minute = f.minute)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM summ), (SELECT count(*) FROM unmiss), (SELECT count(*) FROM miss)`

// recordAttempts bounds retries of a batch that hit a deadlock or a missing
// partition.
const recordAttempts = 3

// Record implements storetest.Store. A sample whose day has no partition
// yet (an old or far-future minute) gets its partition created and the
// batch is retried, so such a minute never wedges the pipeline.
func (s *Store) Record(ctx context.Context, b influencer.Batch) (influencer.RecordResult, error) {
	if err := store.ValidateBatch(b); err != nil {
		return influencer.RecordResult{}, fmt.Errorf("record shard %d minute %s: %w", b.Shard, b.Minute.Format(time.RFC3339), err)
	}
	// Rows are written in pk order so concurrent batches that share pks
	// lock them in the same order and do not deadlock.
	samples := slices.Clone(b.Samples)
	slices.SortFunc(samples, func(a, b influencer.Sample) int { return cmp.Compare(a.PK, b.PK) })
	failures := dedupFailures(b.Failures)

	var (
		pks       = make([]int64, len(samples))
		minutes   = make([]time.Time, len(samples))
		followers = make([]int64, len(samples))
		following = make([]int64, len(samples))
		usernames = make([]string, len(samples))
		fPKs      = make([]int64, len(failures))
		fMinutes  = make([]time.Time, len(failures))
		fClasses  = make([]string, len(failures))
		fReasons  = make([]string, len(failures))
	)
	for i, smp := range samples {
		pks[i], minutes[i], followers[i], following[i], usernames[i] =
			smp.PK, smp.Minute, smp.FollowerCount, smp.FollowingCount, smp.Username
	}
	for i, f := range failures {
		fPKs[i], fMinutes[i], fClasses[i], fReasons[i] = f.PK, f.Minute, f.Class, f.Reason
	}

	partitionsEnsured := false
	for attempt := 1; ; attempt++ {
		var inserted, summarised, unmissed, missed int64
		err := s.pool.QueryRow(ctx, recordSQL,
			pks, minutes, followers, following, usernames,
			fPKs, fMinutes, fClasses, fReasons, s.clock.Now(),
		).Scan(&inserted, &summarised, &unmissed, &missed)
		if err == nil {
			return influencer.RecordResult{
				Inserted:   int(inserted),
				Duplicates: len(samples) - int(inserted),
				Missed:     int(missed),
			}, nil
		}
		if attempt >= recordAttempts {
			return influencer.RecordResult{}, fmt.Errorf("record shard %d minute %s: %w", b.Shard, b.Minute.Format(time.RFC3339), err)
		}
		switch sqlState(err) {
		case stateNoPartition:
			if partitionsEnsured {
				return influencer.RecordResult{}, fmt.Errorf("record shard %d minute %s: %w", b.Shard, b.Minute.Format(time.RFC3339), err)
			}
			if perr := s.ensureDays(ctx, sampleDays(samples)); perr != nil {
				return influencer.RecordResult{}, fmt.Errorf("record shard %d minute %s: %w", b.Shard, b.Minute.Format(time.RFC3339), perr)
			}
			partitionsEnsured = true
		case stateDeadlock, stateSerialize:
			s.logger.WarnContext(ctx, "record retried",
				slog.Int("shard", b.Shard), slog.Int("attempt", attempt), slog.String("error", err.Error()))
		default:
			return influencer.RecordResult{}, fmt.Errorf("record shard %d minute %s: %w", b.Shard, b.Minute.Format(time.RFC3339), err)
		}
	}
}

// dedupFailures keeps the first failure per (pk, minute).
func dedupFailures(in []influencer.Failure) []influencer.Failure {
	type key struct {
		pk     int64
		minute int64
	}
	seen := make(map[key]struct{}, len(in))
	out := make([]influencer.Failure, 0, len(in))
	for _, f := range in {
		k := key{f.PK, f.Minute.Unix()}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b influencer.Failure) int {
		if c := cmp.Compare(a.PK, b.PK); c != 0 {
			return c
		}
		return a.Minute.Compare(b.Minute)
	})
	return out
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
