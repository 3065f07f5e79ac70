package kafkadev_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/broker/kafkadev"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-metrics (used by Sarama) starts one process-wide meter ticker
		// on first use and never stops it.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

// The dev broker listens where it is told and speaks Kafka to Sarama.
func TestStartListensOnAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	c, err := kafkadev.Start(addr, 4)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, []string{addr}, c.ListenAddrs())

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	client, err := sarama.NewClient([]string{addr}, sc)
	require.NoError(t, err)
	defer client.Close()
	assert.Len(t, client.Brokers(), 1)
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kafkadev.Serve(ctx, "127.0.0.1:0") }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestStartFailsOnBusyAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = kafkadev.Start(ln.Addr().String(), 1)
	require.Error(t, err)
}

// newBroker starts a trimmed broker on a free port and a Sarama client of it.
func newBroker(t *testing.T) (*kafkadev.Broker, sarama.Client) {
	t.Helper()
	b, err := kafkadev.New("127.0.0.1:0", 2)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	client, err := sarama.NewClient(b.ListenAddrs(), sc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	return b, client
}

// produce sends n records with timestamp at to each partition of topic.
func produce(t *testing.T, client sarama.Client, topic string, partitions []int32, n int, at time.Time) {
	t.Helper()
	p, err := sarama.NewSyncProducerFromClient(client)
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()
	for _, part := range partitions {
		for range n {
			_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part, Timestamp: at,
				Value: sarama.ByteEncoder(make([]byte, 1000))})
			require.NoError(t, err)
		}
	}
}

// commit commits offset (the next to read) on topic's partition as group,
// the way a consumer that has handled everything before offset does (a
// simple commit: group generation -1, no member).
func commit(t *testing.T, client sarama.Client, group, topic string, partition int32, offset int64) {
	t.Helper()
	coordinator, err := client.Coordinator(group)
	require.NoError(t, err)
	req := &sarama.OffsetCommitRequest{Version: 2, ConsumerGroup: group, ConsumerGroupGeneration: -1}
	req.AddBlock(topic, partition, offset, 0, "")
	resp, err := coordinator.CommitOffset(req)
	require.NoError(t, err)
	require.Equal(t, sarama.ErrNoError, resp.Errors[topic][partition])
}

func logStart(t *testing.T, b *kafkadev.Broker, topic string) []int64 {
	t.Helper()
	var starts []int64
	for _, p := range b.PartitionInfos(topic) {
		starts = append(starts, p.LogStartOffset)
	}
	return starts
}

// Trim drops on each partition what every group reading the topic has
// committed past, and nothing on a partition where one of them has not
// committed yet.
func TestTrimDropsWhatEveryGroupCommitted(t *testing.T) {
	b, client := newBroker(t)
	const topic = "tasks"
	require.NoError(t, b.CreateTopic(topic, 2, nil))
	produce(t, client, topic, []int32{0, 1}, 10, time.Now())
	before := b.PartitionInfos(topic)[0].NumBytes

	b.Trim()
	assert.Equal(t, []int64{0, 0}, logStart(t, b, topic), "no group: records younger than the retention stay")

	commit(t, client, "a", topic, 0, 6)
	commit(t, client, "b", topic, 0, 4)
	commit(t, client, "b", topic, 1, 8)
	b.Trim()
	assert.Equal(t, []int64{4, 0}, logStart(t, b, topic), "partition 0 up to the lower commit; a has committed nothing on 1")
	assert.Less(t, b.PartitionInfos(topic)[0].NumBytes, before, "the dropped records are no longer held")

	commit(t, client, "a", topic, 1, 3)
	commit(t, client, "b", topic, 0, 10)
	b.Trim()
	assert.Equal(t, []int64{6, 3}, logStart(t, b, topic))

	commit(t, client, "a", topic, 0, 10)
	b.Trim()
	assert.Equal(t, []int64{10, 3}, logStart(t, b, topic), "everything read by both")
	assert.Zero(t, b.PartitionInfos(topic)[0].NumBytes)
}

// A group whose member subscribed to the topic but has committed nothing
// (it starts at the oldest record) keeps every record for it.
func TestTrimWaitsForASubscribedGroup(t *testing.T) {
	b, client := newBroker(t)
	const topic = "results"
	require.NoError(t, b.CreateTopic(topic, 1, nil))
	produce(t, client, topic, []int32{0}, 5, time.Now())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_7_0_0
	g, err := sarama.NewConsumerGroup(b.ListenAddrs(), "slow", sc)
	require.NoError(t, err)
	consumed := make(chan error, 1)
	go func() { consumed <- g.Consume(ctx, []string{topic}, idle{}) }()
	_, err = b.WaitGroupStable(ctx, "slow", 1)
	require.NoError(t, err)

	commit(t, client, "fast", topic, 0, 5)
	b.Trim()
	assert.Equal(t, []int64{0}, logStart(t, b, topic), "slow has read nothing")

	cancel()
	err = <-consumed
	if err != nil && !errors.Is(err, context.Canceled) {
		require.NoError(t, err)
	}
	require.NoError(t, g.Close())
}

// idle holds its claims without reading them.
type idle struct{}

func (idle) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (idle) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (idle) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}

// Records older than MaxRecordAge go whether or not they were read.
func TestTrimDropsOldRecords(t *testing.T) {
	b, client := newBroker(t)
	const topic = "dlq"
	require.NoError(t, b.CreateTopic(topic, 2, nil))
	produce(t, client, topic, []int32{0}, 3, time.Now().Add(-kafkadev.MaxRecordAge-time.Minute))
	produce(t, client, topic, []int32{1}, 3, time.Now().Add(-kafkadev.MaxRecordAge+time.Minute))
	b.Trim()
	assert.Equal(t, []int64{3, 0}, logStart(t, b, topic))
}

func TestRunTrimsUntilTheContextEnds(t *testing.T) {
	b, client := newBroker(t)
	const topic = "tasks"
	require.NoError(t, b.CreateTopic(topic, 1, nil))
	produce(t, client, topic, []int32{0}, 4, time.Now())
	commit(t, client, "a", topic, 0, 4)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { b.Run(ctx, time.Millisecond); close(done) }()
	for ctx.Err() == nil && b.PartitionInfo(topic, 0).LogStartOffset != 4 {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	assert.EqualValues(t, 4, b.PartitionInfo(topic, 0).LogStartOffset)
	cancel()
	<-done
}
