package bench

import (
	"fmt"
	"math"
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

	// Load, when set, makes the wiring a capacity scenario: the simulator
	// serves only Config.Capacity requests per second, queueing the rest
	// like the single-process server (simulate --capacity), the fetcher's
	// adaptive limit is on, and the registry is not Config.Influencers but
	// Load × Capacity × 60 influencers, so that each minute asks for Load
	// times what the simulator can serve in it.
	Load float64
	// Baseline names the scenario whose stored rate this one's is compared
	// with (CapacityReport.OfBaseline); "" = none.
	Baseline string
}

// The capacity scenarios' loads: SustainableLoad of the capacity is what
// the pipeline must store in full; the overload asks OverloadFactor times
// that, and should still store GracefulTarget of the sustainable rate
// (graceful degradation: the API serves its capacity, the rest is missed).
const (
	SustainableLoad = 0.9
	OverloadFactor  = 2
	GracefulTarget  = 0.9
)

// Wirings are every wiring, in the order they run: the deployments users
// run, then the capacity scenarios (the memory wiring against a
// capacity-limited simulator, at the sustainable load and overloaded).
var Wirings = []Wiring{
	{Name: "memory", Broker: config.BrokerGoChannel},
	{Name: "gochannel-pg", Broker: config.BrokerGoChannel, Postgres: true},
	{Name: "kafka-pg", Broker: config.BrokerKafka, Postgres: true},
	{Name: "pg-pg", Broker: config.BrokerPostgres, Postgres: true},
	{Name: "staged-kafka-pg", Broker: config.BrokerKafka, Postgres: true, Staged: true},
	{Name: "capacity-90", Broker: config.BrokerGoChannel, Load: SustainableLoad},
	{Name: "overload-2x", Broker: config.BrokerGoChannel, Load: OverloadFactor * SustainableLoad, Baseline: "capacity-90"},
}

// Scenario reports whether w is a capacity scenario (Load set).
func (w Wiring) Scenario() bool { return w.Load > 0 }

// Influencers is the registry size of w: n, or for a capacity scenario
// Load × capacity × 60 (rounded).
func (w Wiring) Influencers(n int, capacity float64) int {
	if !w.Scenario() {
		return n
	}
	return int(math.Round(w.Load * capacity * 60))
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
	if w.Scenario() {
		return fmt.Sprintf("run, %s, %s, adaptive limit; simulator --capacity C, %.0f%% of C × 60 influencers", broker, store, 100*w.Load)
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
