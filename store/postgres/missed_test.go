package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/migrations"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
	"github.com/mockstagram/pipeline/store/storetest"
)

// missedRow is a row of the missed view (the old table's columns).
type missedRow struct {
	PK         int64
	Minute     time.Time
	Class      string
	Reason     string
	RecordedAt time.Time
}

func missedRows(t *testing.T, pool *pgxpool.Pool) []missedRow {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT pk, minute, class, reason, recorded_at FROM missed ORDER BY minute, pk`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (missedRow, error) {
		var m missedRow
		err := r.Scan(&m.PK, &m.Minute, &m.Class, &m.Reason, &m.RecordedAt)
		m.Minute, m.RecordedAt = m.Minute.UTC(), m.RecordedAt.UTC()
		return m, err
	})
	require.NoError(t, err)
	return out
}

// checkMissedBatches checks missed_batches' invariants: n is the length of
// the sorted, distinct, non-empty pks, all of the row's bucket, and no pk
// is in two rows of a minute or has a sample of the minute.
func checkMissedBatches(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT minute, bucket, n, pks FROM missed_batches ORDER BY minute, bucket, seq`)
	require.NoError(t, err)
	type key struct {
		pk     int64
		minute int64
	}
	seen := map[key]bool{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var (
			minute time.Time
			bucket int
			n      int
			pks    []int64
		)
		if err := r.Scan(&minute, &bucket, &n, &pks); err != nil {
			return struct{}{}, err
		}
		assert.Len(t, pks, n, "n of minute %s bucket %d", minute, bucket)
		assert.NotEmpty(t, pks, "no empty row")
		for i, pk := range pks {
			assert.Equal(t, bucket, store.MissedBucket(pk), "bucket of pk %d", pk)
			if i > 0 {
				assert.Less(t, pks[i-1], pk, "pks ascending")
			}
			k := key{pk, minute.Unix()}
			assert.False(t, seen[k], "pk %d missed twice in minute %s", pk, minute)
			seen[k] = true
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
	var both int
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(*) FROM missed x WHERE EXISTS (SELECT 1 FROM samples s WHERE s.pk = x.pk AND s.minute = x.minute)`).Scan(&both))
	assert.Zero(t, both, "missed pks with a sample of the minute")
	var progress, counted int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(sum(missed), 0) FROM minute_progress`).Scan(&progress))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM missed`).Scan(&counted))
	assert.Equal(t, counted, progress, "minute_progress counts the missed pks")
}

// TestMissedView: the view gives the old table's rows, one per missed
// pk, with its own class and reason and the recording time; a shard's
// failures are one row of missed_batches per class and reason.
func TestMissedView(t *testing.T) {
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(storetest.Now())
	s, _ := newStore(t, clock)
	m0 := storetest.Now()
	var shard []int64 // pks of one of 1024 shards
	for pk := int64(1_000_000); len(shard) < 6; pk++ {
		if influencer.ShardOf(pk, 1024) == 9 {
			shard = append(shard, pk)
		}
	}
	fail := func(pk int64, class, reason string) influencer.Failure {
		return influencer.Failure{PK: pk, Minute: m0, Class: class, Reason: reason}
	}
	_, err := s.Record(ctx, influencer.Batch{Minute: m0, Shard: 9,
		Samples: []influencer.Sample{{PK: shard[0], Username: "u", Minute: m0}},
		Failures: []influencer.Failure{fail(shard[3], "timeout", "t"), fail(shard[1], "timeout", "t"),
			fail(shard[2], "http_5xx", "HTTP 503"), fail(shard[4], "timeout", "t")}})
	require.NoError(t, err)
	at := clock.Now().UTC()
	clock.Advance(time.Minute)
	_, err = s.Record(ctx, influencer.Batch{Minute: m0, Shard: 9, Failures: []influencer.Failure{fail(shard[5], "timeout", "t")}})
	require.NoError(t, err)
	at2 := clock.Now().UTC()

	assert.Equal(t, []missedRow{
		{shard[1], m0, "timeout", "t", at},
		{shard[2], m0, "http_5xx", "HTTP 503", at},
		{shard[3], m0, "timeout", "t", at},
		{shard[4], m0, "timeout", "t", at},
		{shard[5], m0, "timeout", "t", at2},
	}, missedRows(t, s.Pool()))
	var rows int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM missed_batches`).Scan(&rows))
	assert.Equal(t, 3, rows, "one row per batch, class and reason")

	// Samples take pks out of their rows, whatever their batch's shard; a
	// row whose pks are all filled goes.
	_, err = s.Record(ctx, influencer.Batch{Minute: m0, Shard: 500, Samples: []influencer.Sample{
		{PK: shard[2], Username: "u", Minute: m0}, {PK: shard[3], Username: "u", Minute: m0}}})
	require.NoError(t, err)
	assert.Equal(t, []missedRow{
		{shard[1], m0, "timeout", "t", at},
		{shard[4], m0, "timeout", "t", at},
		{shard[5], m0, "timeout", "t", at2},
	}, missedRows(t, s.Pool()))
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM missed_batches`).Scan(&rows))
	assert.Equal(t, 2, rows)
	checkMissedBatches(t, s.Pool())
	var sqlBucket int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT missed_bucket($1)`, shard[0]).Scan(&sqlBucket))
	assert.Equal(t, store.MissedBucket(shard[0]), sqlBucket, "missed_bucket agrees with store.MissedBucket")
}

// TestMigrateMissedToBatches: migration 8 moves version 7's missed rows
// into missed_batches, grouped, and the view gives them back unchanged;
// the store then unmisses and counts them as before.
func TestMigrateMissedToBatches(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	require.NoError(t, migrations.UpTo(ctx, db, discard(), 7))
	old, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer old.Close()

	m0 := storetest.Now()
	at := m0.Add(50 * time.Second)
	var want []missedRow
	for m := range 3 {
		minute := m0.Add(time.Duration(m) * time.Minute)
		for pk := int64(1_000_000); pk < 1_000_300; pk++ {
			class, reason := "timeout", "request still running"
			switch {
			case pk%7 == 0:
				class, reason = "http_5xx", "HTTP 503"
			case pk%11 == 0:
				class, reason = "connection", fmt.Sprintf("dial %d: refused", pk)
			}
			recorded := at.Add(time.Duration(m) * time.Minute)
			if pk%5 == 0 {
				recorded = recorded.Add(time.Hour) // a late batch
			}
			want = append(want, missedRow{pk, minute, class, reason, recorded})
		}
	}
	pks, minutes, classes, reasons, recorded := make([]int64, len(want)), make([]time.Time, len(want)),
		make([]string, len(want)), make([]string, len(want)), make([]time.Time, len(want))
	for i, r := range want {
		pks[i], minutes[i], classes[i], reasons[i], recorded[i] = r.PK, r.Minute, r.Class, r.Reason, r.RecordedAt
	}
	_, err = old.Exec(ctx, `INSERT INTO missed SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::timestamptz[])`,
		pks, minutes, classes, reasons, recorded)
	require.NoError(t, err)
	_, err = old.Exec(ctx, `INSERT INTO minute_progress (minute, stripe, stored, missed)
SELECT minute, 0, 0, count(*) FROM missed GROUP BY minute`)
	require.NoError(t, err)

	s, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(m0.Add(3*time.Minute)))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, want, missedRows(t, s.Pool()), "the view gives the rows back")
	checkMissedBatches(t, s.Pool())
	var groups, rows int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM (
SELECT DISTINCT minute, missed_bucket(pk), class, reason, recorded_at FROM missed) g`).Scan(&groups))
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM missed_batches`).Scan(&rows))
	assert.Equal(t, groups, rows, "one row per minute, bucket, class, reason and recording time")
	assert.Less(t, rows, len(want), "grouped")
	n, err := s.MissedSince(ctx, m0.Add(time.Minute))
	require.NoError(t, err)
	assert.EqualValues(t, 600, n)

	// A late sample fills a migrated miss.
	res, err := s.Record(ctx, influencer.Batch{Minute: m0, Shard: 1, Samples: []influencer.Sample{
		{PK: 1_000_007, Username: "u", Minute: m0}, {PK: 1_000_010, Username: "u", Minute: m0}}})
	require.NoError(t, err)
	assert.Equal(t, store.RecordResult{Inserted: 2}, res)
	n, err = s.MissedSince(ctx, m0)
	require.NoError(t, err)
	assert.EqualValues(t, 898, n)
	st, err := s.Stats(ctx, m0.Add(3*time.Minute))
	require.NoError(t, err)
	assert.EqualValues(t, 898, st.MissedLastHour)
	checkMissedBatches(t, s.Pool())
	assert.Equal(t, append(want[:7:7], append(want[8:10:10], want[11:]...)...), missedRows(t, s.Pool()))

	// Retention drops them by minute.
	require.NoError(t, s.Prune(ctx, m0.Add(48*time.Hour), 24*time.Hour))
	n, err = s.MissedSince(ctx, time.Time{})
	require.NoError(t, err)
	assert.Zero(t, n)
}
