package broker_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
)

func TestSupports(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		broker  string
		c       broker.Capability
		wantErr string
	}{
		{config.BrokerGoChannel, broker.CrossProcess, "the gochannel broker lives inside one process"},
		{config.BrokerKafka, broker.CrossProcess, ""},
		{config.BrokerPostgres, broker.CrossProcess, ""},
	} {
		err := broker.Supports(tc.broker, tc.c)
		if tc.wantErr == "" {
			assert.NoError(t, err, "%s %d", tc.broker, tc.c)
		} else {
			assert.EqualError(t, err, tc.wantErr, "%s %d", tc.broker, tc.c)
		}
	}
	assert.Equal(t, []string{"gochannel", "kafka", "postgres"}, broker.With())
	assert.Equal(t, []string{"kafka", "postgres"}, broker.With(broker.CrossProcess))
	assert.Equal(t, 2*time.Minute, broker.HandlerDeadline(config.BrokerPostgres))
	assert.Zero(t, broker.HandlerDeadline(config.BrokerKafka))
	assert.Zero(t, broker.HandlerDeadline(config.BrokerGoChannel))
}
