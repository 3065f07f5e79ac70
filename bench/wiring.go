package bench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mockstagram/pipeline/config"
)

// Wiring is one way of deploying the pipeline that the benchmark measures.
type Wiring struct {
	Name     string // what --wirings selects
	Broker   string // config.Broker*
	Postgres bool   // the store is PostgreSQL (else memory)
	// Staged runs separate scheduler, fetcher, recorder and api processes;
	// otherwise one 'run' process holds every stage.
	Staged bool
}

// Wirings are every wiring, in the order they run.
var Wirings = []Wiring{
	{Name: "memory", Broker: config.BrokerGoChannel},
	{Name: "gochannel-pg", Broker: config.BrokerGoChannel, Postgres: true},
	{Name: "kafka-pg", Broker: config.BrokerKafka, Postgres: true},
	{Name: "pg-pg", Broker: config.BrokerPostgres, Postgres: true},
	{Name: "staged-kafka-pg", Broker: config.BrokerKafka, Postgres: true, Staged: true},
}

// Kafka reports whether the wiring needs a Kafka broker (kafka-dev).
func (w Wiring) Kafka() bool { return w.Broker == config.BrokerKafka }

// Describe is the wiring in words, for the report.
func (w Wiring) Describe() string {
	store := "memory store"
	if w.Postgres {
		store = "Postgres store"
	}
	broker := map[string]string{config.BrokerGoChannel: "gochannel", config.BrokerKafka: "Kafka (kfake)", config.BrokerPostgres: "Postgres broker"}[w.Broker]
	if w.Staged {
		return "scheduler+fetcher+recorder+api processes, " + broker + ", " + store
	}
	return "run, " + broker + ", " + store
}

// ParseWirings selects wirings by comma-separated names ("all" or "" =
// every wiring), in the order of Wirings, each once.
func ParseWirings(s string) ([]Wiring, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return slices.Clone(Wirings), nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.ContainsFunc(Wirings, func(w Wiring) bool { return w.Name == name }) {
			return nil, fmt.Errorf("unknown wiring %q (want all or some of %s)", name, wiringNames())
		}
		want[name] = true
	}
	var out []Wiring
	for _, w := range Wirings {
		if want[w.Name] {
			out = append(out, w)
		}
	}
	return out, nil
}

func wiringNames() string {
	names := make([]string, len(Wirings))
	for i, w := range Wirings {
		names[i] = w.Name
	}
	return strings.Join(names, ",")
}
