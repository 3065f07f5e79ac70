package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/mockstagram/pipeline/app"
)

// kafkaExporterMetrics are the metrics of danielqsj/kafka-exporter that the
// rules and the dashboard may use (its README, "Metrics").
var kafkaExporterMetrics = []string{
	"kafka_brokers", "kafka_topic_partitions", "kafka_topic_partition_current_offset",
	"kafka_consumergroup_current_offset", "kafka_consumergroup_current_offset_sum",
	"kafka_consumergroup_lag", "kafka_consumergroup_lag_sum", "kafka_consumergroup_members",
}

// prometheusBuiltins are series Prometheus makes itself.
var prometheusBuiltins = []string{"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}

// exportedMetrics are the metric names a running pipeline exports: the
// registry of the application started as 'run' does (gochannel and memory),
// described after start, so Watermill's publisher and subscriber metrics
// (registered when the router decorates them) and the broker's queue
// collector are in it. Histograms add their _bucket, _sum and _count.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	cfg := testConfigStore(t, "memory")
	var reg *prometheus.Registry
	a := fxtest.New(t, app.Options(cfg, app.AllRoles()), fx.Populate(&reg))
	a.RequireStart()
	defer a.RequireStop()

	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	out := map[string]bool{}
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		require.NotNil(t, m, d.String())
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			out[m[1]+suffix] = true
		}
	}
	for _, name := range append(slices.Clone(kafkaExporterMetrics), prometheusBuiltins...) {
		out[name] = true
	}
	return out
}

// promql substitutes Grafana's interval variables so that a panel's query
// parses as PromQL.
func promql(expr string) string {
	return strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h").Replace(expr)
}

// selectedMetrics are the metric names expr selects.
func selectedMetrics(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.ParseExpr(promql(expr))
	require.NoError(t, err, expr)
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			require.NotEmpty(t, vs.Name, "%s: select metrics by name", expr)
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile("../deploy/grafana/dashboards/mockstagram.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d))
	require.NotEmpty(t, d.Panels)
	return d
}

// Every metric an alert rule or a Grafana panel queries exists: in the
// registry of a running pipeline, or kafka-exporter's, or Prometheus' own.
// And every metric of the pipeline is on the dashboard.
func TestRulesAndDashboardQueryExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	for _, name := range []string{"mockstagram_samples_stored_total", "mockstagram_broker_queue_depth",
		"mockstagram_watermill_handler_execution_time_seconds_bucket", "mockstagram_watermill_publish_time_seconds_count",
		"mockstagram_watermill_subscriber_messages_received_total"} {
		require.Contains(t, exported, name, "the registry of a running pipeline")
	}

	var rules rulesFile
	readYAML(t, "../deploy/prometheus/rules.yml", &rules)
	require.NotEmpty(t, rules.Groups)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			for _, name := range selectedMetrics(t, r.Expr) {
				assert.True(t, exported[name], "alert %s queries unknown metric %s", r.Alert, name)
			}
			assert.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], r.Alert)
			assert.Equal(t, "README.md#"+strings.ToLower(r.Alert), r.Annotations["runbook_url"], r.Alert)
		}
	}
	// The alerts the operations issue asks for.
	for _, a := range []string{"FreshnessLagHigh", "MissedSamplesHigh", "DeadLettersGrowing", "StageDown", "StageMissing",
		"FetchBreakerOpen", "KafkaConsumerLagGrowing", "BrokerQueueBacklog", "BrokerQueueStale"} {
		assert.True(t, alerts[a], "rules.yml has %s", a)
	}
	doc, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for a := range alerts {
		assert.Regexp(t, `(?m)^#+ `+a+`$`, string(doc), "README.md has the runbook of %s", a)
	}

	d := readDashboard(t)
	ds := datasources(t)
	onDashboard := map[string]bool{}
	logPanels := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		require.Contains(t, ds, p.Datasource.UID, "panel %q uses a provisioned datasource", p.Title)
		assert.Equal(t, ds[p.Datasource.UID].Type, p.Datasource.Type, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		if p.Datasource.Type == "loki" {
			logPanels++
			for _, tg := range p.Targets {
				assert.Regexp(t, `^\{(service|level|stage)=~"[^"]+"(, (service|level|stage)=~"[^"]+")*\}`, tg.Expr, p.Title)
			}
			continue
		}
		for _, tg := range p.Targets {
			for _, name := range selectedMetrics(t, tg.Expr) {
				assert.True(t, exported[name], "panel %q queries unknown metric %s", p.Title, name)
				onDashboard[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	assert.Positive(t, logPanels, "the dashboard shows the stages' logs (Loki)")

	// Every pipeline metric has a panel, but these.
	notOnDashboard := []string{"mockstagram_broker_queue_stats_errors_total"}
	var missing []string
	for name := range exported {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(name, "mockstagram_") && name == base && !onDashboard[base] && !slices.Contains(notOnDashboard, base) {
			missing = append(missing, base)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "pipeline metrics without a Grafana panel")
}

// Prometheus scrapes every stage with a stage label, under the names the
// compose services (and the small install's aliases) have.
func TestPrometheusScrapesEveryStage(t *testing.T) {
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
			DNS     []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
			Relabel []struct {
				SourceLabels []string `yaml:"source_labels"`
				TargetLabel  string   `yaml:"target_label"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "../deploy/prometheus/prometheus.yml", &cfg)
	assert.Equal(t, []string{"rules.yml"}, cfg.RuleFiles)
	require.Len(t, cfg.Alerting.Alertmanagers, 1)
	assert.Equal(t, []string{"alertmanager:9093"}, cfg.Alerting.Alertmanagers[0].StaticConfigs[0].Targets)
	jobs := map[string]int{}
	for i, j := range cfg.ScrapeConfigs {
		jobs[j.JobName] = i
	}
	require.Contains(t, jobs, "mockstagram")
	job := cfg.ScrapeConfigs[jobs["mockstagram"]]
	require.Len(t, job.DNS, 1)
	assert.ElementsMatch(t, stages, job.DNS[0].Names, "every stage is scraped")
	assert.Equal(t, 8080, job.DNS[0].Port)
	require.Len(t, job.Relabel, 1)
	assert.Equal(t, []string{"__meta_dns_name"}, job.Relabel[0].SourceLabels)
	assert.Equal(t, "stage", job.Relabel[0].TargetLabel)
	require.Contains(t, jobs, "kafka-exporter")
	assert.Equal(t, []string{"kafka-exporter"}, cfg.ScrapeConfigs[jobs["kafka-exporter"]].DNS[0].Names)
	assert.Equal(t, 9308, cfg.ScrapeConfigs[jobs["kafka-exporter"]].DNS[0].Port)

	// The names resolve in both installs (services or network aliases).
	for name, p := range installs(t) {
		resolvable := map[string]bool{}
		for _, svc := range p.Services {
			resolvable[svc.Name] = true
			for _, n := range svc.Networks {
				if n != nil {
					for _, a := range n.Aliases {
						resolvable[a] = true
					}
				}
			}
		}
		for _, s := range stages {
			assert.True(t, resolvable[s], "%s install: %s resolves", name, s)
		}
		assert.True(t, resolvable["alertmanager"], name)
	}
}

// tool finds a Prometheus tool: $ENV, else on PATH. Without it the test is
// skipped, except in CI, where .ci/run installs it.
func tool(t *testing.T, name, envVar string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (set %s or put it on PATH; .ci/run installs it from Debian's package)", name, envVar)
	}
	t.Skipf("%s not found: set %s or put it on PATH (Debian: apt-get download the package and dpkg -x it, as .ci/run does)", name, envVar)
	return ""
}

// promtool checks prometheus.yml (and the rule file it names), the rules,
// and runs the rules' unit tests (rules_test.yml).
func TestPromtool(t *testing.T) {
	promtool := tool(t, "promtool", "PROMTOOL")
	dir := filepath.Join(repoRoot, "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "rules.yml"},
		{"test", "rules", "rules_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "promtool %v:\n%s", args, out)
		assert.Contains(t, string(out), "SUCCESS", "promtool %v", args)
	}
}

// amtool checks the Alertmanager configuration.
func TestAmtool(t *testing.T) {
	amtool := tool(t, "amtool", "AMTOOL")
	out, err := exec.Command(amtool, "check-config", filepath.Join(repoRoot, "deploy", "alertmanager", "alertmanager.yml")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "SUCCESS")
	assert.Contains(t, string(out), "1 receivers")
}
