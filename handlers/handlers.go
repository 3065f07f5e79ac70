// Package handlers holds the pipeline's stages as plain structs: the
// scheduler (a producer loop), the fetcher and the recorder (Watermill
// handler methods). They depend on small interfaces declared here, never on
// fx, the HTTP server or a concrete store.
package handlers

import (
	"github.com/ThreeDotsLabs/watermill/message"
)

// Publisher publishes messages to a topic (message.Publisher without Close).
type Publisher interface {
	Publish(topic string, msgs ...*message.Message) error
}
