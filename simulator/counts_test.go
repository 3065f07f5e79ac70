package simulator

import (
	"testing"
	"time"
)

func TestCountsIsPure(t *testing.T) {
	t.Parallel()
	for pk := int64(1_000_000); pk < 1_000_200; pk++ {
		for m := range 5 {
			minute := testStart.Add(time.Duration(m) * time.Minute)
			f1, g1 := Counts(pk, minute)
			f2, g2 := Counts(pk, minute)
			if f1 != f2 || g1 != g2 {
				t.Fatalf("Counts(%d, %s) not stable: (%d,%d) then (%d,%d)", pk, minute, f1, g1, f2, g2)
			}
			// Any instant inside the minute, in any location, is the same minute.
			inside := minute.Add(59*time.Second + 999*time.Millisecond).In(time.FixedZone("X", 5*3600+1800))
			if f3, g3 := Counts(pk, inside); f3 != f1 || g3 != g1 {
				t.Fatalf("Counts(%d) differs within the minute %s", pk, minute)
			}
		}
	}
}

func TestCountsProperties(t *testing.T) {
	t.Parallel()
	var (
		minF, maxF int64 = 1 << 62, 0
		minG, maxG int64 = 1 << 62, 0
	)
	for pk := int64(1_000_000); pk < 1_100_000; pk++ {
		f, g := Counts(pk, testStart)
		if f < 0 || g <= 0 {
			t.Fatalf("Counts(%d) = (%d, %d): negative or zero following", pk, f, g)
		}
		minF, maxF = min(minF, f), max(maxF, f)
		minG, maxG = min(minG, g), max(maxG, g)
	}
	if minF > 1_000 || maxF < 5_000_000 || maxF > 15_000_000 {
		t.Errorf("followers spread over [%d, %d], want about 100..10,000,000", minF, maxF)
	}
	if minG > 20 || maxG < 5_000 || maxG > 10_000 {
		t.Errorf("following spread over [%d, %d], want about 10..7,500", minG, maxG)
	}
}

func TestCountsChangeEveryMinuteAndStayPlausible(t *testing.T) {
	t.Parallel()
	for _, start := range []time.Time{
		testStart,
		time.Unix(0, 0).Add(-3 * time.Hour), // before the epoch
		time.Date(2030, 12, 31, 23, 0, 0, 0, time.UTC),
	} {
		for pk := int64(1_000_000); pk < 1_000_020; pk++ {
			f0, _ := Counts(pk, start)
			prev, _ := Counts(pk, start)
			// Two weeks: both slopes of the trend and its turning points.
			for m := 1; m <= 2*trendPeriod; m++ {
				f, g := Counts(pk, start.Add(time.Duration(m)*time.Minute))
				if f == prev {
					t.Fatalf("pk %d: followers unchanged from minute %d to %d", pk, m-1, m)
				}
				if f < 0 || g <= 0 {
					t.Fatalf("pk %d minute %d: (%d, %d)", pk, m, f, g)
				}
				if f > f0*2+1000 {
					t.Fatalf("pk %d minute %d: followers %d drifted far from %d", pk, m, f, f0)
				}
				prev = f
			}
		}
	}
}

func TestSuspiciousAndUsername(t *testing.T) {
	t.Parallel()
	if got := Username(1000001); got != "influencer-1000001" {
		t.Errorf("Username = %q", got)
	}
	n := 0
	for pk := int64(1_000_000); pk < 1_010_000; pk++ {
		if first, again := Suspicious(pk), Suspicious(pk); first != again {
			t.Fatal("Suspicious is not deterministic")
		}
		if Suspicious(pk) {
			n++
		}
	}
	if n < 100 || n > 600 {
		t.Errorf("%d of 10,000 pks suspicious, want a few percent", n)
	}
}
