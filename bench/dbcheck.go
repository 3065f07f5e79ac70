package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
)

// NoReason is the class reported for a missed row without a reason.
const NoReason = "(no reason)"

// DBMinute is what a database holds for one checked minute.
type DBMinute struct {
	Minute      time.Time
	Stored      int64            // tracked pks with a sample
	ByClass     map[string]int64 // tracked pks recorded missed (and not stored), by class
	Unaccounted int64            // tracked pks neither stored nor missed
}

// Missed is the minute's missed pks, all classes.
func (m DBMinute) Missed() int64 {
	var n int64
	for _, c := range m.ByClass {
		n += c
	}
	return n
}

// DBCheck is the outcome of CheckDB.
type DBCheck struct {
	PKs     influencer.Range
	Minutes []DBMinute
	// Over the whole timeline (a benchmark's database holds only its run):
	Rows         int64    // sample rows
	Outside      int64    // of them outside the checked minutes or pks
	Duplicates   int64    // (pk, minute) pairs stored more than once
	Wrong        int64    // rows whose values differ from simulator.Counts
	WrongExample []string // the first few
	Both         int64    // (pk, minute) pairs both stored and missed in the checked minutes
	BadSummaries int64    // summaries that do not count each stored minute exactly once
}

// Stored is the samples stored over the checked minutes.
func (c DBCheck) Stored() int64 {
	var n int64
	for _, m := range c.Minutes {
		n += m.Stored
	}
	return n
}

// Unaccounted is the (pk, minute) pairs neither stored nor missed.
func (c DBCheck) Unaccounted() int64 {
	var n int64
	for _, m := range c.Minutes {
		n += m.Unaccounted
	}
	return n
}

// ByClass is the missed pks over the checked minutes by class.
func (c DBCheck) ByClass() map[string]int64 {
	out := map[string]int64{}
	for _, m := range c.Minutes {
		for k, v := range m.ByClass {
			out[k] += v
		}
	}
	return out
}

// Broken reports whether an invariant is broken: a duplicate, a wrong
// value, a pair neither stored nor missed or both, a bad summary.
func (c DBCheck) Broken() bool {
	return c.Duplicates > 0 || c.Wrong > 0 || c.Unaccounted() > 0 || c.Both > 0 || c.BadSummaries > 0
}

// CheckDB checks the database of a run on the deterministic simulator
// against it: every stored value against simulator.Counts, duplicates, the
// summaries, and per minute in [from, to) which tracked pks of r were
// stored, missed (by class) or neither. It works set-based and streams the
// timeline, so a few million rows are fine.
func CheckDB(ctx context.Context, dbURL string, r influencer.Range, from, to time.Time) (DBCheck, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	c := DBCheck{PKs: r}
	idx := map[int64]int{}
	for m := from.UTC(); m.Before(to); m = m.Add(time.Minute) {
		idx[m.Unix()] = len(c.Minutes)
		c.Minutes = append(c.Minutes, DBMinute{Minute: m, ByClass: map[string]int64{}})
	}

	rows, err := conn.Query(ctx, `SELECT pk, minute, follower_count, following_count FROM samples`)
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: samples: %w", err)
	}
	var pk, f, g int64
	var m time.Time
	_, err = pgx.ForEachRow(rows, []any{&pk, &m, &f, &g}, func() error {
		c.Rows++
		if wf, wg := simulator.Counts(pk, m); f != wf || g != wg {
			if c.Wrong < 5 {
				c.WrongExample = append(c.WrongExample, fmt.Sprintf("pk %d minute %s: stored %d/%d, simulator %d/%d",
					pk, m.UTC().Format(time.RFC3339), f, g, wf, wg))
			}
			c.Wrong++
		}
		i, ok := idx[m.Unix()]
		if !ok || pk < r.From || pk > r.To {
			c.Outside++
			return nil
		}
		c.Minutes[i].Stored++
		return nil
	})
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: samples: %w", err)
	}

	rows, err = conn.Query(ctx, `
		SELECT minute, CASE WHEN reason = '' THEN $5 ELSE class END, count(*)
		FROM missed
		WHERE minute >= $1 AND minute < $2 AND pk BETWEEN $3 AND $4
		GROUP BY 1, 2`, from, to, r.From, r.To, NoReason)
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: missed: %w", err)
	}
	var class string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&m, &class, &n}, func() error {
		if i, ok := idx[m.Unix()]; ok {
			c.Minutes[i].ByClass[class] += n
		}
		return nil
	})
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: missed: %w", err)
	}

	err = conn.QueryRow(ctx, `
		SELECT
		  (SELECT count(*) FROM (SELECT 1 FROM samples GROUP BY pk, minute HAVING count(*) > 1) d),
		  (SELECT count(*) FROM influencer_summary s
		     FULL JOIN (SELECT pk, count(*) AS n, sum(follower_count) AS sum, max(minute) AS last
		                FROM samples GROUP BY pk) a USING (pk)
		     WHERE s.pk IS NULL OR a.pk IS NULL OR s.samples <> a.n OR s.follower_sum <> a.sum OR s.last_minute <> a.last)`,
	).Scan(&c.Duplicates, &c.BadSummaries)
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: duplicates and summaries: %w", err)
	}

	both := make([]int64, len(c.Minutes))
	rows, err = conn.Query(ctx, `
		SELECT x.minute, count(*) FROM missed x JOIN samples s USING (pk, minute)
		WHERE x.minute >= $1 AND x.minute < $2 AND x.pk BETWEEN $3 AND $4
		GROUP BY 1`, from, to, r.From, r.To)
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: stored and missed: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&m, &n}, func() error {
		if i, ok := idx[m.Unix()]; ok {
			both[i] += n
			c.Both += n
		}
		return nil
	})
	if err != nil {
		return DBCheck{}, fmt.Errorf("check: stored and missed: %w", err)
	}

	pks := r.To - r.From + 1
	for i := range c.Minutes {
		mm := &c.Minutes[i]
		// A pair both stored and missed is counted once, as stored.
		mm.Unaccounted = pks - mm.Stored - mm.Missed() + both[i]
	}
	return c, nil
}

// ClassList is "class:n" sorted by class.
func ClassList[N int | int64](byClass map[string]N) []string {
	out := make([]string, 0, len(byClass))
	for _, k := range slices.Sorted(maps.Keys(byClass)) {
		out = append(out, fmt.Sprintf("%s:%d", k, byClass[k]))
	}
	return out
}

// SuspicionCheck is how many tracked pks of a range have an is_suspicious
// answer checked since a time, and how many of those differ from the
// deterministic simulator's.
type SuspicionCheck struct {
	Answered, Wrong int64
}

// CheckSuspicion reads the latest is_suspicious answers of r's pks checked at
// or after since and compares each with simulator.Suspicious.
func CheckSuspicion(ctx context.Context, dbURL string, r influencer.Range, since time.Time) (SuspicionCheck, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return SuspicionCheck{}, fmt.Errorf("check suspicion: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT pk, suspicious FROM suspicion WHERE pk BETWEEN $1 AND $2 AND checked_at >= $3`,
		r.From, r.To, since)
	if err != nil {
		return SuspicionCheck{}, fmt.Errorf("check suspicion: %w", err)
	}
	var (
		c   SuspicionCheck
		pk  int64
		sus bool
	)
	_, err = pgx.ForEachRow(rows, []any{&pk, &sus}, func() error {
		c.Answered++
		if sus != simulator.Suspicious(pk) {
			c.Wrong++
		}
		return nil
	})
	if err != nil {
		return SuspicionCheck{}, fmt.Errorf("check suspicion: %w", err)
	}
	return c, nil
}
