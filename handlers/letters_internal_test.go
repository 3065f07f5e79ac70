package handlers

import (
	"testing"
	"time"
)

// The gate remembers at most max pairs: a full gate forgets the pairs whose
// interval is over first, then arbitrary ones (their next failure is
// dead-lettered early: more letters, never fewer).
func TestLetterGateIsBounded(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newLetterGate(time.Hour, 2)
	for i, pk := range []int64{1, 2} {
		if _, _, send := g.admit(pk, "not_found", t0.Add(time.Duration(i)*40*time.Minute)); !send {
			t.Fatalf("pk %d: first failure suppressed", pk)
		}
	}
	if _, _, send := g.admit(2, "not_found", t0.Add(50*time.Minute)); send {
		t.Fatal("pk 2: second failure within the hour sent")
	}
	// At 70 min pk 1's hour is over: it is forgotten to make room for pk 3.
	if _, _, send := g.admit(3, "not_found", t0.Add(70*time.Minute)); !send {
		t.Fatal("pk 3: first failure suppressed")
	}
	if len(g.sent) != 2 {
		t.Fatalf("%d pairs remembered, want 2", len(g.sent))
	}
	if _, ok := g.sent[letterKey{1, "not_found"}]; ok {
		t.Fatal("pk 1 (interval over) still remembered")
	}
	// Full of pairs within their hour: one is forgotten.
	if _, _, send := g.admit(4, "not_found", t0.Add(75*time.Minute)); !send {
		t.Fatal("pk 4: first failure suppressed")
	}
	if len(g.sent) != 2 {
		t.Fatalf("%d pairs remembered, want 2", len(g.sent))
	}
}
