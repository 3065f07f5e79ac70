package test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

func TestZZCloseRace(t *testing.T) {
	ctx := context.Background()
	logger := slog.Default()
	dsn := pgtest.NewDatabase(t)
	s, err := postgres.New(ctx, dsn, logger, clockwork.NewFakeClockAt(start))
	require.NoError(t, err)
	t.Cleanup(s.Close)
	cfg := config.Default()
	cfg.Broker = config.BrokerPostgres
	b, err := broker.New(ctx, cfg, broker.Deps{Pool: s.Pool(), Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscriber("recorder")
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, messages.TopicFetcherResults)
	require.NoError(t, err)
	r := handlers.NewRecorder(s, logger, metrics.New(prometheus.NewRegistry()))
	batch := influencer.Batch{Minute: start, Shard: 3, Samples: []influencer.Sample{{PK: 5, Username: "x", FollowerCount: 1, FollowingCount: 1, Minute: start, FetchedAt: start}}}
	msg, _ := messages.NewResult(batch)
	require.NoError(t, b.Publisher().Publish(messages.TopicFetcherResults, msg))
	d := <-ch
	blocker, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	_, err = blocker.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, 0x6d6b7374, 1)
	require.NoError(t, err)
	done := make(chan error)
	go func() { done <- r.Handle(d) }()
	time.Sleep(500 * time.Millisecond)
	go func() { time.Sleep(time.Second); blocker.Close(ctx) }()
	require.NoError(t, sub.Close())
	t.Log("handle:", <-done)
}
