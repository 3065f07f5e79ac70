// Package kafkadev runs a local Kafka-protocol broker (franz-go's kfake, in
// memory) for development and tests, where no Apache Kafka is installed. The
// pipeline talks to it through the real watermill-kafka adapter over TCP.
// Nothing is persisted: stopping it loses every topic, message and offset.
package kafkadev

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mockstagram/pipeline/broker"
)

// DefaultPartitions is the partition count of topics that clients create
// without saying how many (the mockstagram broker always says).
const DefaultPartitions = 16

// What a Broker keeps in memory (Broker.Trim).
const (
	// MaxRecordAge is how long a record is kept that some consumer group
	// has not committed past: a stage stopped this long loses what was
	// published for it meanwhile (its minute tasks have expired by then).
	MaxRecordAge = 10 * time.Minute
	// TrimInterval is how often Serve and 'mockstagram kafka-dev' trim.
	TrimInterval = 5 * time.Second
	// segmentBytes is the size at which kfake starts a new in-memory
	// segment of a partition's log. It frees a segment only once every
	// record in it is dropped; with its default, 100 MiB, a partition
	// held up to 100 MiB of consumed records.
	segmentBytes = 1 << 20
)

// Start starts a one-node cluster listening on addr (host:port; port 0 picks
// a free one). The broker advertises the address it listens on, so clients
// must reach it there. It keeps every record until Close, unless trimmed
// (Broker). Close the cluster to stop it.
func Start(addr string, partitions int) (*kfake.Cluster, error) {
	if partitions < 1 {
		partitions = DefaultPartitions
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			// kfake asks for 127.0.0.1:<random>; listen where we were told.
			return net.Listen(network, addr)
		}),
		kfake.DefaultNumPartitions(partitions),
		kfake.BrokerConfigs(map[string]string{
			"message.max.bytes": strconv.Itoa(broker.MaxKafkaMessageBytes),
			// Applied by Cluster.ApplyRetention only (Broker.Trim): kfake
			// runs retention on its own only for topics with a
			// retention config of their own.
			"log.retention.ms":  strconv.FormatInt(MaxRecordAge.Milliseconds(), 10),
			"log.segment.bytes": strconv.Itoa(segmentBytes),
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka dev broker on %s: %w", addr, err)
	}
	return c, nil
}

// Broker is a cluster that bounds its memory: Trim drops the records that
// every consumer group reading their topic has committed past, and those
// older than MaxRecordAge. A real Kafka keeps them on disk until its
// retention; kfake keeps them in memory, over a gigabyte in minutes at a
// million pks a minute.
type Broker struct {
	*kfake.Cluster

	mu     sync.Mutex
	groups map[string]struct{} // every consumer group seen joining or committing, never forgotten
}

// New starts a cluster as Start does and watches for its consumer groups.
func New(addr string, partitions int) (*Broker, error) {
	c, err := Start(addr, partitions)
	if err != nil {
		return nil, err
	}
	b := &Broker{Cluster: c, groups: map[string]struct{}{}}
	// The cluster lists its groups to no one but a client: learn them
	// from the requests that name them, and let the cluster handle those
	// as usual (a control function that returns false only observes).
	for key, group := range map[kmsg.Key]func(kmsg.Request) string{
		kmsg.JoinGroup:              func(r kmsg.Request) string { return r.(*kmsg.JoinGroupRequest).Group },
		kmsg.ConsumerGroupHeartbeat: func(r kmsg.Request) string { return r.(*kmsg.ConsumerGroupHeartbeatRequest).Group },
		kmsg.OffsetCommit:           func(r kmsg.Request) string { return r.(*kmsg.OffsetCommitRequest).Group },
	} {
		c.ControlKey(int16(key), func(r kmsg.Request) (kmsg.Response, error, bool) {
			b.sawGroup(group(r))
			return nil, nil, false
		})
	}
	return b, nil
}

func (b *Broker) sawGroup(group string) {
	b.mu.Lock()
	b.groups[group] = struct{}{}
	b.mu.Unlock()
}

// Trim drops the records older than MaxRecordAge, and on every partition
// of a topic some consumer group reads (it has committed on the topic or a
// member subscribed to it) the records below the lowest offset those groups
// have committed there. A partition where one of them has committed nothing
// yet keeps its records (but for the old ones): that group starts at the
// oldest. A group that has neither joined nor committed yet is not waited
// for.
func (b *Broker) Trim() {
	b.ApplyRetention()
	for topic, readers := range b.readers() {
		for _, p := range b.PartitionInfos(topic) {
			to := p.HighWatermark
			for _, g := range readers {
				to = min(to, g.Commits[topic][p.Partition].Offset) // 0 if none
			}
			if to <= p.LogStartOffset {
				continue
			}
			// Its only errors: the topic is gone, or the log start moved
			// past to meanwhile; either way nothing is left to drop.
			_ = b.DeleteRecords(topic, p.Partition, to)
		}
	}
}

// readers returns the groups that read each topic. A group the cluster
// does not have (yet: its join is seen before it is handled; or no more)
// reads nothing; its name is kept, a few bytes, so that it counts once it
// is there.
func (b *Broker) readers() map[string][]*kfake.GroupInfo {
	b.mu.Lock()
	names := make([]string, 0, len(b.groups))
	for g := range b.groups {
		names = append(names, g)
	}
	b.mu.Unlock()

	readers := map[string][]*kfake.GroupInfo{}
	for _, name := range names {
		g := b.GroupInfo(name)
		if g == nil {
			continue
		}
		topics := map[string]bool{}
		for t := range g.Commits {
			topics[t] = true
		}
		for _, m := range g.Members {
			for _, t := range m.SubscribedTopics {
				topics[t] = true
			}
			for t := range m.Assignment {
				topics[t] = true
			}
		}
		for t := range topics {
			readers[t] = append(readers[t], g)
		}
	}
	return readers
}

// Run trims every interval until ctx is done.
func (b *Broker) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.Trim()
		}
	}
}

// Serve runs a trimmed cluster on addr until ctx is done.
func Serve(ctx context.Context, addr string) error {
	b, err := New(addr, DefaultPartitions)
	if err != nil {
		return err
	}
	defer b.Close()
	b.Run(ctx, TrimInterval)
	return nil
}
