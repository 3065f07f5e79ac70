// Command chaoscheck checks a chaos run's database against the deterministic
// simulator: for every minute in [--from, --to) it counts the samples stored,
// the (pk, minute) pairs stored twice, the stored values that differ from
// simulator.Counts, the pks neither stored nor reported missed, and the
// summaries that do not count each stored minute exactly once. It prints the
// figures and exits 1 when an invariant is broken or fewer than --min-stored
// of the samples are stored.
//
//	go run ./scripts/chaoscheck --database-url postgres://... --pks 1000000-1000999 \
//	    --from 2026-01-01T12:01:00Z --to 2026-01-01T12:04:00Z
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
)

func main() {
	dbURL := flag.String("database-url", "", "PostgreSQL URL of the run's database")
	pkRange := flag.String("pks", "", "tracked pk range FROM-TO")
	fromS := flag.String("from", "", "first checked minute (RFC 3339)")
	toS := flag.String("to", "", "end of the checked minutes (exclusive, RFC 3339)")
	minStored := flag.Float64("min-stored", 0.999, "minimum fraction of samples stored")
	flag.Parse()
	if err := run(*dbURL, *pkRange, *fromS, *toS, *minStored); err != nil {
		fmt.Fprintln(os.Stderr, "chaoscheck:", err)
		os.Exit(1)
	}
}

func run(dbURL, pkRange, fromS, toS string, minStored float64) error {
	r, err := influencer.ParseRange(pkRange)
	if err != nil {
		return err
	}
	from, err := time.Parse(time.RFC3339, fromS)
	if err != nil {
		return err
	}
	to, err := time.Parse(time.RFC3339, toS)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	pks := r.To - r.From + 1
	minutes := int64(to.Sub(from) / time.Minute)
	want := pks * minutes

	type key struct {
		pk int64
		m  time.Time
	}
	stored := map[key]bool{}
	var dups, wrong, outside int64
	rows, err := conn.Query(ctx, `SELECT pk, minute, follower_count, following_count FROM samples`)
	if err != nil {
		return err
	}
	type agg struct {
		n, sum int64
		last   time.Time
	}
	perPK := map[int64]*agg{}
	for rows.Next() {
		var pk, f, g int64
		var m time.Time
		if err := rows.Scan(&pk, &m, &f, &g); err != nil {
			return err
		}
		m = m.UTC()
		k := key{pk, m}
		if stored[k] {
			dups++
		}
		stored[k] = true
		wf, wg := simulator.Counts(pk, m)
		if f != wf || g != wg {
			if wrong < 5 {
				fmt.Printf("WRONG pk %d minute %s: stored %d/%d, simulator %d/%d\n", pk, m.Format(time.RFC3339), f, g, wf, wg)
			}
			wrong++
		}
		a := perPK[pk]
		if a == nil {
			a = &agg{}
			perPK[pk] = a
		}
		a.n++
		a.sum += f
		if m.After(a.last) {
			a.last = m
		}
		if m.Before(from) || !m.Before(to) {
			outside++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}

	missed := map[key]string{}
	rows, err = conn.Query(ctx, `SELECT pk, minute, class, reason FROM missed WHERE minute >= $1 AND minute < $2`, from, to)
	if err != nil {
		return err
	}
	for rows.Next() {
		var pk int64
		var m time.Time
		var class, reason string
		if err := rows.Scan(&pk, &m, &class, &reason); err != nil {
			return err
		}
		if reason == "" {
			class = "(no reason)"
		}
		missed[key{pk, m.UTC()}] = class
	}
	if err := rows.Err(); err != nil {
		return err
	}

	var inWindow, unaccounted int64
	byClass := map[string]int64{}
	for m := from; m.Before(to); m = m.Add(time.Minute) {
		for pk := r.From; pk <= r.To; pk++ {
			k := key{pk, m}
			switch {
			case stored[k]:
				inWindow++
			case missed[k] != "":
				byClass[missed[k]]++
			default:
				unaccounted++
				if unaccounted <= 5 {
					fmt.Printf("UNACCOUNTED pk %d minute %s: neither stored nor missed\n", pk, m.Format(time.RFC3339))
				}
			}
		}
	}

	var badSummaries, summaries int64
	rows, err = conn.Query(ctx, `SELECT pk, samples, follower_sum, last_minute FROM influencer_summary`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var pk, n, sum int64
		var last time.Time
		if err := rows.Scan(&pk, &n, &sum, &last); err != nil {
			return err
		}
		summaries++
		a := perPK[pk]
		if a == nil || a.n != n || a.sum != sum || !a.last.Equal(last.UTC()) {
			if badSummaries < 5 {
				fmt.Printf("SUMMARY pk %d: samples %d follower_sum %d last %s; stored rows say %+v\n", pk, n, sum, last.UTC().Format(time.RFC3339), a)
			}
			badSummaries++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if int64(len(perPK)) != summaries {
		badSummaries += int64(len(perPK)) - summaries
	}

	frac := float64(inWindow) / float64(want)
	classes := make([]string, 0, len(byClass))
	for c, n := range byClass {
		classes = append(classes, fmt.Sprintf("%s:%d", c, n))
	}
	sort.Strings(classes)
	fmt.Printf("checked %d pks x %d minutes (%s .. %s)\n", pks, minutes, from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	fmt.Printf("stored %d/%d = %.4f %%\n", inWindow, want, 100*frac)
	fmt.Printf("missed %d by class %v\n", want-inWindow-unaccounted, classes)
	fmt.Printf("unaccounted (neither stored nor missed) %d\n", unaccounted)
	fmt.Printf("duplicates %d, wrong values %d (of %d rows, %d outside the checked minutes), bad summaries %d\n",
		dups, wrong, len(stored), outside, badSummaries)

	switch {
	case dups > 0 || wrong > 0 || unaccounted > 0 || badSummaries > 0:
		return fmt.Errorf("invariants broken")
	case frac < minStored:
		return fmt.Errorf("stored %.4f %% < %.4f %%", 100*frac, 100*minStored)
	}
	fmt.Println("OK")
	return nil
}
