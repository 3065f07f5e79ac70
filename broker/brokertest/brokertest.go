// Package brokertest is the one contract test suite every broker passes: the
// guarantees the pipeline's handlers rely on, whichever broker they run on.
package brokertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/messages"
)

// Features says which guarantees a broker gives beyond the ones all give
// (round trip with payload and metadata, redelivery after a nack).
type Features struct {
	// Durable: messages published while no subscriber of a group runs are
	// kept, and a group's new subscriber resumes after its committed offset.
	Durable bool
	// ConsumerGroups: subscribers in one consumer group share the messages;
	// each message is handled by one of them.
	ConsumerGroups bool
	// ParallelConsumers: subscribers of one group work on different
	// messages at the same time (Kafka: they split the partitions; Postgres:
	// each takes the next message no other holds).
	ParallelConsumers bool
	// Partitioned: messages carry a partition (Kafka), and messages with the
	// same messages.MetaShard land on the same partition, in order.
	Partitioned bool
	// Partitions of each topic, with Partitioned.
	Partitions int
	// RedeliversLastAcked: a group's new subscriber may get again the last
	// message acked before the previous subscriber closed, at most one per
	// partition, never a gap; a broker without partitions counts as one
	// partition with InFlight last messages. watermill-kafka commits the
	// offset after the ack, and a Close (or a rebalance) racing it drops the
	// commit. watermill-sql waits for the ack and the close in one select:
	// when both are ready it may take the close and end the read's
	// transaction without the ack. Handlers must be idempotent.
	RedeliversLastAcked bool
	// InFlight: one subscription hands out at least this many messages (of
	// distinct shards) before any of them is acked, so one slow message does
	// not hold up the others. 0 counts as 1.
	InFlight int
	// NackDelays: a nacked message comes back after a delay and the other
	// messages pass it meanwhile, so failing messages never hold up the
	// others, even as many as InFlight of them. (gochannel and Kafka hand a
	// nacked message again at once, in its place.)
	NackDelays bool
	// OpenTransactionElsewhere, if set, opens a transaction that stays open
	// until the test ends somewhere the broker might wait for it (Postgres:
	// in another database of the same server); messages must flow anyway.
	OpenTransactionElsewhere func(t *testing.T)
}

func (f Features) inFlight() int { return max(1, f.InFlight) }

// Timeout bounds every wait for a message. Kafka consumer groups take a few
// seconds to (re)balance.
const Timeout = 60 * time.Second

// Run runs the suite. newBroker returns a fresh broker with empty topics
// (Run closes it when the test ends).
func Run(t *testing.T, newBroker func(t *testing.T) *broker.Broker, f Features) {
	start := func(t *testing.T) *broker.Broker {
		t.Helper()
		b := newBroker(t)
		t.Cleanup(func() { assert.NoError(t, b.Close()) })
		return b
	}

	t.Run("RoundTripPreservesPayloadAndMetadata", func(t *testing.T) {
		testRoundTrip(t, start(t))
	})
	t.Run("NackRedelivers", func(t *testing.T) {
		testNack(t, start(t))
	})
	t.Run("PublisherCloseIsNoOp", func(t *testing.T) {
		testPublisherClose(t, start(t))
	})
	t.Run("ConsumerGroupSharesWork", func(t *testing.T) {
		if !f.ConsumerGroups {
			t.Skip("no consumer groups: every subscriber gets every message")
		}
		testGroupShares(t, start(t), f)
	})
	t.Run("ConsumerGroupFailover", func(t *testing.T) {
		if !f.ConsumerGroups {
			t.Skip("no consumer groups")
		}
		testFailover(t, start(t), f)
	})
	t.Run("RestartResumesFromCommittedOffset", func(t *testing.T) {
		if !f.Durable {
			t.Skip("not durable: messages published without a subscriber are dropped")
		}
		testRestart(t, start(t), f)
	})
	t.Run("SeveralMessagesInFlight", func(t *testing.T) {
		if f.InFlight < 2 {
			t.Skip("one message at a time per subscription")
		}
		testInFlight(t, start(t), f)
	})
	t.Run("ParallelConsumersGetDifferentMessagesAtOnce", func(t *testing.T) {
		if !f.ParallelConsumers {
			t.Skip("one subscriber of a group works at a time")
		}
		testParallel(t, start(t))
	})
	t.Run("OpenTransactionElsewhereDoesNotHideMessages", func(t *testing.T) {
		if f.OpenTransactionElsewhere == nil {
			t.Skip("the broker does not depend on transactions")
		}
		testOpenTransaction(t, start(t), f)
	})
	t.Run("NackDelaysOnlyThatMessage", func(t *testing.T) {
		if !f.NackDelays {
			t.Skip("a nacked message comes again at once, in its place")
		}
		testNackDelays(t, start(t), f)
	})
	t.Run("SameShardSamePartition", func(t *testing.T) {
		if !f.Partitioned {
			t.Skip("no partitions")
		}
		testPartitioning(t, start(t), f)
	})
}

const group = "mockstagram-contract"

func subscribe(t *testing.T, b *broker.Broker, topic string) (message.Subscriber, <-chan *message.Message) {
	t.Helper()
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	return sub, ch
}

func newMsg(shard int, payload []byte) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(messages.MetaShard, strconv.Itoa(shard))
	return msg
}

func publish(t *testing.T, b *broker.Broker, topic string, msgs ...*message.Message) {
	t.Helper()
	for _, m := range msgs {
		require.NoError(t, b.Publisher().Publish(topic, m), "publish %s", m.UUID)
	}
}

// next waits for the next message or fails the test.
func next(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "subscription closed")
		return m
	case <-time.After(Timeout):
		t.Fatalf("no message within %s", Timeout)
		return nil
	}
}

// nothing asserts that no message arrives for a short while (a negative
// check: waiting for the absence of an event needs some bound).
func nothing(t *testing.T, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %s (%s)", m.UUID, m.Payload)
	case <-time.After(d):
	}
}

func testRoundTrip(t *testing.T, b *broker.Broker) {
	_, ch := subscribe(t, b, messages.TopicFetcherResults)

	binary := make([]byte, 4096)
	_, _ = rand.Read(binary)     // not JSON, not UTF-8
	large := make([]byte, 2<<20) // above Kafka's 1 MB default limit
	for i := range large {
		large[i] = 'a' + byte(i%26)
	}
	want := []*message.Message{
		newMsg(7, []byte(`{"shard":7}`)),
		newMsg(8, binary),
		newMsg(9, large),
		newMsg(10, nil),
	}
	for i, m := range want {
		m.Metadata.Set(messages.MetaMinute, "2024-05-01T12:03:00Z")
		m.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		m.Metadata.Set("tracestate", "vendor=a,b=c")
		m.Metadata.Set(messages.MetaReason, fmt.Sprintf(`quotes " and \ and unicode ü #%d`, i))
		m.Metadata.Set("empty", "")
	}
	publish(t, b, messages.TopicFetcherResults, want...)

	got := map[string]*message.Message{}
	for range want {
		m := next(t, ch)
		got[m.UUID] = m
		m.Ack()
	}
	for _, w := range want {
		g, ok := got[w.UUID]
		if !assert.True(t, ok, "message %s lost", w.UUID) {
			continue
		}
		assert.Equal(t, len(w.Payload), len(g.Payload), "payload length of %s", w.UUID)
		assert.True(t, string(w.Payload) == string(g.Payload), "payload of %s differs", w.UUID)
		meta := maps.Clone(map[string]string(g.Metadata))
		if n, ok := meta[broker.DeliveriesKey]; ok {
			// The postgres broker's delivery count, added on delivery.
			assert.Equal(t, "1", n, "deliveries of %s", w.UUID)
			delete(meta, broker.DeliveriesKey)
		}
		assert.Equal(t, map[string]string(w.Metadata), meta, "metadata of %s", w.UUID)
	}
}

func testNack(t *testing.T, b *broker.Broker) {
	_, ch := subscribe(t, b, messages.TopicFetchTasks)
	first := newMsg(1, []byte("first"))
	publish(t, b, messages.TopicFetchTasks, first)

	m := next(t, ch)
	require.Equal(t, first.UUID, m.UUID)
	m.Nack()
	again := next(t, ch)
	require.Equal(t, first.UUID, again.UUID, "a nacked message comes back")
	require.Equal(t, "first", string(again.Payload))
	again.Ack()

	second := newMsg(1, []byte("second"))
	publish(t, b, messages.TopicFetchTasks, second)
	m = next(t, ch)
	require.Equal(t, second.UUID, m.UUID, "an acked message does not come back")
	m.Ack()
}

func testPublisherClose(t *testing.T, b *broker.Broker) {
	_, ch := subscribe(t, b, messages.TopicFetchTasks)
	// The router closes each handler's publisher when it stops; the shared
	// publisher must survive that.
	require.NoError(t, b.Publisher().Close())
	msg := newMsg(1, []byte("after close"))
	publish(t, b, messages.TopicFetchTasks, msg)
	m := next(t, ch)
	require.Equal(t, msg.UUID, m.UUID)
	m.Ack()
}

// warmUp waits until both subscribers of a group get work, so the measured
// messages are not moved by a rebalance (a message acked during a rebalance
// may be delivered twice; see RedeliversLastAcked): warm-up messages over
// every shard until each subscriber has handled one, then drains them.
func warmUp(t *testing.T, b *broker.Broker, topic string, ch1, ch2 <-chan *message.Message) {
	t.Helper()
	got1, got2 := false, false
	deadline := time.After(Timeout)
	for shard := 0; !got1 || !got2; shard++ {
		publish(t, b, topic, newMsg(1000+shard%64, []byte("warm-up")))
	drain:
		for {
			select {
			case m := <-ch1:
				got1 = true
				m.Ack()
			case m := <-ch2:
				got2 = true
				m.Ack()
			case <-deadline:
				t.Fatalf("both subscribers of a group did not get work within %s (first %v, second %v)", Timeout, got1, got2)
			case <-time.After(50 * time.Millisecond):
				break drain
			}
		}
	}
	// Drain what is still in flight from the warm-up.
	for {
		select {
		case m := <-ch1:
			m.Ack()
		case m := <-ch2:
			m.Ack()
		case <-time.After(time.Second):
			return
		}
	}
}

// testGroupShares: two subscribers of one group; every message is handled
// exactly once across both, and with ParallelConsumers both get work.
func testGroupShares(t *testing.T, b *broker.Broker, f Features) {
	topic := messages.TopicFetchTasks
	_, ch1 := subscribe(t, b, topic)
	_, ch2 := subscribe(t, b, topic)

	if f.ParallelConsumers {
		warmUp(t, b, topic, ch1, ch2)
	}

	const n = 64
	want := map[string]bool{}
	for shard := range n {
		m := newMsg(shard, []byte(strconv.Itoa(shard)))
		want[m.UUID] = true
		publish(t, b, topic, m)
	}
	seen := map[string]int{}
	per := [2]int{}
	deadline := time.After(Timeout)
	for received := 0; received < n; {
		var m *message.Message
		select {
		case m = <-ch1:
			per[0]++
		case m = <-ch2:
			per[1]++
		case <-deadline:
			t.Fatalf("got %d of %d messages within %s", received, n, Timeout)
		}
		if string(m.Payload) == "warm-up" {
			m.Ack()
			continue
		}
		require.True(t, want[m.UUID], "unknown message %s", m.UUID)
		seen[m.UUID]++
		require.Equal(t, 1, seen[m.UUID], "message %s handled twice", m.UUID)
		received++
		m.Ack()
	}
	t.Logf("split between two subscribers of one group: %v", per)
	if f.ParallelConsumers {
		assert.NotZero(t, per[0], "first subscriber got no work")
		assert.NotZero(t, per[1], "second subscriber got no work")
	}
}

// testFailover: the first subscriber of a group holds a message without
// acking it and closes: the held message is not lost, a second subscriber of
// the group gets it. On a partitioned broker the second gets nothing of the
// held message's partition meanwhile, and then everything in order; on one
// with per-message locks (Postgres) the later messages are delivered at once
// (to either).
func testFailover(t *testing.T, b *broker.Broker, f Features) {
	topic := messages.TopicFetchTasks
	sub1, ch1 := subscribe(t, b, topic)
	const shard = 3 // one shard: one partition on Kafka, so one order
	held := newMsg(shard, []byte("held"))
	publish(t, b, topic, held)
	m := next(t, ch1)
	require.Equal(t, held.UUID, m.UUID)

	_, ch2 := subscribe(t, b, topic)
	var rest []*message.Message
	for i := range 5 {
		msg := newMsg(shard, []byte("after-"+strconv.Itoa(i)))
		rest = append(rest, msg)
	}
	publish(t, b, topic, rest...)
	if !f.Partitioned {
		want := map[string]bool{}
		for _, w := range rest {
			want[w.UUID] = true
		}
		// The first's other read loops may take some of them too.
		deadline := time.After(Timeout)
		for len(want) > 0 {
			var g *message.Message
			select {
			case g = <-ch1:
			case g = <-ch2:
			case <-deadline:
				t.Fatalf("%d messages not delivered within %s while the first holds its message", len(want), Timeout)
			}
			require.True(t, want[g.UUID], "while the first holds its message: unexpected %s", g.Payload)
			delete(want, g.UUID)
			g.Ack()
		}
		require.NoError(t, sub1.Close()) // without acking: the message is not lost
		g := next(t, ch2)
		require.Equal(t, held.UUID, g.UUID, "the held message after failover: got %s", g.Payload)
		g.Ack()
		return
	}
	// While the first holds its message, the second gets nothing of it.
	nothing(t, ch2, 500*time.Millisecond)

	require.NoError(t, sub1.Close()) // without acking: the message is not lost
	want := append([]*message.Message{held}, rest...)
	for i, w := range want {
		g := next(t, ch2)
		require.Equal(t, w.UUID, g.UUID, "message %d after failover: want %s, got %s", i, w.Payload, g.Payload)
		g.Ack()
	}
}

// testRestart: a subscriber acks a batch and closes; a batch is published
// while none runs; the group's next subscriber gets the new batch whole and,
// of the old one, at most the last message per partition
// (RedeliversLastAcked), nothing else.
func testRestart(t *testing.T, b *broker.Broker, f Features) {
	topic := messages.TopicFetcherResults
	sub1, ch1 := subscribe(t, b, topic)
	const n = 48
	var old []*message.Message
	for shard := range n {
		old = append(old, newMsg(shard, []byte("old-"+strconv.Itoa(shard))))
	}
	publish(t, b, topic, old...)
	// The last old messages acked per partition that may come again: one
	// on a partitioned broker, the ones in flight at once on another.
	window := f.inFlight()
	if f.Partitioned {
		window = 1
	}
	lastOnPartition := map[int32][]string{} // partition -> old messages acked there, in order
	oldIDs := map[string]bool{}
	for range n {
		m := next(t, ch1)
		require.False(t, oldIDs[m.UUID], "old message %s delivered twice before the restart", m.UUID)
		oldIDs[m.UUID] = true
		p, _ := kafka.MessagePartitionFromCtx(m.Context())
		lastOnPartition[p] = append(lastOnPartition[p], m.UUID)
		m.Ack()
	}
	require.NoError(t, sub1.Close())

	var fresh []*message.Message
	want := map[string]bool{}
	for shard := range n {
		m := newMsg(shard, []byte("new-"+strconv.Itoa(shard)))
		fresh = append(fresh, m)
		want[m.UUID] = true
	}
	publish(t, b, topic, fresh...)

	_, ch2 := subscribe(t, b, topic)
	seen := map[string]bool{}
	redelivered := map[int32]int{}
	for len(seen) < n {
		m := next(t, ch2)
		m.Ack()
		if oldIDs[m.UUID] {
			p, _ := kafka.MessagePartitionFromCtx(m.Context())
			require.True(t, f.RedeliversLastAcked, "acked message %s (%s) delivered again after the restart", m.UUID, m.Payload)
			acked := lastOnPartition[p]
			require.Contains(t, acked[max(0, len(acked)-window):], m.UUID, "redelivered %s is not among the last %d acked messages of partition %d", m.Payload, window, p)
			redelivered[p]++
			require.LessOrEqual(t, redelivered[p], window, "partition %d redelivered more than its last %d acked messages", p, window)
			continue
		}
		require.True(t, want[m.UUID], "unknown message %s", m.UUID)
		require.False(t, seen[m.UUID], "new message %s delivered twice", m.UUID)
		seen[m.UUID] = true
	}
	t.Logf("after restart: %d new messages, %d old ones redelivered (allowed: the last acked per partition)", len(seen), len(redelivered))
}

// testPartitioning: messages with the same shard land on the same partition,
// in publish order, and shards spread over the partitions.
func testPartitioning(t *testing.T, b *broker.Broker, f Features) {
	topic := messages.TopicFetchTasks
	_, ch := subscribe(t, b, topic)
	const shards, rounds = 32, 3
	var all []*message.Message
	for r := range rounds {
		for s := range shards {
			all = append(all, newMsg(s, []byte(fmt.Sprintf("%d/%d", s, r))))
		}
	}
	publish(t, b, topic, all...)

	partitionOf := map[string]int32{}
	roundOf := map[string]int{}
	partitions := map[int32]bool{}
	for range all {
		m := next(t, ch)
		p, ok := kafka.MessagePartitionFromCtx(m.Context())
		require.True(t, ok, "message without a partition")
		require.GreaterOrEqual(t, p, int32(0))
		if f.Partitions > 0 {
			require.Less(t, p, int32(f.Partitions))
		}
		shard := m.Metadata.Get(messages.MetaShard)
		var s, r int
		_, err := fmt.Sscanf(string(m.Payload), "%d/%d", &s, &r)
		require.NoError(t, err)
		if prev, ok := partitionOf[shard]; ok {
			require.Equal(t, prev, p, "shard %s on two partitions", shard)
			require.Equal(t, roundOf[shard]+1, r, "shard %s out of order", shard)
		} else {
			require.Equal(t, 0, r, "shard %s out of order", shard)
		}
		partitionOf[shard] = p
		roundOf[shard] = r
		partitions[p] = true
		m.Ack()
	}
	t.Logf("%d shards over %d partitions", shards, len(partitions))
	if f.Partitions >= 8 {
		assert.GreaterOrEqual(t, len(partitions), f.Partitions/2, "shards do not spread over the partitions")
	}
}

// testInFlight: a subscription delivers f.InFlight messages while none is
// acked; a nacked one comes again; after the acks the rest arrive, each once.
func testInFlight(t *testing.T, b *broker.Broker, f Features) {
	topic := messages.TopicFetchTasks
	_, ch := subscribe(t, b, topic)
	total := f.InFlight + 2
	for i := range total {
		publish(t, b, topic, newMsg(i, []byte(strconv.Itoa(i))))
	}
	held := make([]*message.Message, 0, f.InFlight)
	for range f.InFlight {
		m := next(t, ch)
		require.NoError(t, m.Context().Err(), "a delivered message's context is live until its ack")
		held = append(held, m)
	}
	// Nack one of the held messages: it comes again (possibly after others).
	held[0].Nack()
	seen := map[string]int{}
	for _, m := range held[1:] {
		seen[string(m.Payload)]++
		m.Ack()
	}
	for len(seen) < total {
		m := next(t, ch)
		seen[string(m.Payload)]++
		m.Ack()
	}
	for i := range total {
		assert.Equal(t, 1, seen[strconv.Itoa(i)], "message %d acked once", i)
	}
}

// testParallel: two subscribers of one group each hold a different message,
// un-acked, at the same time; after the acks nothing comes again.
func testParallel(t *testing.T, b *broker.Broker) {
	topic := messages.TopicFetchTasks
	_, ch1 := subscribe(t, b, topic)
	_, ch2 := subscribe(t, b, topic)
	warmUp(t, b, topic, ch1, ch2)

	const n = 64 // over every shard: on Kafka each member owns some
	want := map[string]bool{}
	for shard := range n {
		m := newMsg(shard, []byte(strconv.Itoa(shard)))
		want[m.UUID] = true
		publish(t, b, topic, m)
	}
	var held1, held2 []*message.Message
	deadline := time.After(Timeout)
	for len(held1) == 0 || len(held2) == 0 {
		select {
		case m := <-ch1:
			held1 = append(held1, m)
		case m := <-ch2:
			held2 = append(held2, m)
		case <-deadline:
			t.Fatalf("within %s the subscribers did not both hold a message (first %d, second %d)", Timeout, len(held1), len(held2))
		}
	}
	seen := map[string]int{}
	for _, m := range append(held1, held2...) {
		require.True(t, want[m.UUID], "unknown message %s (%s)", m.UUID, m.Payload)
		require.NoError(t, m.Context().Err(), "a held message's context is live")
		seen[m.UUID]++
		require.Equal(t, 1, seen[m.UUID], "message %s (%s) held by both subscribers at once", m.UUID, m.Payload)
	}
	t.Logf("held at once: first %d, second %d", len(held1), len(held2))
	for _, m := range append(held1, held2...) {
		m.Ack()
	}
	for len(seen) < n {
		var m *message.Message
		select {
		case m = <-ch1:
		case m = <-ch2:
		case <-deadline:
			t.Fatalf("got %d of %d messages within %s", len(seen), n, Timeout)
		}
		require.True(t, want[m.UUID], "unknown message %s (%s)", m.UUID, m.Payload)
		seen[m.UUID]++
		require.Equal(t, 1, seen[m.UUID], "message %s (%s) delivered twice", m.UUID, m.Payload)
		m.Ack()
	}
}

// testOpenTransaction: with a transaction open elsewhere for the whole test
// (and a message of another topic held un-acked), messages published after
// it began are delivered.
func testOpenTransaction(t *testing.T, b *broker.Broker, f Features) {
	f.OpenTransactionElsewhere(t)
	_, tasks := subscribe(t, b, messages.TopicFetchTasks)
	_, results := subscribe(t, b, messages.TopicFetcherResults)
	task := newMsg(1, []byte("task"))
	publish(t, b, messages.TopicFetchTasks, task)
	held := next(t, tasks)
	require.Equal(t, task.UUID, held.UUID)

	for i := range 3 {
		r := newMsg(i, []byte("result-"+strconv.Itoa(i)))
		publish(t, b, messages.TopicFetcherResults, r)
		m := next(t, results)
		require.Equal(t, r.UUID, m.UUID, "result %d", i)
		m.Ack()
	}
	held.Ack()
}

// testNackDelays: as many failing messages as a subscription has in flight,
// published first, are nacked every time they come until every other message
// is through: the others must pass them (a broker that hands a nacked
// message again at once, in its place, stalls here). Then the failing ones
// are acked; every message is acked once.
func testNackDelays(t *testing.T, b *broker.Broker, f Features) {
	topic := messages.TopicFetchTasks
	_, ch := subscribe(t, b, topic)
	failing := map[string]bool{}
	for i := range f.inFlight() {
		m := newMsg(i, []byte("failing-"+strconv.Itoa(i)))
		failing[m.UUID] = true
		publish(t, b, topic, m)
	}
	others := map[string]bool{}
	for i := range 8 {
		m := newMsg(100+i, []byte("other-"+strconv.Itoa(i)))
		others[m.UUID] = true
		publish(t, b, topic, m)
	}
	acked := map[string]int{}
	nacks := 0
	for len(acked) < len(failing)+len(others) {
		m := next(t, ch)
		switch {
		case failing[m.UUID] && len(acked) < len(others) && acked[m.UUID] == 0:
			// Not all others are through (none of the failing is acked
			// before they are): fail again.
			nacks++
			m.Nack()
			continue
		case failing[m.UUID], others[m.UUID]:
		default:
			t.Fatalf("unknown message %s (%s)", m.UUID, m.Payload)
		}
		acked[m.UUID]++
		require.Equal(t, 1, acked[m.UUID], "message %s (%s) acked twice", m.UUID, m.Payload)
		m.Ack()
	}
	t.Logf("%d nacks of %d failing messages while %d others passed", nacks, len(failing), len(others))
}
