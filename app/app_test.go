package app

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/store"
)

// Every role set's graph is complete: each constructor's dependencies are
// provided (fx.ValidateApp runs no constructor).
func TestValidateApp(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	pg := cfg
	pg.Broker, pg.DatabaseURL = config.BrokerPostgres, "postgres://h/db"
	identity := func(s store.Store) store.Store { return s }
	for _, tc := range []struct {
		name  string
		cfg   config.Config
		roles Roles
		opts  []Option
	}{
		{"run", cfg, AllRoles(), nil},
		{"scheduler", pg, Roles{Scheduler: true}, nil},
		{"fetcher", pg, Roles{Fetcher: true}, nil},
		{"recorder", pg, Roles{Recorder: true}, nil},
		{"suspicion", pg, Roles{Suspicion: true}, nil},
		{"api", pg, Roles{API: true}, nil},
		{"bench", cfg, AllRoles(), []Option{WrapStore(identity), Quiet()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.NoError(t, fx.ValidateApp(build(tc.cfg, tc.roles, tc.opts...), fx.NopLogger))
		})
	}
}

func TestStage(t *testing.T) {
	t.Parallel()
	kafka := config.Default()
	kafka.Broker, kafka.KafkaBrokers, kafka.DatabaseURL = config.BrokerKafka, []string{"k:9092"}, "postgres://h/db"
	pg := kafka
	pg.Broker = config.BrokerPostgres
	mem := kafka
	mem.DatabaseURL = ""
	for _, tc := range []struct {
		stage   string
		cfg     config.Config
		want    Roles
		wantErr string
	}{
		{"scheduler", pg, Roles{Scheduler: true}, ""},
		{"fetcher", mem, Roles{Fetcher: true}, ""},
		{"recorder", kafka, Roles{Recorder: true}, ""},
		{"suspicion", kafka, Roles{Suspicion: true}, ""},
		{"api", config.Config{DatabaseURL: "postgres://h/db", Broker: config.BrokerGoChannel}, Roles{API: true}, ""},
		{"fetcher", config.Default(), Roles{}, "fetcher alone needs a shared broker (--broker kafka or postgres): the gochannel broker lives inside one process"},
		{"suspicion", config.Default(), Roles{}, "suspicion alone needs a shared broker (--broker kafka or postgres): the gochannel broker lives inside one process"},
		{"suspicion", pg, Roles{Suspicion: true}, ""},
		{"recorder", mem, Roles{}, "recorder alone needs --database-url (MOCKSTAGRAM_DATABASE_URL): the in-memory store lives only inside 'run'"},
		{"bench", kafka, Roles{}, `unknown stage "bench"`},
	} {
		t.Run(tc.stage+" "+tc.cfg.Broker, func(t *testing.T) {
			t.Parallel()
			roles, err := Stage(tc.stage, tc.cfg)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, roles)
		})
	}
}

// On the postgres broker a suspicion task's delivery is bounded so that it
// ends within the ack deadline (2 min): the budget, a request's timeout, the
// save of the answers and a margin.
func TestSuspicionTaskBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		broker  string
		timeout time.Duration
		want    time.Duration
	}{
		{config.BrokerPostgres, 30 * time.Second, 50 * time.Second},
		{config.BrokerPostgres, 5 * time.Second, 75 * time.Second},
		{config.BrokerPostgres, 2 * time.Minute, 10 * time.Second},
		{config.BrokerKafka, 30 * time.Second, 0},
		{config.BrokerGoChannel, 30 * time.Second, 0},
	} {
		cfg := config.Default()
		cfg.Broker, cfg.SuspicionTimeout = tc.broker, tc.timeout
		assert.Equal(t, tc.want, suspicionTaskBudget(cfg), "%s, timeout %s", tc.broker, tc.timeout)
	}
}
