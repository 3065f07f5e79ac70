package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/metrics"
)

type fakeQueues struct {
	stats []metrics.QueueStat
	err   error
	calls int
}

func (f *fakeQueues) QueueStats(ctx context.Context) ([]metrics.QueueStat, error) {
	f.calls++
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	return f.stats, f.err
}

func TestQueueCollector(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		src  fakeQueues
		want string
	}{
		{"two groups", fakeQueues{stats: []metrics.QueueStat{
			{Topic: "influencer_fetch_tasks", ConsumerGroup: "mockstagram-fetcher", Depth: 12, OldestAge: 1500 * time.Millisecond},
			{Topic: "fetcher_results", ConsumerGroup: "mockstagram-recorder"},
		}}, `
# HELP mockstagram_broker_queue_depth Messages of a topic not yet acked by a consumer group (in flight included).
# TYPE mockstagram_broker_queue_depth gauge
mockstagram_broker_queue_depth{consumer_group="mockstagram-fetcher",topic="influencer_fetch_tasks"} 12
mockstagram_broker_queue_depth{consumer_group="mockstagram-recorder",topic="fetcher_results"} 0
# HELP mockstagram_broker_queue_oldest_age_seconds Age of the oldest message of a topic not yet acked by a consumer group; 0 when none.
# TYPE mockstagram_broker_queue_oldest_age_seconds gauge
mockstagram_broker_queue_oldest_age_seconds{consumer_group="mockstagram-fetcher",topic="influencer_fetch_tasks"} 1.5
mockstagram_broker_queue_oldest_age_seconds{consumer_group="mockstagram-recorder",topic="fetcher_results"} 0
# HELP mockstagram_broker_queue_stats_errors_total Scrapes whose queue statistics could not be read.
# TYPE mockstagram_broker_queue_stats_errors_total counter
mockstagram_broker_queue_stats_errors_total 0
`},
		{"no queues (gochannel, kafka)", fakeQueues{}, `
# HELP mockstagram_broker_queue_stats_errors_total Scrapes whose queue statistics could not be read.
# TYPE mockstagram_broker_queue_stats_errors_total counter
mockstagram_broker_queue_stats_errors_total 0
`},
		{"query fails", fakeQueues{err: errors.New("connection refused")}, `
# HELP mockstagram_broker_queue_stats_errors_total Scrapes whose queue statistics could not be read.
# TYPE mockstagram_broker_queue_stats_errors_total counter
mockstagram_broker_queue_stats_errors_total 1
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := tc.src
			c := metrics.NewQueueCollector(&src, time.Second)
			require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(tc.want)))
			assert.Equal(t, 1, src.calls, "one query per scrape")
		})
	}
}
