package broker_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

// BenchmarkPostgresDeliverAck: a message read, counted, handed on and acked
// (its read transaction committed), 8 in flight; the messages are published
// before the timer starts.
func BenchmarkPostgresDeliverAck(b *testing.B) {
	url := pgtest.NewDatabase(b)
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(b, err)
	defer pool.Close()
	cfg := config.Default()
	cfg.Broker = config.BrokerPostgres
	cfg.DatabaseURL = url
	cfg.PostgresPollInterval = 20 * time.Millisecond
	cfg.PostgresInFlight = 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	br, err := broker.New(ctx, cfg, broker.Deps{Pool: pool, Logger: testLogger()})
	require.NoError(b, err)
	defer func() { require.NoError(b, br.Close()) }()
	sub, err := br.Subscriber(broker.ConsumerGroup(messages.HandlerFetcher))
	require.NoError(b, err)
	ch, err := sub.Subscribe(ctx, messages.TopicFetchTasks)
	require.NoError(b, err)
	batch := make([]*message.Message, 0, 100)
	for i := range b.N {
		batch = append(batch, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
		if len(batch) == cap(batch) || i == b.N-1 {
			require.NoError(b, br.Publisher().Publish(messages.TopicFetchTasks, batch...))
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		m := <-ch
		go m.Ack()
	}
}
