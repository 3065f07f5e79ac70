package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/metrics"
)

// postgresAckDeadline is how long a delivered message may stay un-acked
// before watermill-sql gives up on it (cancelling its context, ending its
// transaction without the ack) and the message is free for another read. A
// fetch task may legitimately run until the end of its minute plus the grace
// (at most 90 s), so the library's 30 s default is too short.
const postgresAckDeadline = 2 * time.Minute

// Nack delays: a nacked message is visible again after postgresNackDelay,
// doubled with each further nack, at most postgresNackDelayMax.
const (
	postgresNackDelay    = time.Second
	postgresNackDelayMax = time.Minute
)

// postgresBroker is watermill-sql on the store's database with the work
// queue schema of postgres_queue.go (pgQueue): the subscribers of a consumer
// group, in one process or many, work on different messages at once (row
// locks with SKIP LOCKED), delivery does not wait for other transactions, an
// ack deletes the message's row, a nack delays that message only.
//
// Each subscription works on up to postgres-in-flight messages at once: as
// many read loops (watermill-sql subscriptions of one message per
// transaction), each with its own transaction and connection of a pool of the
// subscriber's own (so a busy handler never takes the connections the store
// and the publisher need). A fetch or suspicion task holds its loop for as
// long as its slowest pk, seconds under API faults. While the queue is empty one loop polls every
// PostgresPollInterval and the others, together, postgresIdleShare times as
// often: an idle subscription costs about three queries per interval
// whatever its in-flight count, and a message is picked within a fraction of
// the interval while the first loop is busy.
type postgresBroker struct {
	pool      *pgxpool.Pool
	cfg       config.Config
	publisher *wsql.Publisher
	logger    watermill.LoggerAdapter
}

// postgresIdleShare: the extra read loops of a subscription, together, poll
// this many times as often as the first while they find nothing.
const postgresIdleShare = 2

// restPollInterval is the poll interval of each of a subscription's extra
// read loops (inFlight-1 of them) for the first loop's interval poll.
func restPollInterval(poll time.Duration, inFlight int) time.Duration {
	return max(poll, poll*time.Duration(inFlight-1)/postgresIdleShare)
}

func newPostgres(cfg config.Config, pool *pgxpool.Pool, logger watermill.LoggerAdapter) (*postgresBroker, error) {
	pub, err := wsql.NewPublisher(wsql.BeginnerFromPgx(pool), wsql.PublisherConfig{
		SchemaAdapter: pgQueue{},
		// Creates (or migrates) the topic's tables on the first publish to it.
		AutoInitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return &postgresBroker{pool: pool, cfg: cfg, publisher: pub, logger: logger}, nil
}

func (p *postgresBroker) subscriber(consumerGroup string) (message.Subscriber, error) {
	pcfg := p.pool.Config()
	pcfg.MaxConns = int32(p.cfg.PostgresInFlight) //nolint:gosec // at most 256 (config.Validate)
	pcfg.MinConns = 0
	pcfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("subscriber pool: %w", err)
	}
	db := hookBeginner{wsql.BeginnerFromPgx(pool)}
	newSub := func(poll time.Duration) (*wsql.Subscriber, error) {
		ackDeadline := postgresAckDeadline
		return wsql.NewSubscriber(db, wsql.SubscriberConfig{
			ConsumerGroup:  consumerGroup,
			AckDeadline:    &ackDeadline,
			PollInterval:   poll,
			ResendInterval: 100 * time.Millisecond, // unused: pgSubscriber turns a nack into a delayed row
			RetryInterval:  time.Second,            // after a database error
			SchemaAdapter:  pgQueue{},
			OffsetsAdapter: pgQueueOffsets{},
			// The topic's tables (created or migrated) and the group's
			// registration, on Subscribe.
			InitializeSchema: true,
		}, p.logger)
	}
	first, err := newSub(p.cfg.PostgresPollInterval)
	if err != nil {
		pool.Close()
		return nil, err
	}
	rest, err := newSub(restPollInterval(p.cfg.PostgresPollInterval, p.cfg.PostgresInFlight))
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &pgSubscriber{group: consumerGroup, inFlight: p.cfg.PostgresInFlight, first: first, rest: rest, pool: pool, shared: p.pool,
		logger: p.logger, stopping: make(chan struct{})}, nil
}

// pgSubscriber is one handler's subscriber on the postgres broker: it merges
// inFlight watermill-sql read loops into one channel and turns a nack
// into a delayed redelivery of that message (watermill-sql itself would hand
// the same message to the same loop again at once, holding its row).
type pgSubscriber struct {
	group       string
	inFlight    int
	first, rest *wsql.Subscriber
	pool        *pgxpool.Pool
	// shared is the broker's (the store's) pool, for the delivery counts:
	// never the read loops' connections, each inside its read transaction.
	shared *pgxpool.Pool
	logger watermill.LoggerAdapter

	mu       sync.Mutex
	closed   bool
	stopping chan struct{} // closed by Close: no message is handed on after it
	cancels  []context.CancelFunc
	wg       sync.WaitGroup
	// handed counts the messages handed to the handler and not yet acked,
	// nacked or past their ack deadline: Close waits for them before it
	// ends their read transactions, which their handler may be writing in
	// (wsql.TxFromContext; the recorder does), so a write is never cut off
	// by the loop's commit on the same connection, and an ack arriving
	// meanwhile still commits.
	handed sync.WaitGroup
}

func (s *pgSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscriber closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	ins := make([]<-chan *message.Message, 0, s.inFlight)
	for i := range s.inFlight {
		sub := s.first
		if i > 0 {
			sub = s.rest
		}
		in, err := sub.Subscribe(ctx, topic)
		if err != nil {
			cancel() // stops the loops already started
			return nil, fmt.Errorf("subscribe %s: %w", topic, err)
		}
		ins = append(ins, in)
	}
	s.cancels = append(s.cancels, cancel)
	out := make(chan *message.Message)
	var loops sync.WaitGroup
	for _, in := range ins {
		loops.Add(1)
		go func() {
			defer loops.Done()
			s.forward(ctx, topic, in, out)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		loops.Wait()
		close(out)
	}()
	return out, nil
}

// DeliveriesKey is the metadata key of a message's delivery count on the
// postgres broker: 1 the first time, +1 on each redelivery (after a nack,
// a crash of its consumer or its ack deadline), counted in the database so
// it survives the process.
const DeliveriesKey = "deliveries"

// forward hands each message of one read loop on as a copy (without the
// offset key, with DeliveriesKey) and answers the loop when the copy is
// acked or nacked. The copy's context is the loop's message context: it
// carries the read's transaction (wsql.TxFromContext) and ends at the ack
// deadline. Before handing a message on it counts the delivery (see
// postgres_queue.go); if that fails (a database error) the message is
// handed on all the same, without DeliveriesKey: a crash of its handler
// then frees it without a new delay, as a broker without the count would.
func (s *pgSubscriber) forward(ctx context.Context, topic string, in <-chan *message.Message, out chan<- *message.Message) {
	for m := range in {
		c := m.Copy()
		delete(c.Metadata, offsetKey)
		c.SetContext(m.Context())
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			continue // not handed on: Close ends the loop's transaction
		}
		s.handed.Add(1)
		s.mu.Unlock()
		counted := false
		offset, err := strconv.ParseInt(m.Metadata.Get(offsetKey), 10, 64)
		if err != nil {
			offset = -1 // not a row of ours: never counted, a nack only logs
			s.logger.Error("Message without its row offset", err, watermill.LogFields{"uuid": m.UUID, "topic": topic})
		} else if deliveries, err := s.countDelivery(m.Context(), topic, offset); err != nil {
			s.logger.Error("Could not count the delivery", err, watermill.LogFields{"uuid": m.UUID, "topic": topic})
		} else {
			c.Metadata.Set(DeliveriesKey, strconv.Itoa(deliveries))
			counted = true
		}
		select {
		case out <- c:
		case <-ctx.Done():
			s.uncountDelivery(counted, topic, offset, m.UUID)
			s.handed.Done()
			continue // the loop stops waiting for the ack and closes in
		case <-s.stopping:
			s.uncountDelivery(counted, topic, offset, m.UUID)
			s.handed.Done()
			continue
		}
		select {
		case <-c.Acked():
			m.Ack()
		case <-c.Nacked():
			s.nack(topic, m, offset)
		case <-m.Context().Done():
			// The ack deadline passed or the subscription ends: the read's
			// transaction ends without the ack and the message is free again
			// after its delay.
		}
		s.handed.Done()
	}
}

// countDelivery counts a delivery of the row, committed before the handler
// runs, and returns the count.
func (s *pgSubscriber) countDelivery(ctx context.Context, topic string, offset int64) (int, error) {
	q := deliveryQuery(topic, s.group, offset, postgresNackDelay, postgresNackDelayMax)
	var n int32
	if err := s.shared.QueryRow(ctx, q.Query, q.Args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count delivery of %s offset %d: %w", topic, offset, err)
	}
	return int(n), nil
}

// uncountDelivery takes back the count of a message that was not handed on
// (the subscription ends), so it is not delayed for it. Best effort: if it
// fails, the message only waits for its delay.
func (s *pgSubscriber) uncountDelivery(counted bool, topic string, offset int64, uuid string) {
	if !counted {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := undeliveryQuery(topic, s.group, offset)
	if _, err := s.shared.Exec(ctx, q.Query, q.Args...); err != nil {
		s.logger.Error("Could not take back the delivery count", err, watermill.LogFields{"uuid": uuid, "topic": topic})
	}
}

// nack delays the message's row in the read's transaction and lets the loop
// commit it. If that fails the ack fails too and the transaction is rolled
// back: the message is free again after its delivery's delay.
func (s *pgSubscriber) nack(topic string, m *message.Message, offset int64) {
	defer m.Ack()
	if offset < 0 {
		s.logger.Error("Nack: message without its row offset", nil, watermill.LogFields{"uuid": m.UUID})
		return
	}
	tx, ok := wsql.TxFromContext(m.Context())
	if !ok {
		s.logger.Error("Nack: message without its read transaction", nil, watermill.LogFields{"uuid": m.UUID})
		return
	}
	q := nackQuery(topic, s.group, offset, postgresNackDelay, postgresNackDelayMax)
	if _, err := tx.ExecContext(m.Context(), q.Query, q.Args...); err != nil {
		s.logger.Error("Nack: could not delay the message", err, watermill.LogFields{"uuid": m.UUID, "topic": topic})
	}
}

// Close stops handing messages on, waits for the ones the handler has (see
// handed), stops every subscription, waits for their read loops (each ends
// its transaction) and closes the pool.
func (s *pgSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stopping)
	cancels := s.cancels
	s.mu.Unlock()
	// The messages the handler has first (each until its ack, nack or ack
	// deadline), then the loops (an ack being written completes), then the
	// forwarders still waiting to hand a message on.
	s.handed.Wait()
	err := errors.Join(s.first.Close(), s.rest.Close())
	for _, cancel := range cancels {
		cancel()
	}
	s.wg.Wait()
	s.pool.Close()
	return err
}

// queueStats is the backlog of every consumer group on every topic that has
// a queue table.
func (p *postgresBroker) queueStats(ctx context.Context) ([]metrics.QueueStat, error) {
	var stats []metrics.QueueStat
	for _, topic := range Topics() {
		var exists bool
		if err := p.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, queueTable(topic)).Scan(&exists); err != nil {
			return nil, fmt.Errorf("queue table of %s: %w", topic, err)
		}
		if !exists {
			continue
		}
		rows, err := p.pool.Query(ctx, `SELECT g.consumer_group, count(q."offset"),
	coalesce(extract(epoch FROM clock_timestamp() - min(q.created_at)), 0)::float8
FROM `+groupsTable(topic)+` g LEFT JOIN `+queueTable(topic)+` q ON q.consumer_group = g.consumer_group
GROUP BY g.consumer_group`)
		if err != nil {
			return nil, fmt.Errorf("queue of %s: %w", topic, err)
		}
		for rows.Next() {
			st := metrics.QueueStat{Topic: topic}
			var age float64
			if err := rows.Scan(&st.ConsumerGroup, &st.Depth, &age); err != nil {
				rows.Close()
				return nil, fmt.Errorf("queue of %s: %w", topic, err)
			}
			st.OldestAge = time.Duration(age * float64(time.Second))
			stats = append(stats, st)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("queue of %s: %w", topic, err)
		}
	}
	return stats, nil
}

var _ message.Subscriber = (*pgSubscriber)(nil)
