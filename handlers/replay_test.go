package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/middleware"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/memory"
)

const replayGrace = 5 * time.Second

// minuteNow is the minute that lasts when the replays of these tests run
// (at replayNow); minute0 is over by then.
var (
	minuteNow = minute0.Add(10 * time.Minute)
	replayNow = minuteNow.Add(20 * time.Second)
	rules     = handlers.ReplayRules{Now: replayNow, DeadlineGrace: replayGrace, SuspicionInterval: 2 * time.Hour}
)

// TestPoisonedTaskArchivedListedAndReplayed runs a fetch-task handler with
// the app's middleware and the archiver in a router: a valid task that made
// the handler panic and a malformed task go through the poison queue to
// fetcher_dlq, are archived and listed as poisoned letters; a replay
// republishes the task of the minute that lasts, reports the past minute's
// task as expired (not refetched) and the malformed one as not replayable.
func TestPoisonedTaskArchivedListedAndReplayed(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	logger := slog.New(slog.DiscardHandler)
	wl := watermill.NewSlogLogger(logger)
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, wl)
	router, err := message.NewRouter(message.RouterConfig{}, wl)
	require.NoError(t, err)

	// A handler that decodes its task as the fetcher does, then panics.
	panicky := func(msg *message.Message) error {
		if _, err := messages.DecodeTask(msg.Payload); err != nil {
			return err
		}
		panic("boom")
	}
	h := router.AddConsumerHandler(messages.HandlerFetcher, messages.TopicFetchTasks, pubSub, panicky)
	mws, err := middleware.Chain(logger, pubSub, messages.TopicFetcherDLQ, middleware.Retry{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, middleware.Redelivery{})
	require.NoError(t, err)
	h.AddMiddleware(mws...)
	mem := memory.New(clockwork.NewFakeClockAt(archivedAt))
	a := handlers.NewDeadLetterArchiver(mem, clockwork.NewFakeClockAt(archivedAt), logger, newMetrics())
	router.AddConsumerHandler(messages.HandlerDeadLetters, messages.TopicFetcherDLQ, pubSub, a.Handler(messages.TopicFetcherDLQ))

	runRouter(ctx, t, router, pubSub)

	past := messages.Task{Minute: minute0, Shard: 2, Deadline: influencer.Deadline(minute0, replayGrace), PKs: []int64{11, 12}}
	current := messages.Task{Minute: minuteNow, Shard: 4, Deadline: influencer.Deadline(minuteNow, replayGrace), PKs: []int64{21, 22, 23}}
	ids := map[string]string{} // message id -> which task
	for name, tk := range map[string]messages.Task{"past": past, "current": current} {
		msg, err := messages.NewTask(tk)
		require.NoError(t, err)
		msg.Metadata.Set("traceparent", traceparent)
		ids[msg.UUID] = name
		require.NoError(t, pubSub.Publish(messages.TopicFetchTasks, msg))
	}
	malformedPayload := []byte(`{"minute":"2025-03-14T09:36:01Z","shard":4,"deadline":"2025-03-14T09:37:05Z","pks":[1]}`)
	malformed := message.NewMessage(watermill.NewUUID(), malformedPayload)
	ids[malformed.UUID] = "malformed"
	require.NoError(t, pubSub.Publish(messages.TopicFetchTasks, malformed))

	// Listed: three poisoned letters of the fetcher.
	f := store.DeadLetterFilter{Topic: messages.TopicFetcherDLQ, Limit: 10}
	var letters []store.DeadLetter
	for len(letters) < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("archived %d of 3 dead letters", len(letters))
		case <-time.After(5 * time.Millisecond):
		}
		letters, err = mem.DeadLetters(ctx, f)
		require.NoError(t, err)
	}
	require.Len(t, letters, 3)
	byName := map[string]store.DeadLetter{}
	for _, d := range letters {
		byName[ids[d.ID]] = d
		assert.Equal(t, messages.DeadLetterPoisoned, d.Metadata[messages.MetaDeadLetterKind], d.ID)
		assert.Equal(t, messages.DeadLetterPoisoned, handlers.DeadLetterKind(d), d.ID)
		assert.Equal(t, messages.HandlerFetcher, d.Stage, "the stage is the handler's name, as for a pk failure")
		assert.Equal(t, messages.TopicFetchTasks, d.OriginalTopic)
	}
	require.Len(t, byName, 3)
	assert.Equal(t, middleware.ClassPanic, byName["past"].Class)
	assert.Equal(t, middleware.ClassPanic, byName["current"].Class)
	assert.Equal(t, middleware.ClassMalformed, byName["malformed"].Class)
	assert.True(t, byName["current"].Minute.Equal(minuteNow))

	// Replayed.
	pub := &fakePublisher{}
	r := handlers.Replayer{Store: mem, Publisher: pub, Rules: rules}
	events := map[string]handlers.ReplayEvent{}
	counts, err := r.Replay(ctx, store.DeadLetterFilter{NotReplayed: true}, func(ev handlers.ReplayEvent) {
		events[ids[ev.Letter.ID]] = ev
	})
	require.NoError(t, err)
	assert.Equal(t, handlers.ReplayCounts{Replayed: 1, Expired: 1, Errors: 1}, counts)

	assert.Equal(t, handlers.Expired, events["past"].Outcome)
	assert.True(t, events["past"].Minute.Equal(minute0), "the past minute is reported: %s", events["past"].Minute)
	assert.Equal(t, handlers.ReplayError, events["malformed"].Outcome)
	require.Error(t, events["malformed"].Err)
	assert.ErrorIs(t, events["malformed"].Err, messages.ErrMalformed)
	assert.Contains(t, events["malformed"].Err.Error(), "cannot replay: malformed message: task minute missing or not minute-aligned")
	assert.Equal(t, handlers.Replayed, events["current"].Outcome)

	pubs := pub.published()
	require.Len(t, pubs, 1, "only the task of the minute that lasts is republished")
	assert.Equal(t, messages.TopicFetchTasks, pubs[0].topic)
	got, err := messages.DecodeTask(pubs[0].msg.Payload)
	require.NoError(t, err)
	assert.Equal(t, current.PKs, got.PKs)
	assert.Equal(t, current.Shard, got.Shard)
	assert.True(t, got.Minute.Equal(minuteNow))
	assert.True(t, got.Deadline.Equal(influencer.Deadline(minuteNow, replayGrace)), "deadline %s", got.Deadline)
	assert.Equal(t, byName["current"].ID, pubs[0].msg.Metadata.Get(messages.MetaReplayOf))
	assert.Equal(t, traceparent, pubs[0].msg.Metadata.Get("traceparent"))
	for _, k := range []string{messages.MetaDeadLetterKind, messages.MetaReason, messages.MetaClass, wmw.PoisonedTopicKey} {
		assert.Empty(t, pubs[0].msg.Metadata.Get(k), "dead-letter annotation %s dropped", k)
	}

	after, err := mem.DeadLetters(ctx, f)
	require.NoError(t, err)
	for _, d := range after {
		if ids[d.ID] == "current" {
			require.NotNil(t, d.ReplayedAt)
			assert.True(t, d.ReplayedAt.Equal(replayNow))
		} else {
			assert.Nil(t, d.ReplayedAt, "%s is left unreplayed", ids[d.ID])
		}
	}
}

func TestDeadLetterKind(t *testing.T) {
	t.Parallel()
	pkPayload := []byte(`{"pk":42,"minute":"2025-03-14T09:26:00Z","class":"http_5xx","reason":"HTTP 503","attempts":3,"shard":1}`)
	taskPayload := []byte(`{"minute":"2025-03-14T09:26:00Z","shard":1,"deadline":"2025-03-14T09:27:00Z","pks":[42]}`)
	for _, tc := range []struct {
		name     string
		payload  []byte
		metadata map[string]string
		want     string
	}{
		{"pk failure, by metadata", pkPayload, map[string]string{messages.MetaDeadLetterKind: messages.DeadLetterPKFailure}, messages.DeadLetterPKFailure},
		{"poisoned, by metadata", taskPayload, map[string]string{messages.MetaDeadLetterKind: messages.DeadLetterPoisoned}, messages.DeadLetterPoisoned},
		{"metadata wins over the payload", pkPayload, map[string]string{messages.MetaDeadLetterKind: messages.DeadLetterPoisoned}, messages.DeadLetterPoisoned},
		{"old poisoned: the poison queue's metadata", pkPayload, map[string]string{wmw.PoisonedTopicKey: messages.TopicFetchTasks}, messages.DeadLetterPoisoned},
		{"old pk failure: its payload", pkPayload, map[string]string{messages.MetaStage: messages.HandlerFetcher}, messages.DeadLetterPKFailure},
		{"old task without poison metadata", taskPayload, map[string]string{messages.MetaStage: messages.HandlerFetcher}, messages.DeadLetterPoisoned},
		{"foreign bytes", []byte{0xff}, nil, messages.DeadLetterPoisoned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, handlers.DeadLetterKind(store.DeadLetter{Payload: tc.payload, Metadata: tc.metadata}))
		})
	}
}

// letter is a dead letter as the archiver stores it; kind "" is a letter
// archived before the kind existed.
func letter(dlqTopic, stage, kind string, payload []byte, poisoned bool) store.DeadLetter {
	meta := map[string]string{
		messages.MetaShard: "1", "traceparent": traceparent,
		messages.MetaReason: "why", messages.MetaClass: "c", messages.MetaStage: stage, messages.MetaAttempts: "2",
	}
	if kind != "" {
		meta[messages.MetaDeadLetterKind] = kind
	}
	if poisoned {
		meta[wmw.PoisonedTopicKey] = handlers.OriginalTopic(dlqTopic)
		meta[wmw.PoisonedHandlerKey] = stage
		meta[wmw.ReasonForPoisonedKey] = "why"
	}
	return store.DeadLetter{ID: "id-1", Topic: dlqTopic, OriginalTopic: handlers.OriginalTopic(dlqTopic), Stage: stage,
		Payload: payload, Metadata: meta, ReceivedAt: replayNow}
}

func TestReplayMessage(t *testing.T) {
	t.Parallel()
	pk := func(m time.Time) []byte {
		return fmt.Appendf(nil, `{"pk":42,"minute":%q,"class":"http_5xx","reason":"HTTP 503","attempts":3,"shard":1}`, m.Format(time.RFC3339))
	}
	task := func(m time.Time) []byte {
		return fmt.Appendf(nil, `{"minute":%q,"shard":1,"deadline":%q,"pks":[42,43]}`, m.Format(time.RFC3339), m.Add(time.Minute).Format(time.RFC3339))
	}
	suspicionTask := []byte(`{"round":"2025-03-14T00:00:00Z","shard":1,"deadline":"2025-03-15T00:00:00Z","pks":[42,43]}`)
	result := []byte(`{"minute":"2025-03-14T09:26:00Z","shard":1,"samples":[]}`)
	fetchTask := func(m time.Time, pks ...int64) messages.Task {
		return messages.Task{Minute: m, Shard: 1, Deadline: influencer.Deadline(m, replayGrace), PKs: pks}
	}
	const (
		fetchDLQ, suspicionDLQ = messages.TopicFetcherDLQ, messages.TopicSuspicionDLQ
		fetcher, suspicion     = messages.HandlerFetcher, messages.HandlerSuspicion
		pkFailure, poisoned    = messages.DeadLetterPKFailure, messages.DeadLetterPoisoned
	)
	for _, tc := range []struct {
		name          string
		d             store.DeadLetter
		wantTask      *messages.Task
		wantSuspicion *messages.SuspicionTask
		wantPayload   []byte
		wantExpired   time.Time
		wantErr       string
	}{
		{name: "pk failure of the minute that lasts: a one-pk task", d: letter(fetchDLQ, fetcher, pkFailure, pk(minuteNow), false),
			wantTask: new(fetchTask(minuteNow, 42))},
		{name: "pk failure of a past minute: expired", d: letter(fetchDLQ, fetcher, pkFailure, pk(minute0), false), wantExpired: minute0},
		{name: "pk failure of the minute before, past its grace", d: letter(fetchDLQ, fetcher, pkFailure, pk(minuteNow.Add(-time.Minute)), false),
			wantExpired: minuteNow.Add(-time.Minute)},
		{name: "poisoned task (stage fetcher) of the minute that lasts: the task again", d: letter(fetchDLQ, fetcher, poisoned, task(minuteNow), true),
			wantTask: new(fetchTask(minuteNow, 42, 43))},
		{name: "poisoned task of a past minute: expired", d: letter(fetchDLQ, fetcher, poisoned, task(minute0), true), wantExpired: minute0},
		{name: "malformed poisoned task", d: letter(fetchDLQ, fetcher, poisoned, []byte(`{"pks":"x"}`), true),
			wantErr: "cannot replay: malformed message: *messages.Task: json: cannot unmarshal"},
		{name: "a pk-failure kind without a pk failure's payload", d: letter(fetchDLQ, fetcher, pkFailure, task(minuteNow), false),
			wantErr: "payload is not a fetch dead letter"},
		{name: "old pk failure (no kind): derived from the payload", d: letter(fetchDLQ, fetcher, "", pk(minuteNow), false),
			wantTask: new(fetchTask(minuteNow, 42))},
		{name: "old pk failure of a past minute", d: letter(fetchDLQ, fetcher, "", pk(minute0), false), wantExpired: minute0},
		{name: "old poisoned task (no kind): derived from the poison queue's metadata", d: letter(fetchDLQ, fetcher, "", task(minuteNow), true),
			wantTask: new(fetchTask(minuteNow, 42, 43))},
		{name: "suspicion pk failure: a one-pk check, whatever the round's age", d: letter(suspicionDLQ, suspicion, pkFailure, pk(minute0), false),
			wantSuspicion: &messages.SuspicionTask{Round: minute0, Shard: 1, Deadline: replayNow.Add(2 * time.Hour), PKs: []int64{42}}},
		{name: "poisoned suspicion task (stage suspicion): the task again", d: letter(suspicionDLQ, suspicion, poisoned, suspicionTask, true),
			wantSuspicion: &messages.SuspicionTask{Round: time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC), Shard: 1, Deadline: replayNow.Add(2 * time.Hour), PKs: []int64{42, 43}}},
		{name: "old suspicion pk failure", d: letter(suspicionDLQ, suspicion, "", pk(minute0), false),
			wantSuspicion: &messages.SuspicionTask{Round: minute0, Shard: 1, Deadline: replayNow.Add(2 * time.Hour), PKs: []int64{42}}},
		{name: "poisoned result: the original message", d: letter(messages.TopicResultDLQ, messages.HandlerRecorder, poisoned, result, true),
			wantPayload: result},
		{name: "old poisoned result", d: letter(messages.TopicResultDLQ, messages.HandlerRecorder, "", result, true), wantPayload: result},
		{name: "unknown kind", d: letter(fetchDLQ, fetcher, "mystery", pk(minuteNow), false), wantErr: `unknown dead-letter kind "mystery"`},
		{name: "unknown original topic", d: letter("other_dlq", "x", poisoned, result, true), wantErr: `original topic "other" is not replayable`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg, expired, err := handlers.ReplayMessage(tc.d, rules)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				assert.Nil(t, msg)
				return
			}
			require.NoError(t, err)
			if !tc.wantExpired.IsZero() {
				assert.Nil(t, msg)
				assert.True(t, expired.Equal(tc.wantExpired), "expired minute %s", expired)
				return
			}
			require.NotNil(t, msg)
			assert.True(t, expired.IsZero())
			switch {
			case tc.wantTask != nil:
				got, err := messages.DecodeTask(msg.Payload)
				require.NoError(t, err)
				assert.Equal(t, *tc.wantTask, got)
			case tc.wantSuspicion != nil:
				got, err := messages.DecodeSuspicionTask(msg.Payload)
				require.NoError(t, err)
				assert.Equal(t, *tc.wantSuspicion, got)
			default:
				assert.Equal(t, tc.wantPayload, []byte(msg.Payload))
			}
			assert.Equal(t, "id-1", msg.Metadata.Get(messages.MetaReplayOf))
			assert.Equal(t, traceparent, msg.Metadata.Get("traceparent"))
			for k := range msg.Metadata {
				assert.False(t, messages.IsDeadLetterKey(k), "annotation %s dropped", k)
			}
		})
	}
}

// failingReplayStore lists what memory lists and fails MarkReplayed.
type failingReplayStore struct {
	*memory.Store
	markErr error
}

func (s failingReplayStore) MarkReplayed(context.Context, string, time.Time) error { return s.markErr }

// A replay reads page after page, counts what fails and goes on; a dry run
// publishes and marks nothing.
func TestReplayerPagesCountsAndDryRun(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	mem := memory.New(clockwork.NewFakeClockAt(replayNow))
	const n = 501 // more than a page
	for i := range n {
		d := letter(messages.TopicResultDLQ, messages.HandlerRecorder, messages.DeadLetterPoisoned, []byte(`{}`), true)
		d.ID = fmt.Sprintf("id-%04d", i)
		require.NoError(t, mem.SaveDeadLetter(ctx, d))
	}
	var seen []string
	collect := func(ev handlers.ReplayEvent) { seen = append(seen, ev.Letter.ID) }

	pub := &fakePublisher{}
	counts, err := handlers.Replayer{Store: mem, Publisher: pub, Rules: rules, DryRun: true}.Replay(ctx, store.DeadLetterFilter{}, collect)
	require.NoError(t, err)
	assert.Equal(t, handlers.ReplayCounts{Replayed: n}, counts)
	assert.Len(t, seen, n)
	assert.True(t, slices.IsSorted(seen), "oldest first, then by id")
	assert.Empty(t, pub.published(), "a dry run publishes nothing")
	left, err := mem.DeadLetters(ctx, store.DeadLetterFilter{NotReplayed: true, Limit: 1})
	require.NoError(t, err)
	assert.Len(t, left, 1, "a dry run marks nothing")

	down := errors.New("broker down")
	failing := &fakePublisher{err: down, failN: 1}
	var errs []error
	counts, err = handlers.Replayer{Store: failingReplayStore{mem, errors.New("db down")}, Publisher: failing, Rules: rules}.Replay(ctx,
		store.DeadLetterFilter{IDs: []string{"id-0000", "id-0001"}}, func(ev handlers.ReplayEvent) {
			assert.Equal(t, handlers.ReplayError, ev.Outcome)
			errs = append(errs, ev.Err)
		})
	require.NoError(t, err)
	assert.Equal(t, handlers.ReplayCounts{Errors: 2}, counts)
	require.Len(t, errs, 2)
	assert.ErrorIs(t, errs[0], down)
	assert.EqualError(t, errs[0], "publish to fetcher_results: broker down")
	assert.EqualError(t, errs[1], "replayed to fetcher_results but not marked: db down")
}
