// Package kafkatest gives a test a Kafka-protocol broker of its own.
package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/mockstagram/pipeline/broker/kafkadev"
)

// Start starts an in-memory one-node Kafka cluster (kfake) on a free
// loopback port, stopped when the test ends, and returns its bootstrap
// addresses. partitions is the count for topics created without one. The
// cluster drops consumed records every few milliseconds, far more often
// than kafka-dev, so that tests see what dropping them could break.
func Start(t testing.TB, partitions int) []string {
	t.Helper()
	b, err := kafkadev.New("127.0.0.1:0", partitions)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	trimmed := make(chan struct{})
	go func() {
		defer close(trimmed)
		b.Run(ctx, 10*time.Millisecond)
	}()
	t.Cleanup(func() {
		cancel()
		<-trimmed
		b.Close()
	})
	return b.ListenAddrs()
}
