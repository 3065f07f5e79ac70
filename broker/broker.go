// Package broker builds the Watermill publisher and the subscribers of the
// configured broker (gochannel, kafka or postgres). Handlers never know which
// one they run on.
//
// One Broker per process: it owns one publisher shared by every handler and
// one subscriber per handler (per consumer group), and Close closes them all.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
)

// ConsumerGroupPrefix prefixes a handler's name to make its consumer group:
// all processes running the fetcher share "mockstagram-fetcher".
const ConsumerGroupPrefix = "mockstagram-"

// ConsumerGroup is the consumer group of the handler with the given name.
func ConsumerGroup(handler string) string { return ConsumerGroupPrefix + handler }

// Topics are every topic of the pipeline. The Kafka broker creates them at
// start; a test keeps the list equal to the Topic* constants of messages.
func Topics() []string {
	return []string{
		messages.TopicFetchTasks,
		messages.TopicFetcherResults,
		messages.TopicFetcherDLQ,
		messages.TopicResultDLQ,
		messages.TopicSuspicionTasks,
		messages.TopicSuspicionDLQ,
	}
}

// Capability is something a stage may need of the broker beyond carrying
// messages between handlers of one process.
type Capability int

const (
	// CrossProcess: stages in separate processes exchange messages through
	// it (stand-alone stages, 'dlq replay').
	CrossProcess Capability = iota + 1
)

// Supports reports whether the broker named name (config.Broker*) has
// capability c: nil, or an error that says why not. What each broker can
// do is stated here, once; the wiring asks instead of testing names.
func Supports(name string, c Capability) error {
	// Not a capability, since every broker has it: a handler may take
	// seconds per message (the suspicion checks) without holding back the
	// deliveries of other handlers. Postgres too: its work queue hands each
	// message to one of postgres-in-flight read loops per subscription, each
	// with its own connection of the subscriber's own pool, rows locked
	// with SKIP LOCKED and no wait for the oldest transaction, so a
	// suspicion task waiting seconds on is_suspicious holds one loop of the
	// suspicion subscription only, never a fetch's.
	if name == config.BrokerGoChannel && c == CrossProcess {
		return errors.New("the gochannel broker lives inside one process")
	}
	return nil
}

// HandlerDeadline is how long a handler may hold a message of the broker
// named name before the broker takes it back and delivers it again (the
// postgres broker's ack deadline); 0: no limit.
func HandlerDeadline(name string) time.Duration {
	if name == config.BrokerPostgres {
		return postgresAckDeadline
	}
	return 0
}

// With returns the names of the brokers that have every capability cs,
// for messages that tell the operator which broker to choose.
func With(cs ...Capability) []string {
	var names []string
	for _, name := range []string{config.BrokerGoChannel, config.BrokerKafka, config.BrokerPostgres} {
		ok := true
		for _, c := range cs {
			ok = ok && Supports(name, c) == nil
		}
		if ok {
			names = append(names, name)
		}
	}
	return names
}

// Deps are what a broker may need besides the configuration.
type Deps struct {
	Logger *slog.Logger
	// Pool is the store's pool; required for the postgres broker, whose
	// topic tables live in the store's database. The publisher uses it;
	// each subscriber opens a pool of its own with the same settings and at
	// most postgres-in-flight connections (one per message in flight: the read
	// transaction stays open until the ack).
	Pool *pgxpool.Pool
}

// Broker is one process's connection to the configured message broker.
type Broker struct {
	pub        message.Publisher
	newSub     func(consumerGroup string) (message.Subscriber, error)
	closePub   func() error
	joined     func(ctx context.Context) error // nil: subscriptions receive at once
	logger     watermill.LoggerAdapter
	brokerName string
	queueStats func(context.Context) ([]metrics.QueueStat, error)

	mu     sync.Mutex
	closed bool
	subs   []message.Subscriber
}

// New builds the broker named by cfg.Broker. For kafka it creates the missing
// topics (cfg.KafkaPartitions partitions each) before it returns; for
// postgres the topic tables are created on first use.
func New(ctx context.Context, cfg config.Config, deps Deps) (*Broker, error) {
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	wl := watermill.NewSlogLogger(logger)
	b := &Broker{logger: wl, brokerName: cfg.Broker}
	switch cfg.Broker {
	case config.BrokerGoChannel:
		ch := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, wl)
		b.pub = ch
		b.closePub = ch.Close
		b.newSub = func(string) (message.Subscriber, error) { return newGoChannelSubscriber(ch), nil }
	case config.BrokerKafka:
		k, err := newKafka(ctx, cfg, wl)
		if err != nil {
			return nil, fmt.Errorf("kafka broker: %w", err)
		}
		b.pub = k.publisher
		b.closePub = k.publisher.Close
		b.newSub = k.subscriber
		b.joined = k.sessions.wait
	case config.BrokerPostgres:
		if deps.Pool == nil {
			return nil, errors.New("postgres broker: no database pool (the store's pool is required)")
		}
		p, err := newPostgres(cfg, deps.Pool, wl)
		if err != nil {
			return nil, fmt.Errorf("postgres broker: %w", err)
		}
		b.pub = p.publisher
		b.closePub = p.publisher.Close
		b.newSub = p.subscriber
		b.queueStats = p.queueStats
	default:
		return nil, fmt.Errorf("broker %q is not one of gochannel, kafka, postgres", cfg.Broker)
	}
	return b, nil
}

// Publisher is the process's one publisher, safe for concurrent use by every
// handler. Its Close does nothing: the router closes the publisher of each
// handler that stops, which must not close it under the others. Broker.Close
// closes it.
func (b *Broker) Publisher() message.Publisher { return sharedPublisher{b.pub} }

// Subscriber returns a new subscriber in consumerGroup (use ConsumerGroup of
// the handler's name); create one per handler. Subscribers of one group share
// the topic's messages: on kafka they split the partitions between them, on
// postgres each takes the next message no other holds (postgres-in-flight at
// once per subscription). gochannel has no groups: every subscriber of a
// topic gets every message. Closing the subscriber (the router does) stops its
// subscriptions only; Broker.Close closes the ones still open.
func (b *Broker) Subscriber(consumerGroup string) (message.Subscriber, error) {
	if consumerGroup == "" {
		return nil, errors.New("subscriber: empty consumer group")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("subscriber: broker closed")
	}
	sub, err := b.newSub(consumerGroup)
	if err != nil {
		return nil, fmt.Errorf("%s subscriber %s: %w", b.brokerName, consumerGroup, err)
	}
	b.subs = append(b.subs, sub)
	return sub, nil
}

// WaitSubscribed returns once every subscription made so far on the
// broker's subscribers receives messages, or with an error when ctx ends
// first. On kafka a subscription receives nothing until its consumer group
// has been joined and has assigned it its partitions, which watermill-kafka
// does after Subscribe returned (seconds; more while other members of the
// group finish the messages they hold). On gochannel and postgres a
// subscription receives from the moment Subscribe returns.
func (b *Broker) WaitSubscribed(ctx context.Context) error {
	if b.joined == nil {
		return nil
	}
	return b.joined(ctx)
}

// QueueStats reports the backlog of every consumer group on every topic
// (metrics.QueueSource). Only the postgres broker keeps its queues where they
// can be counted; the others report none.
func (b *Broker) QueueStats(ctx context.Context) ([]metrics.QueueStat, error) {
	if b.queueStats == nil {
		return nil, nil
	}
	return b.queueStats(ctx)
}

// Close closes every subscriber, then the publisher. Closing twice is a no-op.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()

	var errs []error
	for _, s := range subs {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close subscriber: %w", err))
		}
	}
	if err := b.closePub(); err != nil {
		errs = append(errs, fmt.Errorf("close publisher: %w", err))
	}
	return errors.Join(errs...)
}

// sharedPublisher hides Close from the users of the shared publisher.
type sharedPublisher struct{ message.Publisher }

// Close does nothing; Broker.Close closes the publisher.
func (sharedPublisher) Close() error { return nil }

// goChannelSubscriber is one handler's view of the in-memory broker: closing
// it ends its own subscriptions (gochannel closes a subscription's channel
// when its context ends) without closing the GoChannel that the publisher and
// the other handlers still use.
type goChannelSubscriber struct {
	ch *gochannel.GoChannel

	mu      sync.Mutex
	closed  bool
	cancels []context.CancelFunc
}

func newGoChannelSubscriber(ch *gochannel.GoChannel) *goChannelSubscriber {
	return &goChannelSubscriber{ch: ch}
}

func (s *goChannelSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscriber closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	out, err := s.ch.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		return nil, err
	}
	s.cancels = append(s.cancels, cancel)
	return inFlight(ctx, out, GoChannelInFlight), nil
}

func (s *goChannelSubscriber) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, cancel := range s.cancels {
		cancel()
	}
	return nil
}

var (
	_ message.Subscriber = (*goChannelSubscriber)(nil)
	_ message.Publisher  = sharedPublisher{}
)
