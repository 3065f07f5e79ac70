package app

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
)

// What the stages need of the broker, written once. A stage that runs alone
// talks to the others only through the broker; the suspicion checks wait
// seconds per is_suspicious answer.
const (
	standAloneNeeds = broker.CrossProcess
	suspicionNeeds  = broker.LongHandlers
)

// Stage returns the roles of the stand-alone stage command name
// (scheduler, fetcher, recorder, suspicion or api), or why it cannot run
// alone on cfg: stages talk to each other only through a shared broker,
// share data only through a shared database, and the suspicion checker
// needs a broker that lets a handler run for seconds.
func Stage(name string, cfg config.Config) (Roles, error) {
	var roles Roles
	switch name {
	case "scheduler":
		roles.Scheduler = true
	case "fetcher":
		roles.Fetcher = true
	case "recorder":
		roles.Recorder = true
	case "suspicion":
		roles.Suspicion = true
	case "api":
		roles.API = true
	default:
		return Roles{}, fmt.Errorf("unknown stage %q", name)
	}
	needs := roles.brokerNeeds()
	if name != "api" {
		all := append([]broker.Capability{standAloneNeeds}, needs...)
		if err := broker.Supports(cfg.Broker, standAloneNeeds); err != nil {
			return Roles{}, fmt.Errorf("%s alone needs a shared broker (%s): %w", name, brokerFlag(all), err)
		}
		needs = all
	}
	for _, c := range needs {
		if err := broker.Supports(cfg.Broker, c); err != nil {
			return Roles{}, fmt.Errorf("%s needs %s: %w", name, brokerFlag(needs), err)
		}
	}
	if name != "fetcher" && cfg.DatabaseURL == "" {
		return Roles{}, fmt.Errorf("%s alone needs --database-url (MOCKSTAGRAM_DATABASE_URL): the in-memory store lives only inside 'run'", name)
	}
	return roles, nil
}

// brokerNeeds is what the stages of r need of the broker besides carrying
// messages.
func (r Roles) brokerNeeds() []broker.Capability {
	if r.Suspicion {
		return []broker.Capability{suspicionNeeds}
	}
	return nil
}

// brokerFlag names the brokers that have every capability of needs, as a
// flag: "--broker kafka or postgres".
func brokerFlag(needs []broker.Capability) string {
	return "--broker " + strings.Join(broker.With(needs...), " or ")
}

// suspicionTaskBudget is handlers.SuspicionConfig.TaskBudget on cfg's
// broker: on a broker that takes a message back after a deadline (postgres:
// 2 min), the budget, then a request in flight (its timeout), then storing
// the answers and a margin fit in the deadline, so a long suspicion task is
// continued in a new task instead of being cut and redelivered. At least
// 10 s (with a request timeout too long for the deadline the delivery may
// still be cut: its answers are stored, the redelivery asks the rest); 0 on
// a broker without a deadline.
func suspicionTaskBudget(cfg config.Config) time.Duration {
	d := broker.HandlerDeadline(cfg.Broker)
	if d == 0 {
		return 0
	}
	const margin = 10 * time.Second
	return max(d-cfg.SuspicionTimeout-handlers.SuspicionSaveTimeout-margin, margin)
}

// suspicionOn says whether this process runs the suspicion checks (and,
// as the scheduler, their rounds). They are switched off, with a warning,
// on a broker without the capability they need; a stand-alone suspicion
// stage is refused instead (Stage).
type suspicionOn bool

func newSuspicionOn(cfg config.Config, roles Roles, logger *slog.Logger) suspicionOn {
	if !roles.Scheduler && !roles.Suspicion {
		return false
	}
	if err := broker.Supports(cfg.Broker, suspicionNeeds); err != nil {
		logger.Warn("suspicion checks are off: a handler waits seconds for is_suspicious",
			"broker", cfg.Broker, "use", brokerFlag([]broker.Capability{suspicionNeeds}), "reason", err)
		return false
	}
	return true
}
