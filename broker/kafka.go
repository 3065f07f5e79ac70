package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/messages"
)

// MaxKafkaMessageBytes bounds one Kafka record: the producer's limit and the
// max.message.bytes of the topics this package creates. A result for 1,000
// pks is ~100 KB; this leaves room for shards far larger than the default.
const MaxKafkaMessageBytes = 16 << 20

// What a subscription prefetches per partition (consumerConfig).
const (
	consumerBufferedMessages = 2
	consumerFetchBytes       = 256 << 10
)

// minKafkaVersion is the oldest protocol version accepted: Kafka 4 dropped
// the older request versions, and Sarama's consumer groups need >= 2.1.
var minKafkaVersion = sarama.V2_1_0_0

type kafkaBroker struct {
	brokers   []string
	version   sarama.KafkaVersion
	publisher *kafka.Publisher
	logger    watermill.LoggerAdapter
	sessions  *groupSessions
}

// newKafka creates the missing topics and the publisher.
func newKafka(ctx context.Context, cfg config.Config, logger watermill.LoggerAdapter) (*kafkaBroker, error) {
	if len(cfg.KafkaBrokers) == 0 {
		return nil, errors.New("no kafka-brokers configured")
	}
	version, err := sarama.ParseKafkaVersion(cfg.KafkaVersion)
	if err != nil {
		return nil, fmt.Errorf("kafka-version: %w", err)
	}
	if !version.IsAtLeast(minKafkaVersion) {
		return nil, fmt.Errorf("kafka-version: %s is older than %s", version, minKafkaVersion)
	}
	k := &kafkaBroker{brokers: cfg.KafkaBrokers, version: version, logger: logger, sessions: newGroupSessions()}
	if err := k.createTopics(ctx, Topics(), cfg.KafkaPartitions); err != nil {
		return nil, err
	}
	k.publisher, err = kafka.NewPublisher(kafka.PublisherConfig{
		Brokers:               k.brokers,
		Marshaler:             kafka.NewWithPartitioningMarshaler(PartitionKey),
		OverwriteSaramaConfig: k.producerConfig(),
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return k, nil
}

// PartitionKey is the Kafka message key: the shard (messages.MetaShard), so
// that shards spread over the partitions and one shard's messages stay in
// order on one partition. A message without a shard is keyed by its UUID.
func PartitionKey(_ string, msg *message.Message) (string, error) {
	if shard := msg.Metadata.Get(messages.MetaShard); shard != "" {
		return shard, nil
	}
	return msg.UUID, nil
}

func (k *kafkaBroker) baseConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = k.version
	c.ClientID = "mockstagram"
	// Topics are created with the configured partition count at start, never
	// implicitly with the broker's default.
	c.Metadata.AllowAutoTopicCreation = false
	return c
}

func (k *kafkaBroker) producerConfig() *sarama.Config {
	c := k.baseConfig()
	c.Producer.Return.Successes = true // required by the sync producer
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Retry.Max = 10
	c.Producer.MaxMessageBytes = MaxKafkaMessageBytes
	// sarama's hash partitioner (FNV-1a of the key): the same shard always
	// lands on the same partition while the partition count is unchanged.
	c.Producer.Partitioner = sarama.NewHashPartitioner
	return c
}

func (k *kafkaBroker) consumerConfig() *sarama.Config {
	c := k.baseConfig()
	c.Consumer.Return.Errors = true
	// A new consumer group starts at the beginning of the topic: tasks
	// published before the first fetcher joined are not skipped.
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Commit synchronously after each ack (watermill-kafka calls
	// session.Commit when auto-commit is off) instead of every second in the
	// background: a crash then re-delivers at most the message being handled
	// (plus, on a Close racing an ack, the last acked one) per partition,
	// not a second's worth. ~17 messages/s per stage make this cheap.
	c.Consumer.Offsets.AutoCommit.Enable = false
	// Prefetch little. Every decoded message references the fetch
	// response it came in, so a few buffered messages per partition keep
	// whole responses alive: with sarama's 256 per partition and 1 MiB per
	// partition and fetch, a recorder behind by some results (~100 KB
	// each) held ~60 MB of responses, and its RSS grew past 170 MB at
	// 300,000 pks/min. watermill-kafka hands on one message per partition
	// at a time and waits for its ack, so a couple ready behind it are
	// enough; sarama fetches again as they are taken.
	c.ChannelBufferSize = consumerBufferedMessages
	c.Consumer.Fetch.Default = consumerFetchBytes // grows up to the record size when needed
	return c
}

func (k *kafkaBroker) subscriber(consumerGroup string) (message.Subscriber, error) {
	return kafka.NewSubscriber(kafka.SubscriberConfig{
		Brokers:               k.brokers,
		Unmarshaler:           kafka.DefaultMarshaler{},
		OverwriteSaramaConfig: k.consumerConfig(),
		ConsumerGroup:         consumerGroup,
		NackResendSleep:       100 * time.Millisecond,
		ReconnectRetrySleep:   time.Second,
		Tracer:                k.sessions,
	}, k.logger)
}

// groupSessions sees the consumer group sessions of every subscription of
// the broker's subscribers: watermill-kafka's Subscribe returns before the
// group has been joined, and a subscription receives nothing until then.
// It is the subscribers' kafka.SaramaTracer only to be handed each
// subscription's consumer group handler (the other hooks change nothing).
type groupSessions struct {
	mu      sync.Mutex
	pending map[*joinSignal]struct{}
}

func newGroupSessions() *groupSessions {
	return &groupSessions{pending: map[*joinSignal]struct{}{}}
}

// wait returns once every subscription made so far has been set up in its
// consumer group (partitions assigned, possibly none when other members
// of the group hold them all), or when ctx ends.
func (g *groupSessions) wait(ctx context.Context) error {
	g.mu.Lock()
	pending := make([]*joinSignal, 0, len(g.pending))
	for s := range g.pending {
		pending = append(pending, s)
	}
	g.mu.Unlock()
	for _, s := range pending {
		select {
		case <-s.joined:
		case <-ctx.Done():
			return fmt.Errorf("%d kafka subscriptions still joining their consumer groups: %w", len(pending), ctx.Err())
		}
	}
	return nil
}

// WrapConsumerGroupHandler is called once per consumer group client that
// watermill-kafka starts (per Subscribe, and per reconnect of one).
func (g *groupSessions) WrapConsumerGroupHandler(h sarama.ConsumerGroupHandler) sarama.ConsumerGroupHandler {
	s := &joinSignal{ConsumerGroupHandler: h, joined: make(chan struct{}), sessions: g}
	g.mu.Lock()
	g.pending[s] = struct{}{}
	g.mu.Unlock()
	return s
}

func (g *groupSessions) WrapConsumer(c sarama.Consumer) sarama.Consumer { return c }

func (g *groupSessions) WrapPartitionConsumer(pc sarama.PartitionConsumer) sarama.PartitionConsumer {
	return pc
}

func (g *groupSessions) WrapSyncProducer(_ *sarama.Config, p sarama.SyncProducer) sarama.SyncProducer {
	return p
}

// joinSignal closes joined when the first session of its consumer group
// client is set up.
type joinSignal struct {
	sarama.ConsumerGroupHandler
	joined   chan struct{}
	once     sync.Once
	sessions *groupSessions
}

func (s *joinSignal) Setup(sess sarama.ConsumerGroupSession) error {
	err := s.ConsumerGroupHandler.Setup(sess)
	s.once.Do(func() {
		s.sessions.mu.Lock()
		delete(s.sessions.pending, s)
		s.sessions.mu.Unlock()
		close(s.joined)
	})
	return err
}

var _ kafka.SaramaTracer = (*groupSessions)(nil)

// createTopics creates the topics that do not exist yet. Existing topics are
// left alone (their partition count is not changed). Another process
// creating the same topic at the same time is not an error.
func (k *kafkaBroker) createTopics(ctx context.Context, topics []string, partitions int) error {
	admin, err := sarama.NewClusterAdmin(k.brokers, k.baseConfig())
	if err != nil {
		return fmt.Errorf("cluster admin: %w", err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	maxBytes := strconv.Itoa(MaxKafkaMessageBytes)
	for _, topic := range topics {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := existing[topic]; ok {
			continue
		}
		err := admin.CreateTopic(topic, &sarama.TopicDetail{
			NumPartitions:     int32(partitions),
			ReplicationFactor: -1, // the cluster's default.replication.factor
			ConfigEntries:     map[string]*string{"max.message.bytes": &maxBytes},
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
		k.logger.Info("Created Kafka topic", watermill.LogFields{"topic": topic, "partitions": partitions})
	}
	return nil
}
