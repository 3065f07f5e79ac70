package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/broker/brokertest"
	"github.com/mockstagram/pipeline/messages"
)

const (
	deliveriesTasks = `"watermill_deliveries_influencer_fetch_tasks"`
	queueTasks      = `"watermill_queue_influencer_fetch_tasks"`
)

// lastDelivered is the server time of the last counted delivery of the
// message (by uuid) to group.
func lastDelivered(t *testing.T, pool *pgxpool.Pool, group, uuid string) (time.Time, int) {
	t.Helper()
	var (
		at time.Time
		n  int
	)
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT d.last_delivered_at, d.deliveries
FROM `+deliveriesTasks+` d JOIN `+queueTasks+` q USING (consumer_group, "offset")
WHERE d.consumer_group = $1 AND q.uuid = $2`, group, uuid).Scan(&at, &n))
	return at, n
}

// crashReader kills the backend of the read transaction that holds a
// message (it locked a row, so it has a transaction id) and waits until it
// is gone: the server rolls the read back, as when the process dies.
func crashReader(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var killed int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000))
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL
	AND query LIKE '%FOR UPDATE OF q SKIP LOCKED%'`).Scan(&killed))
	require.Equal(t, 1, killed, "the one read holding the message")
}

func deliveriesOf(t *testing.T, m *message.Message) string {
	t.Helper()
	return m.Metadata.Get(broker.DeliveriesKey)
}

// A message whose consumer dies while handling it (the read's connection is
// cut: its transaction is rolled back without the ack) is not free again at
// once: it comes back after the nack's backoff counted from its last
// delivery (1 s, then 2 s), the messages published meanwhile pass it, its
// delivery count survives, and the ack removes its deliveries row.
func TestPostgresCrashedDeliveryIsDelayed(t *testing.T) {
	ctx, b, deps, group, ch := subscribeFetchTasks(t)
	publish := func(payload string) *message.Message {
		t.Helper()
		m := message.NewMessage(watermill.NewUUID(), []byte(payload))
		require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, m))
		return m
	}

	poison := publish("poison")
	m := receiveAll(t, ch, 1)[0]
	require.Equal(t, poison.UUID, m.UUID)
	assert.Equal(t, "1", deliveriesOf(t, m))
	at1, n := lastDelivered(t, deps.Pool, group, poison.UUID)
	assert.Equal(t, 1, n)

	crashReader(t, deps.Pool)
	m.Ack() // too late: its transaction is gone, the ack fails
	other := publish("other")
	m = receiveAll(t, ch, 1)[0]
	require.Equal(t, other.UUID, m.UUID, "the later message passes the crashed one, which is free but delayed (got %s)", m.Payload)
	assert.Equal(t, "1", deliveriesOf(t, m))
	m.Ack()

	m = receiveAll(t, ch, 1)[0]
	require.Equal(t, poison.UUID, m.UUID)
	assert.Equal(t, "2", deliveriesOf(t, m), "the count survives the crash")
	at2, n := lastDelivered(t, deps.Pool, group, poison.UUID)
	assert.Equal(t, 2, n)
	assert.GreaterOrEqual(t, at2.Sub(at1), time.Second, "redelivered after the first backoff")

	crashReader(t, deps.Pool)
	m.Ack()
	m = receiveAll(t, ch, 1)[0]
	require.Equal(t, poison.UUID, m.UUID)
	assert.Equal(t, "3", deliveriesOf(t, m))
	at3, n := lastDelivered(t, deps.Pool, group, poison.UUID)
	assert.Equal(t, 3, n)
	assert.GreaterOrEqual(t, at3.Sub(at2), 2*time.Second, "the backoff doubles")
	m.Ack()

	// Poll the committed ack until both tables are empty or the deadline.
	var queued, counted int
	deadline := time.Now().Add(brokertest.Timeout)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		require.NoError(t, deps.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+queueTasks+`), (SELECT count(*) FROM `+deliveriesTasks+`)`).Scan(&queued, &counted))
		if queued+counted == 0 || time.Now().After(deadline) {
			break
		}
		<-poll.C
	}
	assert.Zero(t, queued, "the ack deletes the message")
	assert.Zero(t, counted, "the ack deletes its deliveries row: the table holds the unacked messages only")
}

// A nack counts as a delivery too (the handler sees 2 on the redelivery),
// and the ack after it deletes the deliveries row. A count published with a
// message (a handler's copy of its input, a replayed dead letter) is not
// kept: the delivery counts afresh.
func TestPostgresNackCountsDeliveries(t *testing.T) {
	ctx, b, deps, _, ch := subscribeFetchTasks(t)
	sent := message.NewMessage(watermill.NewUUID(), []byte("nacked"))
	sent.Metadata.Set(broker.DeliveriesKey, "7")
	require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, sent))

	m := receiveAll(t, ch, 1)[0]
	assert.Equal(t, "1", deliveriesOf(t, m))
	m.Nack()
	m = receiveAll(t, ch, 1)[0]
	require.Equal(t, sent.UUID, m.UUID)
	assert.Equal(t, "2", deliveriesOf(t, m))
	m.Ack()

	var counted int
	deadline := time.Now().Add(brokertest.Timeout)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		require.NoError(t, deps.Pool.QueryRow(ctx, `SELECT count(*) FROM `+deliveriesTasks).Scan(&counted))
		if counted == 0 || time.Now().After(deadline) {
			break
		}
		<-poll.C
	}
	assert.Zero(t, counted)
}

// An install of a version without the deliveries table (its queue tables
// exist) gets it on the next Subscribe, and the count works from then on.
func TestPostgresCreatesDeliveriesTableOfExistingTopic(t *testing.T) {
	cfg, deps := postgresConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	group := broker.ConsumerGroup(messages.HandlerFetcher)
	roundTrip := func(b *broker.Broker) *message.Message {
		t.Helper()
		sub, err := b.Subscriber(group)
		require.NoError(t, err)
		ch, err := sub.Subscribe(ctx, messages.TopicFetchTasks)
		require.NoError(t, err)
		sent := message.NewMessage(watermill.NewUUID(), []byte("task"))
		require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, sent))
		m := receiveAll(t, ch, 1)[0]
		require.Equal(t, sent.UUID, m.UUID)
		m.Ack()
		return m
	}
	b := newBroker(t, cfg, deps)
	roundTrip(b)
	require.NoError(t, b.Close())
	_, err := deps.Pool.Exec(ctx, `DROP TABLE `+deliveriesTasks)
	require.NoError(t, err)

	b = newBroker(t, cfg, deps)
	defer func() { require.NoError(t, b.Close()) }()
	m := roundTrip(b)
	assert.Equal(t, "1", deliveriesOf(t, m), "counted in the table created again")
}

// subscribeFetchTasks starts the Postgres broker and subscribes the fetcher's
// consumer group to the fetch tasks; the subscription ends and the broker
// closes (without error) when the test ends.
func subscribeFetchTasks(t *testing.T) (context.Context, *broker.Broker, broker.Deps, string, <-chan *message.Message) {
	t.Helper()
	cfg, deps := postgresConfig(t)
	b := newBroker(t, cfg, deps)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	group := broker.ConsumerGroup(messages.HandlerFetcher)
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, messages.TopicFetchTasks)
	require.NoError(t, err)
	return ctx, b, deps, group, ch
}
