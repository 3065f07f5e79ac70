package handlers_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/middleware"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/store"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// fakeDeadLetterStore records the dead letters it is given.
type fakeDeadLetterStore struct {
	err error

	mu    sync.Mutex
	saved []store.DeadLetter
	added chan struct{}
}

var _ handlers.DeadLetterStore = (*fakeDeadLetterStore)(nil)

func newFakeDeadLetterStore() *fakeDeadLetterStore {
	return &fakeDeadLetterStore{added: make(chan struct{}, 100)}
}

func (s *fakeDeadLetterStore) SaveDeadLetter(_ context.Context, d store.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.saved = append(s.saved, d)
	s.added <- struct{}{}
	return nil
}

func (s *fakeDeadLetterStore) letters() []store.DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.DeadLetter(nil), s.saved...)
}

var archivedAt = minute0.Add(70 * time.Second)

func TestArchiverStoresAFetcherDeadLetter(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(fetchStart)
	_, url := newSimulator(t, clock) // knows pks 1..100
	e := newFetchEnvAt(t, url, clock, nil)
	in := taskMessage(t, task(500))
	in.Metadata.Set("traceparent", traceparent)
	_, err := e.f.Handle(in)
	require.NoError(t, err)
	pubs := e.dlq.published()
	require.Len(t, pubs, 1)
	require.Equal(t, messages.TopicFetcherDLQ, pubs[0].topic)
	dl := pubs[0].msg

	fake := newFakeDeadLetterStore()
	m := newMetrics()
	a := handlers.NewDeadLetterArchiver(fake, clockwork.NewFakeClockAt(archivedAt), discardLogger(), m)
	require.NoError(t, a.Handler(messages.TopicFetcherDLQ)(dl))

	shard := fetchShard
	want := store.DeadLetter{
		ID:            dl.UUID,
		Topic:         messages.TopicFetcherDLQ,
		OriginalTopic: messages.TopicFetchTasks,
		Reason:        "InfluencerNotFoundError",
		Class:         mockstagramapi.ClassNotFound,
		Stage:         messages.HandlerFetcher,
		Attempts:      1,
		Shard:         &shard,
		PK:            500, // listed and found by 'dlq list --pk'
		Minute:        minute0,
		Payload:       []byte(`{"pk":500,"minute":"2025-03-14T09:26:00Z","class":"not_found","reason":"InfluencerNotFoundError","attempts":1,"shard":3}`),
		Metadata: map[string]string{
			messages.MetaShard:          "3",
			messages.MetaMinute:         "2025-03-14T09:26:00Z",
			messages.MetaReason:         "InfluencerNotFoundError",
			messages.MetaClass:          mockstagramapi.ClassNotFound,
			messages.MetaStage:          messages.HandlerFetcher,
			messages.MetaAttempts:       "1",
			messages.MetaCount:          "1", // the pk's first letter of the hour
			messages.MetaDeadLetterKind: messages.DeadLetterPKFailure,
			"traceparent":               traceparent, // inherited from the task
		},
		ReceivedAt: archivedAt,
	}
	assert.Equal(t, []store.DeadLetter{want}, fake.letters())
	assert.Equal(t, 1.0, testutil.ToFloat64(m.DeadLettersArchived.WithLabelValues(messages.TopicFetcherDLQ)))
}

// TestArchiverStoresAPoisonedResult runs the recorder and the archiver in a
// router, as the app wires them: a malformed result message goes through the
// poison queue to result_handler_dlq and is archived whole.
func TestArchiverStoresAPoisonedResult(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	logger := slog.New(slog.DiscardHandler)
	wl := watermill.NewSlogLogger(logger)
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, wl)
	router, err := message.NewRouter(message.RouterConfig{}, wl)
	require.NoError(t, err)

	recorder := handlers.NewRecorder(&fakeStore{}, logger, newMetrics())
	h := router.AddConsumerHandler(messages.HandlerRecorder, messages.TopicFetcherResults, pubSub, recorder.Handle)
	mws, err := middleware.Chain(logger, pubSub, messages.TopicResultDLQ, middleware.Retry{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, middleware.Redelivery{})
	require.NoError(t, err)
	h.AddMiddleware(mws...)
	fake := newFakeDeadLetterStore()
	a := handlers.NewDeadLetterArchiver(fake, clockwork.NewFakeClockAt(archivedAt), logger, newMetrics())
	router.AddConsumerHandler(messages.HandlerDeadLetters, messages.TopicResultDLQ, pubSub, a.Handler(messages.TopicResultDLQ))

	runRouter(ctx, t, router, pubSub)

	payload := []byte(`{"minute":"2025-03-14T09:26:00Z","shard":7,"samples":"not a list"}`)
	in := message.NewMessage(watermill.NewUUID(), payload)
	in.Metadata.Set(messages.MetaShard, "7")
	in.Metadata.Set(messages.MetaMinute, "2025-03-14T09:26:00Z")
	in.Metadata.Set("traceparent", traceparent)
	require.NoError(t, pubSub.Publish(messages.TopicFetcherResults, in))

	select {
	case <-fake.added:
	case <-ctx.Done():
		t.Fatal("nothing archived")
	}
	_, decodeErr := messages.DecodeResult(payload)
	require.Error(t, decodeErr)
	reason := decodeErr.Error()

	got := fake.letters()
	require.Len(t, got, 1)
	subscriber := got[0].Metadata[wmw.PoisonedSubscriberKey]
	assert.NotEmpty(t, subscriber)
	shard := 7
	want := store.DeadLetter{
		ID:            in.UUID,
		Topic:         messages.TopicResultDLQ,
		OriginalTopic: messages.TopicFetcherResults,
		Reason:        reason,
		Class:         middleware.ClassMalformed,
		Stage:         messages.HandlerRecorder,
		Attempts:      1, // permanent: not retried
		Shard:         &shard,
		Minute:        minute0,
		Payload:       payload,
		Metadata: map[string]string{
			messages.MetaShard:          "7",
			messages.MetaMinute:         "2025-03-14T09:26:00Z",
			"traceparent":               traceparent,
			messages.MetaReason:         reason,
			messages.MetaClass:          middleware.ClassMalformed,
			messages.MetaStage:          messages.HandlerRecorder,
			messages.MetaAttempts:       "1",
			messages.MetaDeadLetterKind: messages.DeadLetterPoisoned,
			wmw.ReasonForPoisonedKey:    reason,
			wmw.PoisonedTopicKey:        messages.TopicFetcherResults,
			wmw.PoisonedHandlerKey:      messages.HandlerRecorder,
			wmw.PoisonedSubscriberKey:   subscriber,
		},
		ReceivedAt: archivedAt,
	}
	assert.Equal(t, want, got[0])
}

func TestArchiverDefaultsAndCleansForeignMessages(t *testing.T) {
	t.Parallel()
	fake := newFakeDeadLetterStore()
	a := handlers.NewDeadLetterArchiver(fake, clockwork.NewFakeClockAt(archivedAt), discardLogger(), newMetrics())

	// A message with no annotations, a bad shard and minute, and text a
	// database would refuse.
	in := message.NewMessage("", []byte{0xff, 0x00})
	in.Metadata.Set(messages.MetaShard, "-4")
	in.Metadata.Set(messages.MetaMinute, "yesterday")
	in.Metadata.Set("evil\x00key", "bad \xff utf8")
	require.NoError(t, a.Handler(messages.TopicResultDLQ)(in))

	got := fake.letters()
	require.Len(t, got, 1)
	d := got[0]
	assert.Regexp(t, `^sha256-[0-9a-f]{32}$`, d.ID, "an id derived from the content")
	assert.Equal(t, messages.TopicResultDLQ, d.Topic)
	assert.Equal(t, messages.TopicFetcherResults, d.OriginalTopic)
	assert.Equal(t, "no reason given", d.Reason)
	assert.Equal(t, "unknown", d.Class)
	assert.Empty(t, d.Stage)
	assert.Zero(t, d.Attempts)
	assert.Nil(t, d.Shard)
	assert.True(t, d.Minute.IsZero())
	assert.Equal(t, []byte{0xff, 0x00}, d.Payload, "the payload is kept as it is")
	assert.Equal(t, map[string]string{
		messages.MetaShard:  "-4",
		messages.MetaMinute: "yesterday",
		"evil\uFFFDkey":     "bad \uFFFD utf8",
	}, d.Metadata)

	// The same message again gets the same id (the store ignores it).
	require.NoError(t, a.Handler(messages.TopicResultDLQ)(in))
	got = fake.letters()
	require.Len(t, got, 2)
	assert.Equal(t, got[0].ID, got[1].ID)
}

func TestArchiverReturnsStoreErrors(t *testing.T) {
	t.Parallel()
	down := errors.New("database down")
	fake := newFakeDeadLetterStore()
	fake.err = down
	m := newMetrics()
	a := handlers.NewDeadLetterArchiver(fake, clockwork.NewFakeClockAt(archivedAt), discardLogger(), m)
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	err := a.Handler(messages.TopicFetcherDLQ)(msg)
	require.ErrorIs(t, err, down, "an error nacks the message: it is not acked unstored")
	assert.Equal(t, 0.0, testutil.ToFloat64(m.DeadLettersArchived.WithLabelValues(messages.TopicFetcherDLQ)))
}

// runRouter runs router until the test ends (then closes it and pubSub) and
// returns once it is running.
func runRouter(ctx context.Context, t *testing.T, router *message.Router, pubSub io.Closer) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, router.Run(context.Background()))
	}()
	t.Cleanup(func() {
		require.NoError(t, router.Close())
		<-done
		require.NoError(t, pubSub.Close())
	})
	select {
	case <-router.Running():
	case <-ctx.Done():
		t.Fatal("router did not start")
	}
}
