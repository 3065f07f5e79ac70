package cli_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/middleware"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

var (
	resultPayload = []byte(`{"minute":"2026-01-02T03:04:00Z","shard":7,"samples":[{"pk":1000001,"username":"influencer-1000001",` +
		`"followerCount":57166,"followingCount":1328,"minute":"2026-01-02T03:04:00Z","fetchedAt":"2026-01-02T03:04:05Z"}]}`)
	fetchPayload = []byte(`{"pk":1000042,"minute":"2026-01-02T03:04:00Z","class":"http_5xx","reason":"HTTP 503; gave up at the minute's deadline","attempts":4,"shard":3}`)
)

// seedDeadLetters stores a result letter (poisoned by the recorder) and an
// old fetcher letter, as the archiver would have before dead letters carried
// their kind (no dead_letter_kind metadata: replay derives it).
func seedDeadLetters(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.New(ctx, dsn, slog.New(slog.DiscardHandler), clockwork.NewRealClock())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	minute := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	shard7, shard3 := 7, 3
	for _, d := range []store.DeadLetter{
		{
			ID: "5b1f0c1e-result", Topic: messages.TopicResultDLQ, OriginalTopic: messages.TopicFetcherResults,
			Reason: "record shard 7 minute 2026-01-02T03:04:00Z: constraint violation", Class: "panic", Stage: messages.HandlerRecorder,
			Attempts: 1, Shard: &shard7, Minute: minute, Payload: resultPayload,
			Metadata: map[string]string{
				messages.MetaShard: "7", messages.MetaMinute: "2026-01-02T03:04:00Z", "traceparent": traceparent,
				messages.MetaReason: "record shard 7 ...", messages.MetaClass: "panic", messages.MetaStage: messages.HandlerRecorder,
				messages.MetaAttempts: "1", "reason_poisoned": "record shard 7 ...", "topic_poisoned": messages.TopicFetcherResults,
				"handler_poisoned": messages.HandlerRecorder, "subscriber_poisoned": "sql",
			},
			ReceivedAt: minute.Add(70 * time.Second),
		},
		{
			ID: "9e2a7d3f-fetch", Topic: messages.TopicFetcherDLQ, OriginalTopic: messages.TopicFetchTasks,
			Reason: "HTTP 503; gave up at the minute's deadline", Class: "http_5xx", Stage: messages.HandlerFetcher,
			Attempts: 4, Shard: &shard3, PK: 1000042, Minute: minute, Payload: fetchPayload,
			Metadata: map[string]string{
				messages.MetaShard: "3", messages.MetaMinute: "2026-01-02T03:04:00Z", "traceparent": traceparent,
				messages.MetaReason: "HTTP 503; gave up at the minute's deadline", messages.MetaClass: "http_5xx",
				messages.MetaStage: messages.HandlerFetcher, messages.MetaAttempts: "4",
			},
			ReceivedAt: minute.Add(61 * time.Second),
		},
	} {
		require.NoError(t, s.SaveDeadLetter(ctx, d))
	}
	return s
}

// subscribe reads topic on the Postgres broker of dsn for at most 30 s (the
// returned context's deadline).
func subscribe(t *testing.T, dsn string, s *postgres.Store, topic string) (<-chan *message.Message, context.Context) {
	t.Helper()
	cfg := config.Default()
	cfg.Broker, cfg.DatabaseURL = config.BrokerPostgres, dsn
	b, err := broker.New(context.Background(), cfg, broker.Deps{Pool: s.Pool()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscriber("dlq-test")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	return ch, ctx
}

func TestDLQListAndReplay(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	s := seedDeadLetters(t, dsn)
	ctx := context.Background()

	const (
		all = `ID               RECEIVED              TOPIC               PK       CLASS     REASON                                                            SHARD  MINUTE                REPLAYED
9e2a7d3f-fetch   2026-01-02T03:05:01Z  fetcher_dlq         1000042  http_5xx  HTTP 503; gave up at the minute's deadline                        3      2026-01-02T03:04:00Z  -
5b1f0c1e-result  2026-01-02T03:05:10Z  result_handler_dlq  -        panic     record shard 7 minute 2026-01-02T03:04:00Z: constraint violation  7      2026-01-02T03:04:00Z  -
`
		resultOnly = `ID               RECEIVED              TOPIC               PK  CLASS  REASON                                                            SHARD  MINUTE                REPLAYED
5b1f0c1e-result  2026-01-02T03:05:10Z  result_handler_dlq  -   panic  record shard 7 minute 2026-01-02T03:04:00Z: constraint violation  7      2026-01-02T03:04:00Z  -
`
		fetchOnly = `ID              RECEIVED              TOPIC        PK       CLASS     REASON                                      SHARD  MINUTE                REPLAYED
9e2a7d3f-fetch  2026-01-02T03:05:01Z  fetcher_dlq  1000042  http_5xx  HTTP 503; gave up at the minute's deadline  3      2026-01-02T03:04:00Z  -
`
		none = "ID  RECEIVED  TOPIC  PK  CLASS  REASON  SHARD  MINUTE  REPLAYED\n"
	)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"all, oldest first", nil, all},
		{"by topic", []string{"--topic", "result_handler_dlq"}, resultOnly},
		{"by reason", []string{"--reason", "HTTP 503"}, fetchOnly},
		{"since a time", []string{"--since", "2026-01-02T03:05:05Z"}, resultOnly},
		{"since a duration ago", []string{"--since", "1h"}, none},
		{"limit", []string{"--limit", "1"}, fetchOnly},
		{"by pk", []string{"--pk", "1000042"}, fetchOnly},
		{"by a pk without letters", []string{"--pk", "1000001"}, none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append([]string{"dlq", "list", "--database-url", dsn}, tc.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, tc.want, r.stdout)
		})
	}

	// Replaying the result letter publishes the original result message to
	// fetcher_results (payload and metadata, without the dead-letter
	// annotations) and marks the letter replayed.
	results, subCtx := subscribe(t, dsn, s, messages.TopicFetcherResults)

	start := time.Now().Add(-time.Second)
	r := run(t, "dlq", "replay", "--id", "5b1f0c1e-result", "--database-url", dsn, "--broker", "postgres")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "5b1f0c1e-result: replayed to fetcher_results\nreplayed 1, skipped expired 0, errors 0\n", r.stdout)

	var got *message.Message
	select {
	case got = <-results:
		got.Ack()
	case <-subCtx.Done():
		t.Fatal("the replayed result was not published")
	}
	assert.Equal(t, resultPayload, []byte(got.Payload))
	// The Postgres broker adds the delivery count; the rest is what replay published.
	assert.Equal(t, "1", got.Metadata.Get(broker.DeliveriesKey))
	delete(got.Metadata, broker.DeliveriesKey)
	assert.Equal(t, message.Metadata{
		messages.MetaShard: "7", messages.MetaMinute: "2026-01-02T03:04:00Z", "traceparent": traceparent,
		messages.MetaReplayOf: "5b1f0c1e-result",
	}, got.Metadata)
	assert.NotEqual(t, "5b1f0c1e-result", got.UUID, "a replay is a new message")

	letters, err := s.DeadLetters(ctx, store.DeadLetterFilter{IDs: []string{"5b1f0c1e-result", "9e2a7d3f-fetch"}, Limit: 10})
	require.NoError(t, err)
	require.Len(t, letters, 2)
	assert.Nil(t, letters[0].ReplayedAt, "the fetch letter is untouched")
	require.NotNil(t, letters[1].ReplayedAt)
	assert.WithinRange(t, *letters[1].ReplayedAt, start, time.Now().Add(time.Second))

	// The old fetch letter is not refetched: its minute is over.
	r = run(t, "dlq", "replay", "--id", "9e2a7d3f-fetch", "--database-url", dsn, "--broker", "postgres")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "9e2a7d3f-fetch: expired: minute 2026-01-02T03:04:00Z is over, not refetched\n"+
		"replayed 0, skipped expired 1, errors 0\n", r.stdout)
	var table *string
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT to_regclass('"watermill_influencer_fetch_tasks"')::text`).Scan(&table))
	if table != nil { // the topic's table exists: it holds no message
		var tasks int
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM "watermill_influencer_fetch_tasks"`).Scan(&tasks))
		assert.Zero(t, tasks, "nothing published to influencer_fetch_tasks")
	}

	// Without --id only letters not replayed yet are selected; a dry run
	// changes nothing.
	r = run(t, "dlq", "replay", "--dry-run", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "9e2a7d3f-fetch: expired: minute 2026-01-02T03:04:00Z is over, not refetched\n"+
		"would replay 0, skipped expired 1, errors 0\n", r.stdout)
}

func TestDLQUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"list without database", []string{"dlq", "list"}, "dlq commands need --database-url"},
		{"bad topic", []string{"dlq", "list", "--topic", "fetcher_results", "--database-url", "postgres://h/db"}, `--topic "fetcher_results": want fetcher_dlq, result_handler_dlq or suspicion_dlq`},
		{"bad since", []string{"dlq", "list", "--since", "yesterday", "--database-url", "postgres://h/db"}, `--since "yesterday": want an RFC 3339 time or a duration like 1h`},
		{"bad limit", []string{"dlq", "list", "--limit", "0", "--database-url", "postgres://h/db"}, "--limit must be in [1, 10000]"},
		{"bad pk", []string{"dlq", "list", "--pk=-3", "--database-url", "postgres://h/db"}, "--pk -3 is not positive"},
		{"replay on gochannel", []string{"dlq", "replay", "--database-url", "postgres://h/db"}, "dlq replay needs a shared broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.args...)
			assert.Equal(t, 2, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			assert.Contains(t, r.stderr, tc.wantErr)
		})
	}
}

// A suspicion dead letter (archived without the kind metadata, as before it
// existed) replays as a one-pk suspicion task, whatever its
// round's age (an is_suspicious answer is never for the wrong time), which
// may run for a round (--suspicion-interval) from now.
func TestDLQReplaySuspicion(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := postgres.New(ctx, dsn, slog.New(slog.DiscardHandler), clockwork.NewRealClock())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	round := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	shard := 5
	require.NoError(t, s.SaveDeadLetter(ctx, store.DeadLetter{
		ID: "c0ffee-suspicion", Topic: messages.TopicSuspicionDLQ, OriginalTopic: messages.TopicSuspicionTasks,
		Reason: "HTTP 503", Class: "http_5xx", Stage: messages.HandlerSuspicion, Attempts: 3, Shard: &shard, PK: 1000077, Minute: round,
		Payload: []byte(`{"pk":1000077,"minute":"2026-01-02T00:00:00Z","class":"http_5xx","reason":"HTTP 503","attempts":3,"shard":5}`),
		Metadata: map[string]string{
			messages.MetaShard: "5", messages.MetaMinute: "2026-01-02T00:00:00Z", "traceparent": traceparent,
			messages.MetaReason: "HTTP 503", messages.MetaClass: "http_5xx", messages.MetaStage: messages.HandlerSuspicion, messages.MetaAttempts: "3",
		},
		ReceivedAt: round.Add(time.Hour),
	}))

	r := run(t, "dlq", "list", "--topic", "suspicion_dlq", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "c0ffee-suspicion  2026-01-02T01:00:00Z  suspicion_dlq  1000077  http_5xx  HTTP 503  5      2026-01-02T00:00:00Z  -")

	tasks, subCtx := subscribe(t, dsn, s, messages.TopicSuspicionTasks)

	before := time.Now()
	r = run(t, "dlq", "replay", "--database-url", dsn, "--broker", "postgres", "--suspicion-interval", "2h")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "c0ffee-suspicion: replayed to suspicion_tasks\nreplayed 1, skipped expired 0, errors 0\n", r.stdout)
	got := receive(subCtx, t, tasks, "the replayed suspicion task was not published")
	task, err := messages.DecodeSuspicionTask(got.Payload)
	require.NoError(t, err)
	assert.Equal(t, []int64{1000077}, task.PKs)
	assert.Equal(t, 5, task.Shard)
	assert.True(t, task.Round.Equal(round), "round %s", task.Round)
	assert.WithinRange(t, task.Deadline, before.Add(2*time.Hour-time.Second), time.Now().Add(2*time.Hour+time.Second))
	assert.Equal(t, "c0ffee-suspicion", got.Metadata.Get(messages.MetaReplayOf))
	assert.Equal(t, traceparent, got.Metadata.Get("traceparent"))
	assert.Empty(t, got.Metadata.Get(messages.MetaReason), "dead-letter annotations are dropped")
}

// archivePoisoned runs a fetch handler that panics on a valid task (and
// fails on a malformed one) with the app's middleware and the dead-letter
// archiver in a router, as the app wires them, and returns once s has
// archived every message of msgs from fetcher_dlq.
func archivePoisoned(t *testing.T, s *postgres.Store, receivedAt time.Time, msgs ...*message.Message) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	wl := watermill.NewSlogLogger(logger)
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, wl)
	router, err := message.NewRouter(message.RouterConfig{}, wl)
	require.NoError(t, err)
	h := router.AddConsumerHandler(messages.HandlerFetcher, messages.TopicFetchTasks, pubSub, func(msg *message.Message) error {
		if _, err := messages.DecodeTask(msg.Payload); err != nil {
			return err
		}
		panic("boom")
	})
	mws, err := middleware.Chain(logger, pubSub, messages.TopicFetcherDLQ, middleware.Retry{}, middleware.Redelivery{})
	require.NoError(t, err)
	h.AddMiddleware(mws...)
	a := handlers.NewDeadLetterArchiver(s, clockwork.NewFakeClockAt(receivedAt), logger, metrics.New(prometheus.NewRegistry()))
	router.AddConsumerHandler(messages.HandlerDeadLetters, messages.TopicFetcherDLQ, pubSub, a.Handler(messages.TopicFetcherDLQ))
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, router.Run(context.Background()))
	}()
	defer func() {
		require.NoError(t, router.Close())
		<-done
		require.NoError(t, pubSub.Close())
	}()
	<-router.Running()
	for _, msg := range msgs {
		require.NoError(t, pubSub.Publish(messages.TopicFetchTasks, msg))
	}
	require.Eventually(t, func() bool {
		letters, err := s.DeadLetters(context.Background(), store.DeadLetterFilter{Topic: messages.TopicFetcherDLQ, Limit: 10})
		return err == nil && len(letters) == len(msgs)
	}, 30*time.Second, 10*time.Millisecond, "every poisoned message archived")
}

// A task that made the fetcher panic, and a malformed one, are archived as
// poisoned letters, listed, and replayed by the replay rules: the task of
// the minute that lasts is republished as it was; a past minute's is
// reported expired and not refetched; the malformed one is an error.
func TestDLQReplayPoisonedTasks(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := postgres.New(ctx, dsn, slog.New(slog.DiscardHandler), clockwork.NewRealClock())
	require.NoError(t, err)
	t.Cleanup(s.Close)

	// The grace (at most 30 s) keeps the current minute open for the test
	// even when it starts at the end of a minute.
	const grace = 30 * time.Second
	now := time.Now().UTC().Truncate(time.Minute)
	past := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	newTask := func(id string, minute time.Time, pks ...int64) *message.Message {
		msg, err := messages.NewTask(messages.Task{Minute: minute, Shard: 6, Deadline: influencer.Deadline(minute, grace), PKs: pks})
		require.NoError(t, err)
		msg.UUID = id
		msg.Metadata.Set("traceparent", traceparent)
		return msg
	}
	malformed := message.NewMessage("c3-malformed", []byte(`{"minute":"2026-01-02T03:04:05Z","shard":6,"deadline":"2026-01-02T03:05:00Z","pks":[1]}`))
	archivePoisoned(t, s, past.Add(time.Minute), newTask("a1-past", past, 1000001, 1000002), newTask("b2-current", now, 1000003), malformed)

	r := run(t, "dlq", "list", "--topic", "fetcher_dlq", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 4, r.stdout)
	assert.Regexp(t, `^a1-past\s+2026-01-02T03:05:00Z\s+fetcher_dlq\s+-\s+panic\s+panic occurred: "boom", stacktrace: .*\.\.\.\s+6\s+2026-01-02T03:04:00Z\s+-$`, lines[1])
	assert.Regexp(t, `^b2-current\s+2026-01-02T03:05:00Z\s+fetcher_dlq\s+-\s+panic\s+panic occurred: "boom", stacktrace: .*\.\.\.\s+6\s+`+now.Format(time.RFC3339)+`\s+-$`, lines[2])
	assert.Regexp(t, `^c3-malformed\s+2026-01-02T03:05:00Z\s+fetcher_dlq\s+-\s+malformed\s+malformed message: task minute missing or not minute-aligned\s+-\s+-\s+-$`, lines[3])

	tasks, subCtx := subscribe(t, dsn, s, messages.TopicFetchTasks)
	r = run(t, "dlq", "replay", "--database-url", dsn, "--broker", "postgres", "--deadline-grace", grace.String())
	assert.Equal(t, 1, r.code, "a letter that cannot be replayed fails the command: %s", r.stderr)
	assert.Equal(t, "a1-past: expired: minute 2026-01-02T03:04:00Z is over, not refetched\n"+
		"b2-current: replayed to influencer_fetch_tasks\n"+
		"c3-malformed: error: cannot replay: malformed message: task minute missing or not minute-aligned\n"+
		"replayed 1, skipped expired 1, errors 1\n", r.stdout)
	assert.Contains(t, r.stderr, "1 dead letters could not be replayed")

	got := receive(subCtx, t, tasks, "the task of the current minute was not republished")
	task, err := messages.DecodeTask(got.Payload)
	require.NoError(t, err)
	assert.Equal(t, messages.Task{Minute: now, Shard: 6, Deadline: influencer.Deadline(now, grace), PKs: []int64{1000003}}, task)
	assert.Equal(t, "b2-current", got.Metadata.Get(messages.MetaReplayOf))
	assert.Equal(t, traceparent, got.Metadata.Get("traceparent"))
	assert.Empty(t, got.Metadata.Get(messages.MetaDeadLetterKind), "dead-letter annotations are dropped")

	letters, err := s.DeadLetters(ctx, store.DeadLetterFilter{Topic: messages.TopicFetcherDLQ, NotReplayed: true, Limit: 10})
	require.NoError(t, err)
	var left []string
	for _, d := range letters {
		left = append(left, d.ID)
	}
	assert.Equal(t, []string{"a1-past", "c3-malformed"}, left, "only the republished letter is marked")
}

// receive acks and returns the next message of ch, or fails the test with
// what when ctx ends first.
func receive(ctx context.Context, t *testing.T, ch <-chan *message.Message, what string) *message.Message {
	t.Helper()
	select {
	case got := <-ch:
		got.Ack()
		return got
	case <-ctx.Done():
		t.Fatal(what)
		return nil
	}
}
