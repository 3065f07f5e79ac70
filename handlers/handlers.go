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

// truncate bounds s to n bytes (plus "...") for reasons stored as text.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
