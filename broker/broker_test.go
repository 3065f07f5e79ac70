package broker_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/broker/brokertest"
	"github.com/mockstagram/pipeline/broker/kafkatest"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-metrics (used by Sarama for its client metrics) starts one
		// process-wide ticker goroutine for meters on first use and never
		// stops it.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

const partitions = 16

// testLogger discards logs unless MOCKSTAGRAM_TEST_LOG is set (the adapters
// log at info level on every (re)subscribe and rebalance).
func testLogger() *slog.Logger {
	if os.Getenv("MOCKSTAGRAM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newBroker(t *testing.T, cfg config.Config, deps broker.Deps) *broker.Broker {
	t.Helper()
	require.NoError(t, cfg.Validate())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deps.Logger = testLogger()
	b, err := broker.New(ctx, cfg, deps)
	require.NoError(t, err)
	return b
}

func TestGoChannel(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) *broker.Broker {
		return newBroker(t, config.Default(), broker.Deps{})
	}, brokertest.Features{InFlight: broker.GoChannelInFlight})
}

func kafkaConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Broker = config.BrokerKafka
	cfg.KafkaBrokers = kafkatest.Start(t, 1) // 1: the broker must create its topics with KafkaPartitions itself
	cfg.KafkaPartitions = partitions
	return cfg
}

func TestKafka(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) *broker.Broker {
		return newBroker(t, kafkaConfig(t), broker.Deps{})
	}, brokertest.Features{
		Durable:             true,
		ConsumerGroups:      true,
		ParallelConsumers:   true,
		Partitioned:         true,
		Partitions:          partitions,
		RedeliversLastAcked: true,
		InFlight:            2, // one per partition: distinct shards land on at least two
	})
}

func postgresConfig(t *testing.T) (config.Config, broker.Deps) {
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	cfg := config.Default()
	cfg.Broker = config.BrokerPostgres
	cfg.DatabaseURL = url
	cfg.PostgresPollInterval = 20 * time.Millisecond
	cfg.PostgresInFlight = 8 // the contract holds for any count; fewer connections for the test server
	return cfg, broker.Deps{Pool: pool}
}

func TestPostgres(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) *broker.Broker {
		cfg, deps := postgresConfig(t)
		return newBroker(t, cfg, deps)
	}, brokertest.Features{
		Durable:                  true,
		ConsumerGroups:           true,
		ParallelConsumers:        true,
		RedeliversLastAcked:      true,
		InFlight:                 8, // postgresConfig's postgres-in-flight
		NackDelays:               true,
		OpenTransactionElsewhere: openTransactionElsewhere,
	})
}

// openTransactionElsewhere opens a transaction in another database of the
// same server that has a transaction id and a snapshot (what the former
// schema waited for) and keeps it open until the test ends.
func openTransactionElsewhere(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	var xid string
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid))
	t.Cleanup(func() {
		assert.NoError(t, tx.Rollback(ctx))
		assert.NoError(t, conn.Close(ctx))
	})
}

// The Kafka broker creates every topic at start with the configured
// partition count, and a second start leaves them as they are.
func TestKafkaCreatesTopics(t *testing.T) {
	cfg := kafkaConfig(t)
	b := newBroker(t, cfg, broker.Deps{})
	require.NoError(t, b.Close())
	cfg.KafkaPartitions = 3 // existing topics keep their 16 partitions
	b = newBroker(t, cfg, broker.Deps{})
	require.NoError(t, b.Close())

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	admin, err := sarama.NewClusterAdmin(cfg.KafkaBrokers, sc)
	require.NoError(t, err)
	defer admin.Close()
	topics, err := admin.ListTopics()
	require.NoError(t, err)
	for _, topic := range broker.Topics() {
		if assert.Contains(t, topics, topic) {
			assert.EqualValues(t, partitions, topics[topic].NumPartitions, "partitions of %s", topic)
			assert.Equal(t, "16777216", *topics[topic].ConfigEntries["max.message.bytes"], "max.message.bytes of %s", topic)
		}
	}
}

// Topics must list every Topic* constant of package messages, so that the
// Kafka broker creates them all.
func TestTopicsListsEveryMessagesTopic(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../messages/messages.go", nil, 0)
	require.NoError(t, err)
	var want []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Topic") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				require.True(t, ok, "%s is not a string literal", name.Name)
				want = append(want, strings.Trim(lit.Value, `"`))
			}
		}
	}
	got := broker.Topics()
	sort.Strings(want)
	sort.Strings(got)
	assert.Equal(t, want, got)
}

func TestConsumerGroup(t *testing.T) {
	assert.Equal(t, "mockstagram-fetcher", broker.ConsumerGroup(messages.HandlerFetcher))
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  func(*config.Config)
		deps broker.Deps
		want string
	}{
		{"unknown broker", func(c *config.Config) { c.Broker = "nats" }, broker.Deps{}, `broker "nats" is not one of`},
		{"postgres without pool", func(c *config.Config) { c.Broker = config.BrokerPostgres }, broker.Deps{}, "no database pool"},
		{"kafka without brokers", func(c *config.Config) { c.Broker = config.BrokerKafka }, broker.Deps{}, "no kafka-brokers"},
		{"kafka version too old", func(c *config.Config) {
			c.Broker = config.BrokerKafka
			c.KafkaBrokers = []string{"127.0.0.1:1"}
			c.KafkaVersion = "0.10.2"
		}, broker.Deps{}, "kafka-version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.cfg(&cfg)
			_, err := broker.New(ctx, cfg, tc.deps)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSubscriberAfterClose(t *testing.T) {
	b := newBroker(t, config.Default(), broker.Deps{})
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "closing twice is a no-op")
	_, err := b.Subscriber("mockstagram-x")
	require.Error(t, err)
	b = newBroker(t, config.Default(), broker.Deps{})
	_, err = b.Subscriber("")
	require.Error(t, err)
	require.NoError(t, b.Close())
}

// On postgres a subscriber reads inside a transaction that stays open while
// its handler works on the message; a message published meanwhile, on
// another topic or the same one, is delivered at once all the same (the
// former schema waited for the oldest open transaction of the server).
func TestPostgresDeliveryDoesNotWaitForOpenReads(t *testing.T) {
	cfg, deps := postgresConfig(t)
	b := newBroker(t, cfg, deps)
	defer func() { require.NoError(t, b.Close()) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	tasks, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerFetcher))
	require.NoError(t, err)
	taskCh, err := tasks.Subscribe(ctx, messages.TopicFetchTasks)
	require.NoError(t, err)
	results, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerRecorder))
	require.NoError(t, err)
	resultCh, err := results.Subscribe(ctx, messages.TopicFetcherResults)
	require.NoError(t, err)

	receive := func(ch <-chan *message.Message) *message.Message {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-time.After(brokertest.Timeout):
			t.Fatal("no message")
			return nil
		}
	}
	require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, message.NewMessage(watermill.NewUUID(), []byte("task"))))
	task := receive(taskCh)
	result := message.NewMessage(watermill.NewUUID(), []byte("result"))
	require.NoError(t, b.Publisher().Publish(messages.TopicFetcherResults, result))
	m := receive(resultCh)
	require.Equal(t, result.UUID, m.UUID, "the result is delivered while the task's read is open")
	m.Ack()
	second := message.NewMessage(watermill.NewUUID(), []byte("second task"))
	require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, second))
	m = receive(taskCh)
	require.Equal(t, second.UUID, m.UUID, "a second task is delivered while the first is held")
	m.Ack()
	task.Ack()
}

func receiveAll(t *testing.T, ch <-chan *message.Message, n int) []*message.Message {
	t.Helper()
	var got []*message.Message
	deadline := time.After(brokertest.Timeout)
	for len(got) < n {
		select {
		case m := <-ch:
			got = append(got, m)
		case <-deadline:
			t.Fatalf("got %d of %d messages within %s", len(got), n, brokertest.Timeout)
		}
	}
	return got
}

func payloads(ms []*message.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Payload))
	}
	sort.Strings(out)
	return out
}

// A database of the former schema (DefaultPostgreSQLSchema with
// DefaultPostgreSQLOffsetsAdapter) is migrated on the first start: a group
// gets exactly the messages after its acked offset, a topic that never had
// a subscriber keeps its messages for its first group, and the former
// tables are emptied and renamed.
func TestPostgresMigratesFormerOffsetSchema(t *testing.T) {
	cfg, deps := postgresConfig(t)
	ctx := context.Background()
	db := wsql.BeginnerFromPgx(deps.Pool)
	former := wsql.DefaultPostgreSQLSchema{GeneratePayloadType: func(string) string { return "BYTEA" }, SubscribeBatchSize: 1}
	pub, err := wsql.NewPublisher(db, wsql.PublisherConfig{SchemaAdapter: former, AutoInitializeSchema: true}, nil)
	require.NoError(t, err)
	tasks, results := messages.TopicFetchTasks, messages.TopicFetcherResults
	group := broker.ConsumerGroup(messages.HandlerFetcher)
	qs, err := wsql.DefaultPostgreSQLOffsetsAdapter{}.SchemaInitializingQueries(wsql.OffsetsSchemaInitializingQueriesParams{Topic: tasks})
	require.NoError(t, err)
	for _, q := range qs {
		_, err := deps.Pool.Exec(ctx, q.Query, q.Args...)
		require.NoError(t, err)
	}
	var sent []*message.Message
	for i := range 5 {
		m := message.NewMessage(watermill.NewUUID(), []byte("task-"+strconv.Itoa(i)))
		require.NoError(t, pub.Publish(tasks, m)) // one transaction each
		sent = append(sent, m)
	}
	for i := range 2 {
		require.NoError(t, pub.Publish(results, message.NewMessage(watermill.NewUUID(), []byte("result-"+strconv.Itoa(i)))))
	}
	// The former subscriber of the group acked task-0 and task-1.
	var offset int64
	var xid string
	require.NoError(t, deps.Pool.QueryRow(ctx, `SELECT "offset", transaction_id::text FROM "watermill_influencer_fetch_tasks" WHERE uuid = $1`, sent[1].UUID).Scan(&offset, &xid))
	_, err = deps.Pool.Exec(ctx, `INSERT INTO "watermill_offsets_influencer_fetch_tasks" (consumer_group, offset_acked, last_processed_transaction_id) VALUES ($1, $2, $3::text::xid8)`, group, offset, xid)
	require.NoError(t, err)
	require.NoError(t, pub.Close())

	b := newBroker(t, cfg, deps)
	defer func() { require.NoError(t, b.Close()) }()
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := sub.Subscribe(subCtx, tasks)
	require.NoError(t, err)
	got := receiveAll(t, ch, 3)
	assert.Equal(t, []string{"task-2", "task-3", "task-4"}, payloads(got))
	for _, m := range got {
		m.Ack()
	}
	marker := message.NewMessage(watermill.NewUUID(), []byte("after the migration"))
	require.NoError(t, b.Publisher().Publish(tasks, marker))
	m := receiveAll(t, ch, 1)[0]
	assert.Equal(t, marker.UUID, m.UUID, "no former message comes again: got %s", m.Payload)
	m.Ack()

	rsub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerRecorder))
	require.NoError(t, err)
	rch, err := rsub.Subscribe(subCtx, results)
	require.NoError(t, err)
	got = receiveAll(t, rch, 2)
	assert.Equal(t, []string{"result-0", "result-1"}, payloads(got))
	for _, m := range got {
		m.Ack()
	}

	var left int
	require.NoError(t, deps.Pool.QueryRow(ctx, `SELECT count(*) FROM "watermill_influencer_fetch_tasks"`).Scan(&left))
	assert.Zero(t, left, "the former messages table is emptied")
	var renamed, gone bool
	require.NoError(t, deps.Pool.QueryRow(ctx, `SELECT to_regclass('"watermill_offsets_influencer_fetch_tasks_migrated"') IS NOT NULL,
		to_regclass('"watermill_offsets_influencer_fetch_tasks"') IS NULL`).Scan(&renamed, &gone))
	assert.True(t, renamed && gone, "the former offsets table is renamed")
}

// QueueStats counts every message of a group not acked yet (in flight
// included) and the age of the oldest.
func TestPostgresQueueStats(t *testing.T) {
	cfg, deps := postgresConfig(t)
	b := newBroker(t, cfg, deps)
	defer func() { require.NoError(t, b.Close()) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stats, err := b.QueueStats(ctx)
	require.NoError(t, err)
	assert.Empty(t, stats, "no topic tables yet")

	group := broker.ConsumerGroup(messages.HandlerFetcher)
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, messages.TopicFetchTasks)
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))))
	}
	held := receiveAll(t, ch, 3)
	stat := func() metrics.QueueStat {
		t.Helper()
		stats, err := b.QueueStats(ctx)
		require.NoError(t, err)
		require.Len(t, stats, 1)
		return stats[0]
	}
	s := stat()
	assert.Equal(t, messages.TopicFetchTasks, s.Topic)
	assert.Equal(t, group, s.ConsumerGroup)
	assert.EqualValues(t, 3, s.Depth)
	assert.Positive(t, s.OldestAge)
	for _, m := range held {
		m.Ack()
	}
	// Poll the committed acks until the queue is empty or the deadline.
	deadline := time.After(brokertest.Timeout)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for s = stat(); s.Depth > 0; s = stat() {
		select {
		case <-poll.C:
			continue
		case <-deadline:
		}
		break
	}
	assert.Equal(t, metrics.QueueStat{Topic: messages.TopicFetchTasks, ConsumerGroup: group}, s)
}
