package middleware_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/middleware"
)

var errOutage = errors.New("store down")

func givenUpCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "given_up"}, []string{"handler", "class"})
}

// wrapRedelivery is wrap with a redelivery limit.
func wrapRedelivery(t *testing.T, pub message.Publisher, rd middleware.Redelivery, h message.HandlerFunc) message.HandlerFunc {
	t.Helper()
	mws, err := middleware.Chain(slog.New(slog.DiscardHandler), pub, poisonTopic, fastRetry, rd)
	require.NoError(t, err)
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// TestRedeliveryLimit delivers the same message (same UUID, as every
// broker redelivers it) to a handler that always fails transiently.
func TestRedeliveryLimit(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 12, 0, 10, 0, time.UTC)
	transient := errors.New("serialization failure")
	for _, tc := range []struct {
		name       string
		rd         middleware.Redelivery
		err        error
		advance    time.Duration // fake clock step after each delivery
		deliveries int           // deliveries made
		givenUpAt  int           // delivery that is given up (0: none)
		class      string
	}{
		{name: "given up at the limit", rd: middleware.Redelivery{Limit: 3},
			err: transient, deliveries: 5, givenUpAt: 3, class: middleware.ClassRedeliveryLimit},
		{name: "no limit", rd: middleware.Redelivery{},
			err: transient, deliveries: 20},
		{name: "the limit waits for MinFailing", rd: middleware.Redelivery{Limit: 2, MinFailing: time.Minute},
			err: transient, advance: 20 * time.Second, deliveries: 6, givenUpAt: 4, class: middleware.ClassRedeliveryLimit},
		{name: "an outage is not counted", rd: middleware.Redelivery{Limit: 1, Excused: func(err error) bool { return errors.Is(err, errOutage) }},
			err: errOutage, deliveries: 10},
		{name: "expired at its deadline", rd: middleware.Redelivery{Limit: 100,
			Deadline: func(*message.Message) (time.Time, bool) { return start.Add(60 * time.Second), true }},
			err: transient, advance: 20 * time.Second, deliveries: 5, givenUpAt: 4, class: middleware.ClassExpired},
		{name: "an outage past the deadline is not given up", rd: middleware.Redelivery{Limit: 1,
			Excused:  func(err error) bool { return errors.Is(err, errOutage) },
			Deadline: func(*message.Message) (time.Time, bool) { return start, true }},
			err: errOutage, deliveries: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			clock := clockwork.NewFakeClockAt(start)
			counter := givenUpCounter()
			tc.rd.Clock, tc.rd.GivenUp = clock, counter
			var calls atomic.Int32
			h := wrapRedelivery(t, f.pub, tc.rd, func(*message.Message) ([]*message.Message, error) {
				calls.Add(1)
				return nil, tc.err
			})
			uuid := watermill.NewUUID()
			for d := 1; d <= tc.deliveries; d++ {
				msg := message.NewMessage(uuid, []byte("payload"))
				msg.Metadata.Set(messages.MetaShard, "3")
				_, err := h(msg)
				if d == tc.givenUpAt {
					require.NoError(t, err, "delivery %d: given up, so acked", d)
					break
				}
				require.ErrorIs(t, err, tc.err, "delivery %d: nacked", d)
				clock.Advance(tc.advance)
			}
			wantDelivered := tc.deliveries
			if tc.givenUpAt > 0 {
				wantDelivered = tc.givenUpAt
			}
			assert.Equal(t, int32(wantDelivered*(fastRetry.MaxRetries+1)), calls.Load(), "each delivery is retried")
			if tc.givenUpAt == 0 {
				assert.Zero(t, f.pub.count(poisonTopic))
				assert.Zero(t, testutil.CollectAndCount(counter))
				return
			}
			assert.Equal(t, 1, f.pub.count(poisonTopic))
			got := receive(t, f.poison)
			assert.Equal(t, uuid, got.UUID)
			assert.Equal(t, "payload", string(got.Payload))
			assert.Equal(t, "3", got.Metadata.Get(messages.MetaShard))
			assert.Equal(t, tc.class, got.Metadata.Get(messages.MetaClass))
			assert.Equal(t, messages.DeadLetterPoisoned, got.Metadata.Get(messages.MetaDeadLetterKind))
			assert.Contains(t, got.Metadata.Get(messages.MetaReason), tc.err.Error())
			assert.Contains(t, got.Metadata.Get(messages.MetaReason), tc.class)
			assert.Equal(t, 1.0, testutil.ToFloat64(counter.WithLabelValues("", tc.class)))
		})
	}
}

// TestRedeliveryCountsPerMessage: a success forgets the count, other
// messages have their own, and the LRU forgets the oldest.
func TestRedeliveryCountsPerMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	fail := map[string]bool{}
	h := wrapRedelivery(t, f.pub, middleware.Redelivery{Limit: 2, Entries: 2}, func(msg *message.Message) ([]*message.Message, error) {
		if fail[msg.UUID] {
			return nil, errors.New("transient")
		}
		return nil, nil
	})
	deliver := func(uuid string) error {
		_, err := h(message.NewMessage(uuid, []byte("x")))
		return err
	}
	fail["a"], fail["b"], fail["c"] = true, true, true
	require.Error(t, deliver("a"))
	fail["a"] = false
	require.NoError(t, deliver("a"), "a success")
	fail["a"] = true
	require.Error(t, deliver("a"), "counted from 1 again")
	require.Error(t, deliver("b"))
	require.Error(t, deliver("c"), "evicts a, the least recently failed")
	require.Error(t, deliver("a"), "a counts from 1 again")
	assert.Zero(t, f.pub.count(poisonTopic))
	require.NoError(t, deliver("c"), "c's second failure: given up")
	assert.Equal(t, 1, f.pub.count(poisonTopic))
	assert.Equal(t, "c", receive(t, f.poison).UUID)
}

// TestRedeliveryUnblocksTheMessagesBehind runs a router on gochannel, which
// redelivers a nacked message before the next one: a message that always
// fails transiently is given up after the limit, and the one behind it is
// handled.
func TestRedeliveryUnblocksTheMessagesBehind(t *testing.T) {
	t.Parallel()
	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	defer func() { require.NoError(t, pubSub.Close()) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	poison, err := pubSub.Subscribe(ctx, poisonTopic)
	require.NoError(t, err)

	router, err := message.NewRouter(message.RouterConfig{}, logger)
	require.NoError(t, err)
	counter := givenUpCounter()
	mws, err := middleware.Chain(slog.New(slog.DiscardHandler), pubSub, poisonTopic, fastRetry,
		middleware.Redelivery{Limit: 4, GivenUp: counter})
	require.NoError(t, err)
	var deliveries atomic.Int32
	handled := make(chan string, 1)
	h := router.AddConsumerHandler("recorder", "in", pubSub, func(msg *message.Message) error {
		if string(msg.Payload) == "poisoned" {
			deliveries.Add(1)
			return errors.New("deadlock detected")
		}
		handled <- string(msg.Payload)
		return nil
	})
	h.AddMiddleware(mws...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, router.Run(ctx))
	}()
	defer func() {
		require.NoError(t, router.Close())
		<-done
	}()
	<-router.Running()

	require.NoError(t, pubSub.Publish("in", message.NewMessage(watermill.NewUUID(), []byte("poisoned"))))
	require.NoError(t, pubSub.Publish("in", message.NewMessage(watermill.NewUUID(), []byte("behind"))))
	select {
	case got := <-handled:
		assert.Equal(t, "behind", got)
	case <-time.After(10 * time.Second):
		t.Fatal("the message behind the failing one was never handled")
	}
	got := receive(t, poison)
	assert.Equal(t, "poisoned", string(got.Payload))
	assert.Equal(t, middleware.ClassRedeliveryLimit, got.Metadata.Get(messages.MetaClass))
	assert.Equal(t, "recorder", got.Metadata.Get(messages.MetaStage))
	assert.Equal(t, int32(4*(fastRetry.MaxRetries+1)), deliveries.Load(), "four deliveries, each retried")
	assert.Equal(t, 1.0, testutil.ToFloat64(counter.WithLabelValues("recorder", middleware.ClassRedeliveryLimit)))
}
