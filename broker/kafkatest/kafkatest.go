// Package kafkatest gives a test a Kafka-protocol broker of its own.
package kafkatest

import (
	"testing"

	"github.com/mockstagram/pipeline/broker/kafkadev"
)

// Start starts an in-memory one-node Kafka cluster (kfake) on a free
// loopback port, stopped when the test ends, and returns its bootstrap
// addresses. partitions is the count for topics created without one.
func Start(t testing.TB, partitions int) []string {
	t.Helper()
	c, err := kafkadev.Start("127.0.0.1:0", partitions)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}
