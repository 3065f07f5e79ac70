package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/middleware"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	panicErr := wmw.RecoveredPanicError{V: "boom", Stacktrace: "stack"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"malformed", messages.ErrMalformed, true},
		{"wrapped malformed", fmt.Errorf("decode task: %w", messages.ErrMalformed), true},
		{"joined malformed", errors.Join(errors.New("other"), messages.ErrMalformed), true},
		{"decoded malformed", decodeErr(t), true},
		{"recovered panic", panicErr, true},
		{"error from Recoverer", recovered(), true},
		{"wrapped recovered panic", fmt.Errorf("handler: %w", panicErr), true},
		{"transient", errors.New("connection refused"), false},
		{"context deadline", context.DeadlineExceeded, false},
		{"text mentions malformed", errors.New(messages.ErrMalformed.Error()), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, middleware.IsPermanent(tc.err))
		})
	}
}

// recovered is the error watermill's Recoverer makes of a panic.
func recovered() error {
	_, err := wmw.Recoverer(func(*message.Message) ([]*message.Message, error) { panic("boom") })(
		message.NewMessage(watermill.NewUUID(), nil))
	return err
}

func decodeErr(t *testing.T) error {
	t.Helper()
	_, err := messages.DecodeTask([]byte("{"))
	require.Error(t, err)
	return err
}

// countingPublisher records what is published, synchronously, and forwards
// it to the wrapped publisher.
type countingPublisher struct {
	message.Publisher
	mu        sync.Mutex
	published map[string]int
}

func (p *countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	p.published[topic] += len(msgs)
	p.mu.Unlock()
	return p.Publisher.Publish(topic, msgs...)
}

func (p *countingPublisher) count(topic string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.published[topic]
}

const poisonTopic = "test_dlq"

type fixture struct {
	pub    *countingPublisher
	poison <-chan *message.Message
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	logger := watermill.NewSlogLogger(slog.New(slog.DiscardHandler))
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	t.Cleanup(func() { require.NoError(t, pubSub.Close()) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	poison, err := pubSub.Subscribe(ctx, poisonTopic)
	require.NoError(t, err)
	return fixture{pub: &countingPublisher{Publisher: pubSub, published: map[string]int{}}, poison: poison}
}

// wrap applies the chain in the order the router does: the first
// middleware is the outermost.
func wrap(t *testing.T, pub message.Publisher, retry middleware.Retry, h message.HandlerFunc) message.HandlerFunc {
	t.Helper()
	mws, err := middleware.Chain(slog.New(slog.DiscardHandler), pub, poisonTopic, retry, middleware.Redelivery{})
	require.NoError(t, err)
	require.Len(t, mws, 6)
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case msg := <-ch:
		msg.Ack()
		return msg
	case <-time.After(10 * time.Second):
		t.Fatal("no message on the poison topic")
		return nil
	}
}

var fastRetry = middleware.Retry{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}

func TestChainPoisonsPermanentErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		handler    func() error
		wantReason string
		wantClass  string
	}{
		{"malformed", func() error {
			return fmt.Errorf("decode: %w", messages.ErrMalformed)
		}, "decode: malformed message", middleware.ClassMalformed},
		{"decode error", func() error {
			_, err := messages.DecodeTask([]byte(`{"minute":"2026-11-25T12:00:01Z","shard":0,"deadline":"2026-11-25T12:01:00Z","pks":[1]}`))
			return err
		}, "malformed message: task minute missing or not minute-aligned", middleware.ClassMalformed},
		{"panic", func() error { panic("boom") }, "panic occurred: \"boom\"", middleware.ClassPanic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var calls atomic.Int32
			h := wrap(t, f.pub, fastRetry, func(*message.Message) ([]*message.Message, error) {
				calls.Add(1)
				return nil, tc.handler()
			})
			in := message.NewMessage(watermill.NewUUID(), []byte(`{"payload":1}`))
			in.Metadata.Set(messages.MetaShard, "7")
			in.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

			produced, err := h(in)
			require.NoError(t, err, "a poisoned message is acked")
			assert.Empty(t, produced)
			assert.Equal(t, int32(1), calls.Load(), "permanent errors are not retried")
			assert.Equal(t, 1, f.pub.count(poisonTopic))

			got := receive(t, f.poison)
			assert.Equal(t, in.UUID, got.UUID)
			assert.Equal(t, `{"payload":1}`, string(got.Payload))
			assert.Equal(t, "7", got.Metadata.Get(messages.MetaShard))
			assert.Contains(t, got.Metadata.Get(wmw.ReasonForPoisonedKey), tc.wantReason)
			assert.Equal(t, got.Metadata.Get(wmw.ReasonForPoisonedKey), got.Metadata.Get(messages.MetaReason))
			assert.Equal(t, tc.wantClass, got.Metadata.Get(messages.MetaClass))
			assert.Equal(t, "1", got.Metadata.Get(messages.MetaAttempts))
			assert.Equal(t, messages.DeadLetterPoisoned, got.Metadata.Get(messages.MetaDeadLetterKind))
			assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", got.Metadata.Get("traceparent"),
				"the trace context travels with the dead letter")
		})
	}
}

func TestChainCountsAttemptsOfAPoisonedMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var calls atomic.Int32
	h := wrap(t, f.pub, fastRetry, func(*message.Message) ([]*message.Message, error) {
		if calls.Add(1) < 3 {
			return nil, errors.New("database down")
		}
		return nil, fmt.Errorf("decode: %w", messages.ErrMalformed)
	})
	_, err := h(message.NewMessage(watermill.NewUUID(), []byte("x")))
	require.NoError(t, err)
	got := receive(t, f.poison)
	assert.Equal(t, "3", got.Metadata.Get(messages.MetaAttempts), "two transient failures, then the permanent one")
	assert.Equal(t, middleware.ClassMalformed, got.Metadata.Get(messages.MetaClass))
	assert.Equal(t, "decode: malformed message", got.Metadata.Get(messages.MetaReason))
}

func TestChainRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		maxRetries int
	}{
		{"no retries", 0},
		{"one retry", 1},
		{"three retries", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			retry := fastRetry
			retry.MaxRetries = tc.maxRetries
			transient := errors.New("database down")
			var calls atomic.Int32
			h := wrap(t, f.pub, retry, func(*message.Message) ([]*message.Message, error) {
				calls.Add(1)
				return nil, transient
			})
			_, err := h(message.NewMessage(watermill.NewUUID(), []byte("x")))
			require.ErrorIs(t, err, transient, "the error is returned so the message is nacked")
			assert.Equal(t, int32(tc.maxRetries+1), calls.Load())
			assert.Equal(t, 0, f.pub.count(poisonTopic), "transient errors are not poisoned")
		})
	}
}

func TestChainRecoversFromTransientError(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var calls atomic.Int32
	h := wrap(t, f.pub, fastRetry, func(msg *message.Message) ([]*message.Message, error) {
		if calls.Add(1) < 3 {
			return nil, errors.New("broker hiccup")
		}
		return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte("out"))}, nil
	})
	in := message.NewMessage(watermill.NewUUID(), []byte("in"))
	wmw.SetCorrelationID("corr-1", in)
	produced, err := h(in)
	require.NoError(t, err)
	assert.Equal(t, int32(3), calls.Load())
	require.Len(t, produced, 1)
	assert.Equal(t, "corr-1", wmw.MessageCorrelationID(produced[0]), "produced messages keep the correlation id")
	assert.Equal(t, 0, f.pub.count(poisonTopic))
}

func TestChainRejectsBadPoisonTopic(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, err := middleware.Chain(slog.New(slog.DiscardHandler), f.pub, "", fastRetry, middleware.Redelivery{})
	require.Error(t, err)
}
