package broker

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mockstagram/pipeline/config"
)

// postgresAckDeadline is how long a delivered message may stay un-acked
// before watermill-sql gives up on it (cancelling its context) and delivers
// it again. A fetch task may legitimately run until the end of its minute
// plus the grace (at most 90 s), so the library's 30 s default is too short.
const postgresAckDeadline = 2 * time.Minute

// postgresBroker is watermill-sql on the store's database.
//
// Schema: DefaultPostgreSQLSchema (one table "watermill_<topic>" per topic,
// BIGSERIAL offsets ordered by transaction id) with a BYTEA payload (its
// default JSON column rejects payloads that are not JSON, and a malformed
// message must reach the handler to be dead-lettered), and
// DefaultPostgreSQLOffsetsAdapter (one row per consumer group in
// "watermill_offsets_<topic>"). Not the queue schema: in v4.1.2 its ack marks
// every fetched row done, so a Close mid-batch loses messages, and its int4
// offset overflows within days at our rate.
//
// Consumer groups: a subscriber reads under SELECT ... FOR UPDATE on its
// group's offsets row and holds that lock while the handler works on the
// message, so only one subscriber per consumer group works at a time; the
// others wait on the lock and take over when it stops. Extra processes give
// failover on this broker, not throughput.
//
// Batches: one message per transaction (SubscribeBatchSize 1). The reading
// transaction takes a transaction id (FOR UPDATE) and stays open while the
// handler runs, and the schema only delivers rows of transactions older than
// the oldest one still open (pg_snapshot_xmin), so a long batch would hide
// every message published meanwhile, on every topic, until it commits. With
// one message per transaction that delay is one handler run, and a crash
// re-delivers at most the message being handled.
type postgresBroker struct {
	db        wsql.Beginner
	cfg       config.Config
	publisher *wsql.Publisher
	logger    watermill.LoggerAdapter
}

func postgresSchema() wsql.DefaultPostgreSQLSchema {
	return wsql.DefaultPostgreSQLSchema{
		GeneratePayloadType: func(string) string { return "BYTEA" },
		SubscribeBatchSize:  1,
	}
}

func newPostgres(cfg config.Config, pool *pgxpool.Pool, logger watermill.LoggerAdapter) (*postgresBroker, error) {
	db := wsql.BeginnerFromPgx(pool)
	pub, err := wsql.NewPublisher(db, wsql.PublisherConfig{
		SchemaAdapter: postgresSchema(),
		// Creates the topic's table (CREATE TABLE IF NOT EXISTS under an
		// advisory lock) on the first publish to it.
		AutoInitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return &postgresBroker{db: db, cfg: cfg, publisher: pub, logger: logger}, nil
}

func (p *postgresBroker) subscriber(consumerGroup string) (message.Subscriber, error) {
	ackDeadline := postgresAckDeadline
	return wsql.NewSubscriber(p.db, wsql.SubscriberConfig{
		ConsumerGroup:    consumerGroup,
		AckDeadline:      &ackDeadline,
		PollInterval:     p.cfg.PostgresPollInterval,
		ResendInterval:   100 * time.Millisecond, // after a nack
		RetryInterval:    time.Second,            // after a database error
		SchemaAdapter:    postgresSchema(),
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true, // the topic and offsets tables, on Subscribe
	}, p.logger)
}
