package handlers_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/simulator"
)

// Once a task's budget has passed no new request starts: the requests in
// flight end and are stored, the pks not asked yet go on in a continuation
// task of the same round, shard and deadline, and the delivery succeeds.
func TestSuspicionCheckerContinuesATaskOverItsBudget(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	inFlight := make(chan int64, 8)
	api := newSuspicionAPI(t, func(w http.ResponseWriter, pk, _ int64) {
		inFlight <- pk
		<-release
		answer(w, pk, simulator.Suspicious(pk))
	})
	pks := []int64{1_000_001, 1_000_002, 1_000_003, 1_000_004, 1_000_005, 1_000_006}
	store := newFakeSuspicionStore(pks...)
	clock := clockwork.NewFakeClock()
	pub := &fakePublisher{}
	m := newMetrics()
	client, err := mockstagramapi.New(mockstagramapi.Config{BaseURL: api.URL, Concurrency: 2, Timeout: 10 * time.Second},
		clockwork.NewRealClock(), discardLogger(), m)
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	c, err := handlers.NewSuspicionChecker(handlers.SuspicionConfig{
		Concurrency: 2, Attempts: 1, RetryInitial: time.Millisecond, RetryMax: time.Millisecond, TaskBudget: time.Minute,
	}, client, store, pub, clock, discardLogger(), m)
	require.NoError(t, err)

	tk := messages.SuspicionTask{Round: clock.Now().Add(-time.Hour), Shard: 3, Deadline: clock.Now().Add(time.Hour), PKs: pks}
	done := make(chan error, 1)
	go func() { done <- c.Handle(suspicionTaskMessage(t, tk)) }()
	asked := []int64{<-inFlight, <-inFlight}                   // both slots taken
	require.NoError(t, clock.BlockUntilContext(waitCtx(t), 2)) // the deadline's and the budget's timers
	clock.Advance(time.Minute)
	close(release)
	require.NoError(t, <-done)

	require.Len(t, store.saves, 1)
	var answered []int64
	for _, a := range store.saves[0] {
		answered = append(answered, a.PK)
		assert.Equal(t, simulator.Suspicious(a.PK), a.Suspicious, "pk %d", a.PK)
	}
	assert.ElementsMatch(t, asked, answered, "the requests in flight at the budget are stored")
	var rest []int64
	for _, pk := range pks {
		if pk != asked[0] && pk != asked[1] {
			rest = append(rest, pk)
		}
	}
	got := pub.published()
	require.Len(t, got, 1)
	assert.Equal(t, messages.TopicSuspicionTasks, got[0].topic)
	cont, err := messages.DecodeSuspicionTask(got[0].msg.Payload)
	require.NoError(t, err)
	assert.Equal(t, tk.Shard, cont.Shard)
	assert.True(t, tk.Round.Equal(cont.Round), "round %s", cont.Round)
	assert.True(t, tk.Deadline.Equal(cont.Deadline), "deadline %s", cont.Deadline)
	assert.Equal(t, rest, cont.PKs)
	assert.Equal(t, int64(2), api.requests.Load(), "no request after the budget")
}
