package broker

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// GoChannelInFlight is how many messages one gochannel subscription hands to
// its handler before any is acked: as many as a Kafka subscription of the
// default 16 partitions. gochannel itself delivers one message at a time per
// subscription and waits for its ack, so one slow shard-minute (a pk that
// times out) would hold up every shard behind it.
const GoChannelInFlight = 16

// inFlight turns a subscription that delivers one message at a time and
// waits for its ack (gochannel) into one with up to n un-acked messages.
//
// Each upstream message is acked upstream as soon as a copy of it has been
// handed on, and the copy's nack redelivers the copy here (a fresh copy, as
// gochannel does), so the handler still sees at-least-once delivery. That
// early upstream ack loses nothing a crash would not lose anyway: gochannel
// keeps messages in this process's memory only. Shutdown (ctx done) stops
// delivery; messages not yet acked are dropped, as gochannel drops them.
func inFlight(ctx context.Context, in <-chan *message.Message, n int) <-chan *message.Message {
	out := make(chan *message.Message)
	slots := make(chan struct{}, n)
	var wg sync.WaitGroup
	go func() {
		defer func() {
			wg.Wait()
			close(out)
		}()
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			var msg *message.Message
			select {
			case m, ok := <-in:
				if !ok {
					<-slots
					return
				}
				msg = m
				// gochannel sends the next message only after this ack.
				msg.Ack()
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				deliver(ctx, msg, out)
			}()
		}
	}()
	return out
}

// deliver hands copies of msg to out until one is acked (or ctx ends). A
// nacked copy is followed by a fresh copy.
func deliver(ctx context.Context, msg *message.Message, out chan<- *message.Message) {
	for {
		c := msg.Copy()
		// Not msg's context: gochannel cancels it once msg is acked, and msg
		// was acked upstream already.
		c.SetContext(ctx)
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
		select {
		case <-c.Acked():
			return
		case <-c.Nacked():
		case <-ctx.Done():
			return
		}
	}
}
