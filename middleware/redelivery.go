package middleware

import (
	"container/list"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mockstagram/pipeline/messages"
)

// Classes of a message given up after transient failures (the "class"
// metadata of its dead letter).
const (
	ClassRedeliveryLimit = "redelivery-limit"
	ClassExpired         = "expired"
)

// ErrGivenUp marks a message the redelivery limit moves to the dead-letter
// topic: IsPermanent holds for it, so the poison queue publishes it.
var ErrGivenUp = errors.New("message given up after transient failures")

// Redelivery caps the redeliveries of a message that keeps failing
// transiently, so that it cannot hold back the messages behind it (one
// un-acked message per Kafka partition; gochannel resends a nacked message
// before the next) for ever.
//
// The count lives in the handler's process, keyed by the message UUID, in a
// bounded LRU (Entries): it is the one thing every broker keeps across
// redeliveries. Metadata set by a handler does not survive a Kafka
// redelivery (the original record is read again), and watermill exposes no
// delivery count of Kafka or the Postgres broker. So a process restart, or
// a message that moves to another consumer of the group, starts counting
// anew: the cap is per process, which still bounds how long one message
// blocks one consumer.
//
// A delivery counts when the handler (after Retry) fails with an error
// that is neither permanent (the poison queue takes it) nor Excused.
// Excused errors are those of a dependency that is down for every message
// (the store does not answer): the message is not at fault, the messages
// behind it would fail the same way, and the pipeline must catch up by
// itself when the dependency is back, so it is nacked without counting.
//
// The message is given up, moved to the dead-letter topic with the class
// in its metadata and counted in GivenUp, when a counted delivery
//   - happens at or after the message's deadline (Deadline, class
//     expired): its minute is over, so it holds back nothing any longer
//     than its deadline; or
//   - is at least the Limit-th counted delivery and the first one was at
//     least MinFailing ago (class redelivery-limit): a short burst of
//     failures (a recorder connection dropping) is retried, a message that
//     keeps failing is not.
type Redelivery struct {
	Limit      int           // counted deliveries before the message is given up; 0: no limit
	MinFailing time.Duration // and for at least this long (pipeline clock)
	// Deadline returns the message's deadline, if it has one.
	Deadline func(msg *message.Message) (time.Time, bool)
	// Excused reports whether err is a dependency outage (not counted).
	Excused func(err error) bool
	Clock   clockwork.Clock
	// GivenUp counts given-up messages by handler and class (nil: none).
	GivenUp *prometheus.CounterVec
	// Entries bounds the messages counted at once (default 4096).
	Entries int
}

// failing is the count of one message.
type failing struct {
	uuid       string
	deliveries int
	first      time.Time
}

// redeliveries is the LRU of failing messages.
type redeliveries struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *failing, most recent first
	byID  map[string]*list.Element
}

// fail counts a failed delivery of uuid at now and returns its count.
func (r *redeliveries) fail(uuid string, now time.Time) failing {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[uuid]; ok {
		f := e.Value.(*failing)
		f.deliveries++
		r.order.MoveToFront(e)
		return *f
	}
	f := &failing{uuid: uuid, deliveries: 1, first: now}
	r.byID[uuid] = r.order.PushFront(f)
	for r.order.Len() > r.max {
		oldest := r.order.Back()
		r.order.Remove(oldest)
		delete(r.byID, oldest.Value.(*failing).uuid)
	}
	return *f
}

// forget drops uuid's count.
func (r *redeliveries) forget(uuid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[uuid]; ok {
		r.order.Remove(e)
		delete(r.byID, uuid)
	}
}

// Middleware returns the middleware; each call has its own counts.
func (rd Redelivery) Middleware() message.HandlerMiddleware {
	entries := rd.Entries
	if entries <= 0 {
		entries = 4096
	}
	clock := rd.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	counts := &redeliveries{max: entries, order: list.New(), byID: make(map[string]*list.Element)}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil || IsPermanent(err) {
				counts.forget(msg.UUID)
				return out, err
			}
			if rd.Excused != nil && rd.Excused(err) {
				return out, err
			}
			now := clock.Now()
			f := counts.fail(msg.UUID, now)
			class, why := "", ""
			if rd.Deadline != nil {
				if deadline, ok := rd.Deadline(msg); ok && !now.Before(deadline) {
					class, why = ClassExpired, fmt.Sprintf("failed transiently at %s, after its deadline %s",
						now.UTC().Format(time.RFC3339), deadline.UTC().Format(time.RFC3339))
				}
			}
			if class == "" && rd.Limit > 0 && f.deliveries >= rd.Limit && now.Sub(f.first) >= rd.MinFailing {
				class, why = ClassRedeliveryLimit, fmt.Sprintf("failed transiently in %d deliveries since %s",
					f.deliveries, f.first.UTC().Format(time.RFC3339))
			}
			if class == "" {
				return out, err
			}
			counts.forget(msg.UUID)
			handler := message.HandlerNameFromCtx(msg.Context())
			given := fmt.Errorf("%w (%s): %s: %w", ErrGivenUp, class, why, err)
			msg.Metadata.Set(messages.MetaReason, given.Error())
			msg.Metadata.Set(messages.MetaClass, class)
			msg.Metadata.Set(messages.MetaStage, handler)
			msg.Metadata.Set(messages.MetaDeadLetterKind, messages.DeadLetterPoisoned)
			if rd.GivenUp != nil {
				rd.GivenUp.WithLabelValues(handler, class).Inc()
			}
			return nil, given
		}
	}
}
