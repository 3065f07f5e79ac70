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

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mockstagram/pipeline/broker"
)

// DefaultPartitions is the partition count of topics that clients create
// without saying how many (the mockstagram broker always says).
const DefaultPartitions = 16

// Start starts a one-node cluster listening on addr (host:port; port 0 picks
// a free one). The broker advertises the address it listens on, so clients
// must reach it there. Close the cluster to stop it.
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
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka dev broker on %s: %w", addr, err)
	}
	return c, nil
}

// Serve runs a cluster on addr until ctx is done.
func Serve(ctx context.Context, addr string) error {
	c, err := Start(addr, DefaultPartitions)
	if err != nil {
		return err
	}
	defer c.Close()
	<-ctx.Done()
	return nil
}
