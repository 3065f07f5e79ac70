package broker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/broker/kafkadev"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/messages"
)

// holdJoins makes the cluster hold the first JoinGroup request until
// release is closed; joining is closed when it arrives.
func holdJoins(c *kfake.Cluster) (joining <-chan struct{}, release chan struct{}) {
	seen, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() {
			close(seen)
			c.SleepControl(func() { <-rel })
		})
		return nil, nil, false // then the cluster handles it as usual
	})
	return seen, rel
}

// watermill-kafka's Subscribe returns before the consumer group is joined.
// WaitSubscribed returns only once it is (here: held until released), and
// a task published during the join is delivered after it: the scheduler,
// which starts after the router's WaitSubscribed, publishes its first
// minute only to a fetcher that receives it.
func TestKafkaWaitSubscribedWaitsForTheJoin(t *testing.T) {
	c, err := kafkadev.Start("127.0.0.1:0", 1)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cfg := config.Default()
	cfg.Broker = config.BrokerKafka
	cfg.KafkaBrokers = c.ListenAddrs()
	cfg.KafkaPartitions = partitions
	b := newBroker(t, cfg, broker.Deps{})
	t.Cleanup(func() { _ = b.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, b.WaitSubscribed(ctx), "no subscriptions: nothing to wait for")

	joining, release := holdJoins(c)
	const group = "mockstagram-join-test"
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	msgs, err := sub.Subscribe(ctx, messages.TopicFetchTasks)
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() { waited <- b.WaitSubscribed(ctx) }()

	select {
	case <-joining:
	case <-ctx.Done():
		t.Fatal("no JoinGroup request reached the cluster")
	}
	select {
	case err := <-waited:
		t.Fatalf("WaitSubscribed returned (%v) while the join was held", err)
	default:
	}
	task := message.NewMessage("task-during-join", []byte("shard 7"))
	task.Metadata.Set(messages.MetaShard, "7")
	require.NoError(t, b.Publisher().Publish(messages.TopicFetchTasks, task))
	close(release)

	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("WaitSubscribed did not return after the join")
	}
	// Joined: the group is stable, its one member holds every partition.
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	admin, err := sarama.NewClusterAdmin(cfg.KafkaBrokers, sc)
	require.NoError(t, err)
	defer admin.Close()
	groups, err := admin.DescribeConsumerGroups([]string{group})
	require.NoError(t, err)
	require.Len(t, groups, 1)
	assert.Equal(t, "Stable", groups[0].State)
	require.Len(t, groups[0].Members, 1)
	for _, m := range groups[0].Members {
		a, err := m.GetMemberAssignment()
		require.NoError(t, err)
		assert.Len(t, a.Topics[messages.TopicFetchTasks], partitions)
	}

	select {
	case got := <-msgs:
		assert.Equal(t, "task-during-join", got.UUID)
		assert.Equal(t, "shard 7", string(got.Payload))
		got.Ack()
	case <-ctx.Done():
		t.Fatal("the task published during the join was not delivered")
	}
}

// On the brokers without consumer group joins a subscription receives as
// soon as Subscribe returns.
func TestWaitSubscribedGoChannel(t *testing.T) {
	b := newBroker(t, config.Default(), broker.Deps{})
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscriber("mockstagram-x")
	require.NoError(t, err)
	_, err = sub.Subscribe(context.Background(), messages.TopicFetchTasks)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // must not be needed
	require.NoError(t, b.WaitSubscribed(ctx))
}
