package test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/metrics"
)

// docker compose cannot run on the CI machine, so the compose file is kept
// honest by parsing it: every MOCKSTAGRAM_* variable must be a real setting,
// and every service that runs the binary names a known subcommand.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	require.NotEmpty(t, compose.Services)

	known, err := config.EnvNames()
	require.NoError(t, err)
	require.Contains(t, known, "MOCKSTAGRAM_API_URL")
	subcommands := []string{"run", "scheduler", "fetcher", "recorder", "suspicion", "api", "simulate", "migrate"}

	for name, svc := range compose.Services {
		assert.True(t, svc.Image != "" || svc.Build != nil, "service %s has neither image nor build", name)
		for k := range svc.Environment {
			if strings.HasPrefix(k, "MOCKSTAGRAM_") {
				assert.Contains(t, known, k, "service %s sets an unknown setting", name)
			}
		}
		if svc.Build != nil && len(svc.Command) > 0 {
			assert.True(t, slices.Contains(subcommands, svc.Command[0]), "service %s runs unknown subcommand %q", name, svc.Command[0])
		}
	}
}

// The staged services run on Kafka and TimescaleDB, fetchers are scaled, and
// the provisioned Grafana dashboard only queries metrics the code exports.
func TestComposeStagesAndDashboard(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Deploy      struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for _, stage := range []string{"scheduler", "fetcher", "recorder", "suspicion", "api"} {
		svc, ok := compose.Services[stage]
		require.True(t, ok, "service %s", stage)
		assert.Equal(t, []string{stage}, svc.Command)
		assert.Equal(t, "kafka", svc.Environment["MOCKSTAGRAM_BROKER"], stage)
		assert.Equal(t, "kafka:9092", svc.Environment["MOCKSTAGRAM_KAFKA_BROKERS"], stage)
		assert.Contains(t, svc.Environment["MOCKSTAGRAM_DATABASE_URL"], "@timescaledb:5432/", stage)
	}
	assert.GreaterOrEqual(t, compose.Services["fetcher"].Deploy.Replicas, 2, "fetchers are scaled")
	// Traces go to the Jaeger service over OTLP/HTTP (port 4318).
	require.Contains(t, compose.Services, "jaeger")
	assert.Contains(t, compose.Services["jaeger"].Image, "jaegertracing/")
	assert.Equal(t, "true", compose.Services["jaeger"].Environment["COLLECTOR_OTLP_ENABLED"])
	for _, stage := range []string{"scheduler", "fetcher", "recorder", "api"} {
		assert.Equal(t, "http://jaeger:4318", compose.Services[stage].Environment["MOCKSTAGRAM_OTLP_ENDPOINT"], stage)
	}
	assert.Contains(t, compose.Services["timescaledb"].Image, "timescale/timescaledb")
	assert.Contains(t, compose.Services["kafka"].Image, "kafka")
	assert.Equal(t, "broker,controller", compose.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"], "KRaft, no ZooKeeper")

	rec := &describingRegisterer{}
	metrics.New(rec)
	exported := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				exported[m[1]] = true
			}
		}
	}
	require.Contains(t, exported, "mockstagram_samples_stored_total")
	dash, err := os.ReadFile("../deploy/grafana/dashboards/mockstagram.json")
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(dash, &d))
	require.NotEmpty(t, d.Panels)
	names := regexp.MustCompile(`mockstagram_[a-z_]+`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, n := range names.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				assert.True(t, exported[base], "dashboard queries unknown metric %s", n)
			}
		}
	}
}

// describingRegisterer keeps the collectors registered on it.
type describingRegisterer struct{ collectors []prometheus.Collector }

func (r *describingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *describingRegisterer) Unregister(prometheus.Collector) bool { return false }
