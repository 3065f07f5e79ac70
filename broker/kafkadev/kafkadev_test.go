package kafkadev_test

import (
	"context"
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
