package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
)

// standAloneNeeds is what a stage that runs alone needs of the broker,
// written once: it talks to the other stages only through the broker.
const standAloneNeeds = broker.CrossProcess

// Stage returns the roles of the stand-alone stage command name
// (scheduler, fetcher, recorder, suspicion or api), or why it cannot run
// alone on cfg: stages talk to each other only through a shared broker,
// and share data only through a shared database.
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
	if name != "api" {
		if err := broker.Supports(cfg.Broker, standAloneNeeds); err != nil {
			return Roles{}, fmt.Errorf("%s alone needs a shared broker (--broker %s): %w",
				name, strings.Join(broker.With(standAloneNeeds), " or "), err)
		}
	}
	if name != "fetcher" && cfg.DatabaseURL == "" {
		return Roles{}, fmt.Errorf("%s alone needs --database-url (MOCKSTAGRAM_DATABASE_URL): the in-memory store lives only inside 'run'", name)
	}
	return roles, nil
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
