package handlers_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/metrics"
)

func TestMain(m *testing.M) {
	// fasthttp's idle-connection janitor sleeps until its next check,
	// then ends by itself once the pool is empty.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

// minute0 is the minute the tests schedule, fetch and record.
var minute0 = time.Date(2025, 3, 14, 9, 26, 0, 0, time.UTC)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newMetrics() *metrics.Pipeline { return metrics.New(prometheus.NewRegistry()) }

// waitCtx bounds every wait of a test, so a bug fails it instead of hanging.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// published is one message a fakePublisher received.
type published struct {
	topic string
	msg   *message.Message
	at    time.Time // the fake clock's time at Publish (zero without a clock)
}

// fakePublisher records what is published; it fails the first failN calls.
type fakePublisher struct {
	clock clockwork.Clock
	err   error // returned by failing calls

	// slow, with a fake clock, is how long each call takes on it.
	slow time.Duration

	mu    sync.Mutex
	failN int
	calls int
	msgs  []published
}

var _ handlers.Publisher = (*fakePublisher)(nil)

func (p *fakePublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failN > 0 {
		p.failN--
		return p.err
	}
	var at time.Time
	if p.clock != nil {
		at = p.clock.Now()
	}
	for _, m := range msgs {
		p.msgs = append(p.msgs, published{topic: topic, msg: m, at: at})
	}
	if fc, ok := p.clock.(*clockwork.FakeClock); ok && p.slow > 0 {
		fc.Advance(p.slow)
	}
	return nil
}

func (p *fakePublisher) published() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.msgs...)
}
