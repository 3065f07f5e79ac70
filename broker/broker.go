// Package broker builds the Watermill publisher and subscriber for the
// configured broker. Handlers never know which one they run on.
package broker

import (
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/mockstagram/pipeline/config"
)

// PubSub is a publisher and a subscriber of one broker.
type PubSub struct {
	Publisher  message.Publisher
	Subscriber message.Subscriber
}

// Close closes both sides.
func (p PubSub) Close() error {
	perr := p.Publisher.Close()
	serr := p.Subscriber.Close()
	if perr != nil {
		return perr
	}
	return serr
}

// New builds the broker named by cfg.Broker.
func New(cfg config.Config, logger *slog.Logger) (PubSub, error) {
	wl := watermill.NewSlogLogger(logger)
	switch cfg.Broker {
	case config.BrokerGoChannel:
		ch := NewGoChannel(wl)
		return PubSub{Publisher: ch, Subscriber: ch}, nil
	default:
		return PubSub{}, fmt.Errorf("broker %q is not available in this build yet", cfg.Broker)
	}
}

// NewGoChannel is the in-memory broker: one process, nothing durable.
func NewGoChannel(logger watermill.LoggerAdapter) *gochannel.GoChannel {
	return gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, logger)
}
