package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueStat is the backlog of one consumer group on one topic of a broker
// that keeps its queues where they can be counted (postgres).
type QueueStat struct {
	Topic, ConsumerGroup string
	// Depth is how many messages are not acked yet (in flight included).
	Depth int64
	// OldestAge is the age of the oldest of them; 0 when Depth is 0.
	OldestAge time.Duration
}

// QueueSource reports the backlogs (the broker).
type QueueSource interface {
	QueueStats(ctx context.Context) ([]QueueStat, error)
}

// QueueCollector asks its source on every scrape. A failed query yields no
// queue gauges for that scrape and counts in
// mockstagram_broker_queue_stats_errors_total.
type QueueCollector struct {
	src     QueueSource
	timeout time.Duration
	depth   *prometheus.Desc
	age     *prometheus.Desc
	errors  prometheus.Counter
}

// NewQueueCollector returns the collector of src's backlogs; each scrape's
// query is bounded by timeout.
func NewQueueCollector(src QueueSource, timeout time.Duration) *QueueCollector {
	labels := []string{"topic", "consumer_group"}
	return &QueueCollector{
		src:     src,
		timeout: timeout,
		depth:   prometheus.NewDesc("mockstagram_broker_queue_depth", "Messages of a topic not yet acked by a consumer group (in flight included).", labels, nil),
		age:     prometheus.NewDesc("mockstagram_broker_queue_oldest_age_seconds", "Age of the oldest message of a topic not yet acked by a consumer group; 0 when none.", labels, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_broker_queue_stats_errors_total",
			Help: "Scrapes whose queue statistics could not be read."}),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.age
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	stats, err := c.src.QueueStats(ctx)
	if err != nil {
		c.errors.Inc()
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.Depth), s.Topic, s.ConsumerGroup)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, s.OldestAge.Seconds(), s.Topic, s.ConsumerGroup)
	}
	c.errors.Collect(ch)
}
