// Command chaoscheck checks a run's database against the deterministic
// simulator (bench.CheckDB, which 'mockstagram bench' also runs after each
// wiring): for every minute in [--from, --to) it counts the samples stored,
// the (pk, minute) pairs stored twice, the stored values that differ from
// simulator.Counts, the pks neither stored nor reported missed, and the
// summaries that do not count each stored minute exactly once. It prints the
// figures and exits 1 when an invariant is broken or fewer than --min-stored
// of the samples are stored. With --suspicion-since it also checks that
// every tracked pk has an is_suspicious answer checked at or after that time.
//
//	go run ./scripts/chaoscheck --database-url postgres://... --pks 1000000-1000999 \
//	    --from 2026-01-01T12:01:00Z --to 2026-01-01T12:04:00Z
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mockstagram/pipeline/bench"
	"github.com/mockstagram/pipeline/influencer"
)

func main() {
	dbURL := flag.String("database-url", "", "PostgreSQL URL of the run's database")
	pkRange := flag.String("pks", "", "tracked pk range FROM-TO")
	fromS := flag.String("from", "", "first checked minute (RFC 3339)")
	toS := flag.String("to", "", "end of the checked minutes (exclusive, RFC 3339)")
	minStored := flag.Float64("min-stored", 0.999, "minimum fraction of samples stored")
	suspicionS := flag.String("suspicion-since", "", "when set (RFC 3339): every pk must have an is_suspicious answer checked since then")
	flag.Parse()
	if err := run(os.Stdout, *dbURL, *pkRange, *fromS, *toS, *minStored, *suspicionS); err != nil {
		fmt.Fprintln(os.Stderr, "chaoscheck:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, dbURL, pkRange, fromS, toS string, minStored float64, suspicionS string) error {
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := bench.CheckDB(ctx, dbURL, r, from, to)
	if err != nil {
		return err
	}
	frac := report(out, c)
	unanswered := int64(0)
	if suspicionS != "" {
		since, err := time.Parse(time.RFC3339, suspicionS)
		if err != nil {
			return err
		}
		sc, err := bench.CheckSuspicion(ctx, dbURL, r, since)
		if err != nil {
			return err
		}
		unanswered = r.To - r.From + 1 - sc.Answered + sc.Wrong
		fmt.Fprintf(out, "is_suspicious answered since %s: %d of %d pks, %d wrong\n",
			since.Format(time.TimeOnly), sc.Answered, r.To-r.From+1, sc.Wrong)
	}
	switch {
	case c.Broken():
		return fmt.Errorf("invariants broken")
	case frac < minStored:
		return fmt.Errorf("stored %.4f %% < %.4f %%", 100*frac, 100*minStored)
	case unanswered > 0:
		return fmt.Errorf("%d pks without a right is_suspicious answer", unanswered)
	}
	fmt.Fprintln(out, "OK")
	return nil
}

// report prints the check and returns the stored fraction.
func report(out io.Writer, c bench.DBCheck) float64 {
	for _, w := range c.WrongExample {
		fmt.Fprintln(out, "WRONG", w)
	}
	pks := c.PKs.To - c.PKs.From + 1
	want := pks * int64(len(c.Minutes))
	frac := 0.0
	if want > 0 {
		frac = float64(c.Stored()) / float64(want)
	}
	from, to := "-", "-"
	if len(c.Minutes) > 0 {
		from = c.Minutes[0].Minute.Format(time.TimeOnly)
		to = c.Minutes[len(c.Minutes)-1].Minute.Add(time.Minute).Format(time.TimeOnly)
	}
	var missed int64
	for _, n := range c.ByClass() {
		missed += n
	}
	for _, m := range c.Minutes {
		fmt.Fprintf(out, "minute %s  stored %d  missed %d %v  unaccounted %d\n",
			m.Minute.Format(time.TimeOnly), m.Stored, m.Missed(), bench.ClassList(m.ByClass), m.Unaccounted)
	}
	fmt.Fprintf(out, "checked %d pks x %d minutes (%s .. %s)\n", pks, len(c.Minutes), from, to)
	fmt.Fprintf(out, "stored %d/%d = %.4f %%\n", c.Stored(), want, 100*frac)
	fmt.Fprintf(out, "missed %d by class %v\n", missed, bench.ClassList(c.ByClass()))
	fmt.Fprintf(out, "unaccounted (neither stored nor missed) %d, both stored and missed %d\n", c.Unaccounted(), c.Both)
	fmt.Fprintf(out, "duplicates %d, wrong values %d (of %d rows, %d outside the checked minutes), bad summaries %d\n",
		c.Duplicates, c.Wrong, c.Rows, c.Outside, c.BadSummaries)
	return frac
}
