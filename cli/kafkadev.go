package cli

import (
	"fmt"
	"strings"

	"github.com/mockstagram/pipeline/broker/kafkadev"
)

// KafkaDevCmd is 'mockstagram kafka-dev': an in-memory Kafka-protocol broker
// for trying MOCKSTAGRAM_BROKER=kafka without installing Kafka.
type KafkaDevCmd struct {
	Addr       string `env:"MOCKSTAGRAM_KAFKA_DEV_ADDR" default:"127.0.0.1:9092" help:"Listen address; clients must reach the broker at this address (it is the one advertised)."`
	Partitions int    `env:"MOCKSTAGRAM_KAFKA_DEV_PARTITIONS" default:"16" help:"Partitions of topics created without a count (mockstagram creates its own with --kafka-partitions)."`
}

// Run serves the broker until interrupted, dropping the records every
// consumer group has committed past and those older than
// kafkadev.MaxRecordAge.
func (c KafkaDevCmd) Run(e env) error {
	cluster, err := kafkadev.New(c.Addr, c.Partitions)
	if err != nil {
		return err
	}
	defer cluster.Close()
	addrs := strings.Join(cluster.ListenAddrs(), ",")
	fmt.Fprintf(e.stdout, "Kafka dev broker (kfake, in memory, nothing persisted) listening on %s\n", addrs)
	fmt.Fprintf(e.stdout, "Try: MOCKSTAGRAM_BROKER=kafka MOCKSTAGRAM_KAFKA_BROKERS=%s mockstagram run\n", addrs)
	cluster.Run(e.ctx, kafkadev.TrimInterval) // until interrupted
	return nil
}
