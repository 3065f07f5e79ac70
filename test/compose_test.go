package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	composecli "github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/mockstagram/pipeline/cli"
	"github.com/mockstagram/pipeline/config"
)

// Docker cannot run on the CI machine, so docker-compose.yml is kept honest
// by loading it with compose-go, the loader of docker compose itself (schema
// validation, YAML anchors and merges, .env, profiles, interpolation), once
// per install, and checking what it would run against the code.

const (
	image      = "mockstagram:local"
	repoRoot   = ".."
	composeYML = "../docker-compose.yml"
)

// stages are the pipeline's stage services of the Kafka install; the small
// install runs the same as small-<stage>.
var stages = []string{"scheduler", "fetcher", "recorder", "suspicion", "api"}

// loadCompose loads the project as `docker compose [--profile p]... config`
// does: the .env beside the file is read, and profiles given replace its
// COMPOSE_PROFILES (none given: .env's are active).
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := composecli.NewProjectOptions([]string{composeYML},
		composecli.WithWorkingDirectory(repoRoot),
		composecli.WithEnvFiles(),
		composecli.WithDotEnv,
		composecli.WithDefaultProfiles(profiles...),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	return p
}

func installs(t *testing.T) map[string]*types.Project {
	return map[string]*types.Project{"kafka": loadCompose(t), "small": loadCompose(t, "small")}
}

func TestComposeInstalls(t *testing.T) {
	kafka, small := loadCompose(t), loadCompose(t, "small")
	assert.Equal(t, "mockstagram", kafka.Name, "Alloy filters its containers by the project name")

	always := []string{"timescaledb", "migrate", "simulator", "prometheus", "alertmanager", "grafana", "loki", "alloy", "jaeger"}
	kafkaOnly := append([]string{"kafka", "kafdrop", "kafka-exporter"}, stages...)
	var smallOnly []string
	for _, s := range stages {
		smallOnly = append(smallOnly, "small-"+s)
	}
	assert.ElementsMatch(t, append(slices.Clone(always), kafkaOnly...), kafka.ServiceNames(), "docker compose up (.env: COMPOSE_PROFILES=kafka)")
	assert.ElementsMatch(t, append(slices.Clone(always), smallOnly...), small.ServiceNames(), "docker compose --profile small up")

	// Kafka install: the staged deployment on Kafka and TimescaleDB.
	for _, stage := range stages {
		svc := kafka.Services[stage]
		assert.Equal(t, types.ShellCommand{stage}, svc.Command, stage)
		assert.Equal(t, "kafka", env(svc, "MOCKSTAGRAM_BROKER"), stage)
		assert.Equal(t, "kafka:9092", env(svc, "MOCKSTAGRAM_KAFKA_BROKERS"), stage)
		assert.Contains(t, env(svc, "MOCKSTAGRAM_DATABASE_URL"), "@timescaledb:5432/", stage)
		assert.Equal(t, "http://simulator:3000", env(svc, "MOCKSTAGRAM_API_URL"), stage)
		assert.Equal(t, "http://jaeger:4318", env(svc, "MOCKSTAGRAM_OTLP_ENDPOINT"), stage)
		assert.Equal(t, "json", env(svc, "MOCKSTAGRAM_LOG_FORMAT"), stage, "Alloy parses JSON records")
		assert.Equal(t, types.ServiceConditionHealthy, svc.DependsOn["kafka"].Condition, stage)
		assert.Equal(t, types.ServiceConditionCompletedSuccessfully, svc.DependsOn["migrate"].Condition, stage)
	}
	scale := func(name string) int { svc := kafka.Services[name]; return svc.GetScale() }
	assert.Equal(t, 2, scale("scheduler"), "a leader and a hot standby")
	assert.GreaterOrEqual(t, scale("fetcher"), 2, "fetchers are scaled")
	assert.GreaterOrEqual(t, scale("recorder"), 2)
	k := kafka.Services["kafka"]
	assert.Equal(t, "broker,controller", env(k, "KAFKA_PROCESS_ROLES"), "KRaft, no ZooKeeper")
	assert.Equal(t, "/var/lib/kafka/data", env(k, "KAFKA_LOG_DIRS"))
	id, err := base64.RawURLEncoding.DecodeString(env(k, "CLUSTER_ID"))
	assert.NoError(t, err, "a KRaft cluster id is a base64 UUID")
	assert.Len(t, id, 16, "a KRaft cluster id is a base64 UUID")
	assert.Contains(t, mounts(k), "volume kafka:/var/lib/kafka/data")
	assert.Equal(t, "kafka:9092", env(kafka.Services["kafdrop"], "KAFKA_BROKERCONNECT"))
	assert.Contains(t, kafka.Services["kafka-exporter"].Command, "--kafka.server=kafka:9092")

	// Small install: the same stages on the Postgres broker, no Kafka, each
	// also reachable under the stage's name (Prometheus' DNS discovery).
	for _, stage := range stages {
		svc := small.Services["small-"+stage]
		assert.Equal(t, types.ShellCommand{stage}, svc.Command, stage)
		assert.Equal(t, "postgres", env(svc, "MOCKSTAGRAM_BROKER"), stage)
		assert.Empty(t, env(svc, "MOCKSTAGRAM_KAFKA_BROKERS"), stage)
		assert.Contains(t, env(svc, "MOCKSTAGRAM_DATABASE_URL"), "@timescaledb:5432/", stage)
		assert.NotContains(t, svc.DependsOn, "kafka", stage)
		assert.Equal(t, types.ServiceConditionCompletedSuccessfully, svc.DependsOn["migrate"].Condition, stage)
		require.Contains(t, svc.Networks, "default", stage)
		assert.Equal(t, []string{stage}, svc.Networks["default"].Aliases, stage)
	}

	// The database: healthy only once it answers over TCP, published on 6432.
	db := kafka.Services["timescaledb"]
	assert.Contains(t, db.Image, "timescale/timescaledb")
	assert.Contains(t, strings.Join(db.HealthCheck.Test, " "), "pg_isready -h 127.0.0.1 -p 5432")
	assert.Equal(t, []string{"6432:5432"}, portMappings(db))
	assert.Contains(t, mounts(db), "volume timescale:/var/lib/postgresql/data")
	mig := kafka.Services["migrate"]
	assert.Equal(t, types.ShellCommand{"migrate"}, mig.Command)
	assert.Equal(t, "on-failure", mig.Restart, "the one-shot migration is retried")
	assert.Equal(t, types.ServiceConditionHealthy, mig.DependsOn["timescaledb"].Condition)

	assert.True(t, strings.HasPrefix(kafka.Services["jaeger"].Image, "jaegertracing/jaeger:2."), "Jaeger v2")
}

// One image, built once by a service that every install runs; the other
// services that run the binary reuse it and never pull it.
func TestComposeBuildsOneImage(t *testing.T) {
	for name, p := range installs(t) {
		var builders []string
		for _, svc := range p.Services {
			if svc.Build != nil {
				builders = append(builders, svc.Name)
				assert.Equal(t, image, svc.Image, "%s: %s names the image it builds", name, svc.Name)
				assert.Empty(t, svc.Profiles, "%s: the builder runs in every install", name)
				assert.Equal(t, ".", relPath(t, svc.Build.Context), name)
				continue
			}
			if svc.Image == image {
				assert.Equal(t, types.PullPolicyNever, svc.PullPolicy, "%s: %s reuses the built image", name, svc.Name)
			}
		}
		assert.Equal(t, []string{"migrate"}, builders, name)
	}
	raw, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err)
	for _, ignored := range []string{".git", "deploy", "artifacts"} {
		assert.Contains(t, strings.Fields(string(raw)), ignored, ".dockerignore")
	}
}

// Every service runs something the binary knows, with settings config/
// knows, and the binary's services have healthchecks the binary can run.
func TestComposeCommandsAndSettings(t *testing.T) {
	known, err := config.EnvNames()
	require.NoError(t, err)
	require.Contains(t, known, "MOCKSTAGRAM_API_URL")
	for name, p := range installs(t) {
		for _, svc := range p.Services {
			assert.True(t, svc.Image != "" || svc.Build != nil, "%s: %s has neither image nor build", name, svc.Name)
			for k := range svc.Environment {
				if strings.HasPrefix(k, "MOCKSTAGRAM_") {
					assert.Contains(t, known, k, "%s: %s sets an unknown setting", name, svc.Name)
				}
			}
			if svc.Image != image {
				continue
			}
			require.NotEmpty(t, svc.Command, svc.Name)
			assertParses(t, svc.Name, svc.Command)
			if svc.Name == "migrate" {
				continue // one-shot
			}
			require.NotNil(t, svc.HealthCheck, "%s: %s has a healthcheck", name, svc.Name)
			test := svc.HealthCheck.Test
			require.GreaterOrEqual(t, len(test), 3, svc.Name)
			assert.Equal(t, []string{"CMD", "/mockstagram", "healthcheck"}, []string(test[:3]),
				"%s: %s checks itself with the binary (distroless: no shell)", name, svc.Name)
			assertParses(t, svc.Name+" healthcheck", test[2:])
			assert.NotEmpty(t, svc.Restart, svc.Name)
		}
	}
}

// assertParses checks that the binary accepts args (subcommand and flags).
func assertParses(t *testing.T, what string, args []string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(append(slices.Clone(args), "--help"), &stdout, &stderr)
	assert.Equal(t, 0, code, "%s: mockstagram %v: %s", what, args, stderr.String())
}

// The published ports are the UIs README.md lists, once per install.
func TestComposePorts(t *testing.T) {
	want := map[string]map[string][]string{
		"kafka": {"api": {"8080:8080"}, "kafdrop": {"9000:9000"}, "kafka-exporter": {"9308:9308"}},
		"small": {"small-api": {"8080:8080"}},
	}
	for _, m := range want {
		maps.Copy(m, map[string][]string{
			"timescaledb": {"6432:5432"}, "prometheus": {"9090:9090"}, "alertmanager": {"9093:9093"},
			"grafana": {"3001:3000"}, "loki": {"3100:3100"}, "alloy": {"12345:12345"}, "jaeger": {"16686:16686"},
		})
	}
	doc, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for name, p := range installs(t) {
		got := map[string][]string{}
		hostPorts := map[string]string{}
		for _, svc := range p.Services {
			if ports := portMappings(svc); len(ports) > 0 {
				got[svc.Name] = ports
			}
			for _, port := range svc.Ports {
				prev, dup := hostPorts[port.Published]
				assert.False(t, dup, "%s: host port %s published by %s and %s", name, port.Published, prev, svc.Name)
				hostPorts[port.Published] = svc.Name
				assert.Contains(t, string(doc), "localhost:"+port.Published, "README.md names %s's port", svc.Name)
			}
		}
		assert.Equal(t, want[name], got, name)
	}
}

// Stateful services keep their data in named volumes; every bind mount is a
// file or directory of the repository.
func TestComposeVolumes(t *testing.T) {
	data := map[string]string{
		"timescaledb": "timescale:/var/lib/postgresql/data", "kafka": "kafka:/var/lib/kafka/data",
		"prometheus": "prometheus:/prometheus", "alertmanager": "alertmanager:/alertmanager",
		"grafana": "grafana:/var/lib/grafana", "loki": "loki:/loki", "alloy": "alloy:/var/lib/alloy/data",
	}
	for name, p := range installs(t) {
		for _, svc := range p.Services {
			if v, ok := data[svc.Name]; ok {
				assert.Contains(t, mounts(svc), "volume "+v, "%s: %s", name, svc.Name)
			}
			for _, m := range svc.Volumes {
				switch m.Type {
				case types.VolumeTypeVolume:
					assert.Contains(t, p.Volumes, m.Source, "%s: %s uses an undeclared volume", name, svc.Name)
				case types.VolumeTypeBind:
					if m.Source == "/var/run/docker.sock" {
						assert.Equal(t, "alloy", svc.Name, "only the log collector reads the Docker socket")
						assert.True(t, m.ReadOnly)
						continue
					}
					rel := relPath(t, m.Source)
					assert.True(t, strings.HasPrefix(rel, "deploy/"), "%s: %s mounts %s", name, svc.Name, rel)
					_, err := os.Stat(filepath.Join(repoRoot, rel))
					assert.NoError(t, err, "%s: %s mounts %s", name, svc.Name, rel)
					assert.True(t, m.ReadOnly, "%s: %s mounts %s read-only", name, svc.Name, rel)
				default:
					t.Errorf("%s: %s: unexpected mount type %s", name, svc.Name, m.Type)
				}
			}
		}
	}
}

// The log pipeline: Alloy reads this project's containers and pushes to the
// loki service; Grafana's datasources link logs to traces and back.
func TestComposeLogsAndDatasources(t *testing.T) {
	alloy, err := os.ReadFile("../deploy/alloy/config.alloy")
	require.NoError(t, err)
	for _, want := range []string{
		`"unix:///var/run/docker.sock"`, `"com.docker.compose.project=mockstagram"`,
		`"__meta_docker_container_label_com_docker_compose_service"`, `url = "http://loki:3100/loki/api/v1/push"`,
		`stage.json`, `trace_id = "trace_id"`, `stage.structured_metadata`,
	} {
		assert.Contains(t, string(alloy), want, "config.alloy")
	}
	assert.Equal(t, strings.Count(string(alloy), "{"), strings.Count(string(alloy), "}"), "config.alloy blocks are balanced")

	var loki struct {
		Server struct {
			Port int `yaml:"http_listen_port"`
		} `yaml:"server"`
		Limits struct {
			StructuredMetadata bool `yaml:"allow_structured_metadata"`
		} `yaml:"limits_config"`
		Schema struct {
			Configs []struct {
				Store, Schema string
			} `yaml:"configs"`
		} `yaml:"schema_config"`
	}
	readYAML(t, "../deploy/loki/loki.yml", &loki)
	assert.Equal(t, 3100, loki.Server.Port)
	assert.True(t, loki.Limits.StructuredMetadata)
	require.Len(t, loki.Schema.Configs, 1)
	assert.Equal(t, "tsdb", loki.Schema.Configs[0].Store, "structured metadata needs tsdb and v13")
	assert.Equal(t, "v13", loki.Schema.Configs[0].Schema)

	ds := datasources(t)
	require.Contains(t, ds, "prometheus")
	assert.Equal(t, "http://prometheus:9090", ds["prometheus"].URL)
	assert.Equal(t, "http://loki:3100", ds["loki"].URL)
	assert.Equal(t, "http://jaeger:16686", ds["jaeger"].URL)
	assert.Equal(t, "http://alertmanager:9093", ds["alertmanager"].URL)
	fields := ds["loki"].JSONData.DerivedFields
	require.Len(t, fields, 1)
	assert.Equal(t, "jaeger", fields[0].DatasourceUID, "trace_id opens the trace in Jaeger")
	assert.Equal(t, "$${__value.raw}", fields[0].URL, "$ escaped as $$ in provisioning")
	assert.Regexp(t, `trace_id`, fields[0].MatcherRegex)
	assert.Equal(t, "loki", ds["jaeger"].JSONData.TracesToLogsV2.DatasourceUID, "a trace opens its logs")
	assert.Equal(t, "alertmanager", ds["prometheus"].JSONData.AlertmanagerUID)

	var dashboards struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "../deploy/grafana/provisioning/dashboards/mockstagram.yml", &dashboards)
	require.Len(t, dashboards.Providers, 1)
	assert.Contains(t, mounts(loadCompose(t).Services["grafana"]),
		"bind deploy/grafana/dashboards:"+dashboards.Providers[0].Options.Path, "the provider reads the mounted dashboards")
}

type datasource struct {
	UID, Type, URL string
	JSONData       struct {
		AlertmanagerUID string `yaml:"alertmanagerUid"`
		DerivedFields   []struct {
			DatasourceUID string `yaml:"datasourceUid"`
			MatcherRegex  string `yaml:"matcherRegex"`
			URL           string `yaml:"url"`
		} `yaml:"derivedFields"`
		TracesToLogsV2 struct {
			DatasourceUID string `yaml:"datasourceUid"`
		} `yaml:"tracesToLogsV2"`
	} `yaml:"jsonData"`
}

// datasources are Grafana's provisioned datasources by uid.
func datasources(t *testing.T) map[string]datasource {
	t.Helper()
	var f struct {
		Datasources []datasource `yaml:"datasources"`
	}
	readYAML(t, "../deploy/grafana/provisioning/datasources/datasources.yml", &f)
	out := map[string]datasource{}
	for _, d := range f.Datasources {
		require.NotEmpty(t, d.UID, "every datasource has a fixed uid")
		out[d.UID] = d
	}
	return out
}

// `docker compose config` where Compose v2 is installed (never on CI, which
// has no Docker; the file needs v2.27.1+: profiles chosen by .env).
func TestDockerComposeConfig(t *testing.T) {
	var compose []string
	for _, c := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		out, err := exec.Command(c[0], append(slices.Clone(c[1:]), "version", "--short")...).Output()
		if err == nil && strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "2.") {
			compose = c
			break
		}
	}
	if compose == nil {
		t.Skip("Docker Compose v2 is not installed; TestCompose* load the file with compose-go instead")
	}
	for _, profiles := range [][]string{nil, {"--profile", "small"}} {
		args := append(append(slices.Clone(compose[1:]), "--file", composeYML), profiles...)
		args = append(args, "config", "--quiet")
		out, err := exec.Command(compose[0], args...).CombinedOutput()
		assert.NoError(t, err, "%v: %s", args, out)
	}
}

func env(svc types.ServiceConfig, name string) string {
	if v := svc.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func portMappings(svc types.ServiceConfig) []string {
	var out []string
	for _, p := range svc.Ports {
		out = append(out, p.Published+":"+strconv.FormatUint(uint64(p.Target), 10))
	}
	return out
}

// mounts are a service's mounts as "volume name:target" or "bind
// repo-relative-path:target".
func mounts(svc types.ServiceConfig) []string {
	var out []string
	for _, m := range svc.Volumes {
		src := m.Source
		if m.Type == types.VolumeTypeBind {
			if rel, err := filepath.Rel(absRoot(), src); err == nil && !strings.HasPrefix(rel, "..") {
				src = rel
			}
		}
		out = append(out, m.Type+" "+src+":"+m.Target)
	}
	return out
}

func absRoot() string {
	abs, _ := filepath.Abs(repoRoot)
	return abs
}

// relPath is an absolute path the loader resolved, relative to the repository.
func relPath(t *testing.T, path string) string {
	t.Helper()
	rel, err := filepath.Rel(absRoot(), path)
	require.NoError(t, err)
	return rel
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, v), path)
}
