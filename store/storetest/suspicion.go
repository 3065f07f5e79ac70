package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// suspicionTests are the contract tests of the is_suspicious answers.
var suspicionTests = []contractTest{
	{"SuspicionInSummary", testSuspicionInSummary},
	{"SuspicionLatestWins", testSuspicionLatestWins},
	{"SuspicionDuplicatesInOneCall", testSuspicionDuplicates},
	{"SuspicionInvalid", testSuspicionInvalid},
	{"SuspicionCandidates", testSuspicionCandidates},
	{"SuspicionSurvivesRecord", testSuspicionSurvivesRecord},
	{"SuspicionConcurrentSaves", testSuspicionConcurrentSaves},
}

func answer(pk int64, suspicious bool, m int) influencer.Suspicion {
	return influencer.Suspicion{PK: pk, Suspicious: suspicious, CheckedAt: minute(m)}
}

func saveSuspicion(t *testing.T, s store.Store, answers ...influencer.Suspicion) {
	t.Helper()
	require.NoError(t, s.SaveSuspicion(context.Background(), answers))
}

// suspicionOf is pk's stored answer as Summary reports it (nil: never
// checked).
func suspicionOf(t *testing.T, s store.Store, pk int64) *influencer.Suspicion {
	t.Helper()
	return summary(t, s, pk).Suspicion
}

func testSuspicionInSummary(t *testing.T, s store.Store) {
	ctx := context.Background()
	record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20)))
	assert.Equal(t, influencer.Summary{
		PK: 1, Username: "user-1-m0", FollowerCount: 100, FollowingCount: 10,
		LastMinute: minute(0), Samples: 1, FollowerSum: 100,
	}, summary(t, s, 1), "never checked: nil Suspicion")

	// A check time in another zone comes back in UTC.
	at := minute(10).In(time.FixedZone("UTC+5", 5*3600))
	saveSuspicion(t, s, influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: at})
	assert.Equal(t, influencer.Summary{
		PK: 1, Username: "user-1-m0", FollowerCount: 100, FollowingCount: 10,
		LastMinute: minute(0), Samples: 1, FollowerSum: 100,
		Suspicion: &influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(10)},
	}, summary(t, s, 1))
	assert.Nil(t, suspicionOf(t, s, 2), "other pks are not touched")

	// An answer for a pk without data is stored; Summary shows it once
	// the pk has data.
	saveSuspicion(t, s, answer(3, false, 11))
	_, err := s.Summary(ctx, 3)
	assert.ErrorIs(t, err, store.ErrNotFound)
	record(t, s, batch(1, sample(3, 1, 300, 30)))
	assert.Equal(t, &influencer.Suspicion{PK: 3, Suspicious: false, CheckedAt: minute(11)}, suspicionOf(t, s, 3))

	require.NoError(t, s.SaveSuspicion(ctx, nil), "no answers")
	require.NoError(t, s.SaveSuspicion(ctx, []influencer.Suspicion{}), "no answers")
	assert.Equal(t, &influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(10)}, suspicionOf(t, s, 1))
}

func testSuspicionLatestWins(t *testing.T, s store.Store) {
	record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20)))
	saveSuspicion(t, s, answer(2, true, 1))
	steps := []struct {
		name   string
		answer influencer.Suspicion
		want   influencer.Suspicion
	}{
		{"first answer", answer(1, true, 10), answer(1, true, 10)},
		{"older answer changes nothing", answer(1, false, 5), answer(1, true, 10)},
		{"answer at the same time changes nothing", answer(1, false, 10), answer(1, true, 10)},
		{"newer answer replaces it", answer(1, false, 11), answer(1, false, 11)},
		{"newer answer with the same verdict moves the time", answer(1, false, 12), answer(1, false, 12)},
		{"a second older answer changes nothing", answer(1, true, 11), answer(1, false, 12)},
		{"sub-minute newer answer", influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(12).Add(time.Second)},
			influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(12).Add(time.Second)}},
	}
	for _, st := range steps {
		saveSuspicion(t, s, st.answer)
		got := suspicionOf(t, s, 1)
		require.NotNil(t, got, st.name)
		assert.Equal(t, st.want, *got, st.name)
	}
	assert.Equal(t, &influencer.Suspicion{PK: 2, Suspicious: true, CheckedAt: minute(1)}, suspicionOf(t, s, 2), "other pk unchanged")
}

func testSuspicionDuplicates(t *testing.T, s store.Store) {
	record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20), sample(3, 0, 300, 30)))
	saveSuspicion(t, s, answer(3, true, 20))

	// The latest answer of each pk wins wherever it is in the call.
	saveSuspicion(t, s,
		answer(1, false, 3), answer(2, true, 9), answer(1, true, 7), answer(3, false, 25),
		answer(1, false, 5), answer(2, false, 4), answer(3, false, 21),
	)
	assert.Equal(t, &influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(7)}, suspicionOf(t, s, 1))
	assert.Equal(t, &influencer.Suspicion{PK: 2, Suspicious: true, CheckedAt: minute(9)}, suspicionOf(t, s, 2))
	assert.Equal(t, &influencer.Suspicion{PK: 3, Suspicious: false, CheckedAt: minute(25)}, suspicionOf(t, s, 3))

	// Duplicates all older than the stored answer change nothing.
	saveSuspicion(t, s, answer(1, false, 6), answer(1, false, 2), answer(1, false, 7))
	assert.Equal(t, &influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(7)}, suspicionOf(t, s, 1))
}

func testSuspicionInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20)))
	saveSuspicion(t, s, answer(1, false, 1))
	tests := []struct {
		name string
		bad  influencer.Suspicion
	}{
		{"zero pk", answer(0, true, 9)},
		{"negative pk", answer(-5, true, 9)},
		{"zero check time", influencer.Suspicion{PK: 2, Suspicious: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Valid answers before and after the bad one: none is stored.
			err := s.SaveSuspicion(ctx, []influencer.Suspicion{answer(1, true, 9), answer(2, true, 9), tc.bad, answer(2, true, 10)})
			require.Error(t, err)
			assert.ErrorIs(t, err, store.ErrInvalid)
		})
	}
	assert.Equal(t, &influencer.Suspicion{PK: 1, Suspicious: false, CheckedAt: minute(1)}, suspicionOf(t, s, 1))
	assert.Nil(t, suspicionOf(t, s, 2))
	got, err := s.SuspicionCandidates(ctx, []int64{1, 2}, minute(-100))
	require.NoError(t, err)
	assert.Empty(t, got, "untracked")
}

func testSuspicionCandidates(t *testing.T, s store.Store) {
	ctx := context.Background()
	// 1-5 and 8 are tracked with data, 6 is tracked without data, 7 has
	// data but was never tracked, 5 is untracked later.
	track(t, s, 1, 2, 3, 4, 5, 6, 8)
	record(t, s, batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20), sample(3, 0, 300, 30),
		sample(4, 0, 400, 40), sample(5, 0, 500, 50), sample(7, 0, 700, 70), sample(8, 0, 800, 80)))
	// pk 2 moves on (the latest values count); an older minute of pk 4
	// arriving late does not.
	record(t, s, batch(1, sample(2, 1, 222, 22)))
	record(t, s, batch(-1, sample(4, -1, 44, 4)))
	untrack(t, s, 5)
	saveSuspicion(t, s,
		answer(1, false, 20), // checked after since: excluded
		answer(3, true, 10),  // checked exactly at since: excluded
		answer(4, true, 9),   // checked before since: included
		answer(7, false, 1),  // untracked anyway
	)

	cand := map[int64]influencer.SuspicionCandidate{
		1: {PK: 1, Username: "user-1-m0", FollowerCount: 100, FollowingCount: 10},
		2: {PK: 2, Username: "user-2-m1", FollowerCount: 222, FollowingCount: 22},
		3: {PK: 3, Username: "user-3-m0", FollowerCount: 300, FollowingCount: 30},
		4: {PK: 4, Username: "user-4-m0", FollowerCount: 400, FollowingCount: 40},
		5: {PK: 5, Username: "user-5-m0", FollowerCount: 500, FollowingCount: 50},
		8: {PK: 8, Username: "user-8-m0", FollowerCount: 800, FollowingCount: 80},
	}
	want := func(pks ...int64) []influencer.SuspicionCandidate {
		out := []influencer.SuspicionCandidate{}
		for _, pk := range pks {
			out = append(out, cand[pk])
		}
		return out
	}
	everyone := []int64{8, 7, 6, 5, 4, 3, 2, 1}
	tests := []struct {
		name  string
		pks   []int64
		since time.Time
		want  []influencer.SuspicionCandidate
	}{
		{"asked pks, ascending", []int64{8, 7, 99, 6, 5, 4, 3, 2, 1, 2, 0, -1}, minute(10), want(2, 4, 8)},
		{"one pk", []int64{4}, minute(10), want(4)},
		{"checked at or after since", []int64{1, 3}, minute(10), want()},
		{"since before every answer", everyone, minute(0), want(2, 8)},
		{"since just after an answer", everyone, minute(10).Add(time.Microsecond), want(2, 3, 4, 8)},
		{"since after every answer", everyone, minute(21), want(1, 2, 3, 4, 8)},
		{"untracked", []int64{5}, minute(21), want()},
		{"never tracked", []int64{7}, minute(21), want()},
		{"tracked without data", []int64{6}, minute(21), want()},
		{"unknown pks", []int64{99, 100}, minute(21), want()},
		{"nil", nil, minute(21), want()},
		{"empty", []int64{}, minute(21), want()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.SuspicionCandidates(ctx, tc.pks, tc.since)
			require.NoError(t, err)
			require.NotNil(t, got, "empty, not nil")
			assert.Equal(t, tc.want, got)
		})
	}

	// Answering a candidate removes it; re-tracking brings pk 5 back.
	saveSuspicion(t, s, answer(8, true, 15))
	track(t, s, 5)
	got, err := s.SuspicionCandidates(ctx, everyone, minute(10))
	require.NoError(t, err)
	assert.Equal(t, want(2, 4, 5), got)
}

func testSuspicionSurvivesRecord(t *testing.T, s store.Store) {
	track(t, s, 1, 2)
	b := batch(0, sample(1, 0, 100, 10), sample(2, 0, 200, 20))
	record(t, s, b)
	saveSuspicion(t, s, answer(1, true, 5))
	want := &influencer.Suspicion{PK: 1, Suspicious: true, CheckedAt: minute(5)}

	assert.Equal(t, store.RecordResult{Duplicates: 2}, record(t, s, b), "redelivered batch")
	assert.Equal(t, want, suspicionOf(t, s, 1))
	record(t, s, batch(1, sample(1, 1, 150, 15)))
	assert.Equal(t, influencer.Summary{
		PK: 1, Username: "user-1-m1", FollowerCount: 150, FollowingCount: 15,
		LastMinute: minute(1), Samples: 2, FollowerSum: 250, Suspicion: want,
	}, summary(t, s, 1), "a new minute")
	untrack(t, s, 1)
	track(t, s, 1)
	assert.Equal(t, want, suspicionOf(t, s, 1), "untracked and re-tracked")
	assert.Nil(t, suspicionOf(t, s, 2))
}

// testSuspicionConcurrentSaves: concurrent calls answering overlapping pks
// in different orders neither fail (deadlocks, conflicts) nor lose the
// latest answer.
func testSuspicionConcurrentSaves(t *testing.T, s store.Store) {
	ctx := context.Background()
	const (
		workers = 4
		calls   = 10
		pks     = 30
	)
	b := influencer.Batch{Minute: minute(0)}
	for pk := int64(1); pk <= pks; pk++ {
		b.Samples = append(b.Samples, sample(pk, 0, pk, pk))
	}
	record(t, s, b)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for c := range calls {
				answers := make([]influencer.Suspicion, 0, pks)
				for i := range int64(pks) {
					pk := 1 + i
					if (w+c)%2 == 1 {
						pk = pks - i // reversed order in half of the calls
					}
					// Worker w's call c is checked at minute c*workers+w.
					answers = append(answers, answer(pk, w%2 == 0, c*workers+w))
				}
				if !assert.NoError(t, s.SaveSuspicion(ctx, answers)) {
					return
				}
			}
		})
	}
	wg.Wait()
	last := (calls-1)*workers + workers - 1
	for pk := int64(1); pk <= pks; pk++ {
		assert.Equal(t, &influencer.Suspicion{PK: pk, Suspicious: (workers-1)%2 == 0, CheckedAt: minute(last)}, suspicionOf(t, s, pk))
	}
}
