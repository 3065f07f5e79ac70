// Package config holds the one configuration of every mockstagram process:
// defaults, loading from flags, MOCKSTAGRAM_* environment variables and an
// optional YAML file, and validation that reports every problem at once.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/mockstagramapi"
)

// Broker names accepted by MOCKSTAGRAM_BROKER.
const (
	BrokerGoChannel = "gochannel"
	BrokerKafka     = "kafka"
	BrokerPostgres  = "postgres"
)

// Simulator modes for the built-in simulator.
const (
	SimulatorRandomWalk    = "random-walk"
	SimulatorDeterministic = "deterministic"
)

// Log formats accepted by MOCKSTAGRAM_LOG_FORMAT: auto is text when the
// log's output (stderr) is a terminal, JSON otherwise.
const (
	LogFormatAuto = "auto"
	LogFormatJSON = "json"
	LogFormatText = "text"
)

// Config is shared by every subcommand. Flag names map to environment
// variables by upper-casing and prefixing: --api-url is MOCKSTAGRAM_API_URL.
// In a config file the keys are the flag names (api-url: ...).
type Config struct {
	APIURL              string        `name:"api-url" help:"Base URL of the Mockstagram API. Unset: 'run' starts the built-in simulator, 'fetcher' uses http://127.0.0.1:3000."`
	DatabaseURL         string        `name:"database-url" help:"PostgreSQL URL (postgres://...). Empty: in-memory store."`
	Broker              string        `name:"broker" default:"gochannel" help:"Message broker: gochannel, kafka or postgres."`
	KafkaBrokers        []string      `name:"kafka-brokers" sep:"," help:"Kafka bootstrap brokers (host:port, comma-separated)."`
	HTTPAddr            string        `name:"http-addr" default:":8080" help:"Listen address of the HTTP API and dashboard."`
	CORSOrigins         []string      `name:"cors-origins" sep:"," help:"Origins allowed to call the HTTP API from a browser (CORS), comma-separated: https://host[:port], https://*.example.com or *; empty: no CORS headers."`
	PprofAddr           string        `name:"pprof-addr" help:"Listen address of Go's pprof endpoints (/debug/pprof/); empty: off. Keep it on a loopback or admin network."`
	Shards              int           `name:"shards" default:"1024" help:"Number of shards pks are hashed into; one task per shard and minute."`
	RegistryBootstrap   string        `name:"registry-bootstrap" default:"1000000-1000999" help:"pk range tracked at the first start of an empty registry (FROM-TO); empty: none."`
	AdminToken          string        `name:"admin-token" help:"Bearer token for admin endpoints; empty disables them."`
	SpreadWindow        time.Duration `name:"spread-window" default:"45s" help:"Shard s is published at s/shards of this window after the minute starts."`
	DeadlineGrace       time.Duration `name:"deadline-grace" default:"0s" help:"Extra time after the end of minute M during which a fetch still counts for M."`
	FetchConcurrency    int           `name:"fetch-concurrency" default:"256" help:"Maximum in-flight API requests per fetcher process."`
	FetchTimeout        time.Duration `name:"fetch-timeout" default:"5s" help:"Timeout of one API request."`
	FetchRetryInitial   time.Duration `name:"fetch-retry-initial" default:"100ms" help:"First backoff interval between fetch retries (exponential, with jitter)."`
	FetchRetryMax       time.Duration `name:"fetch-retry-max" default:"5s" help:"Largest backoff interval between fetch retries."`
	FetchRateLimit      float64       `name:"fetch-rate-limit" default:"0" help:"Most API requests per second from this fetcher process (all shards together); 0 = unlimited."`
	FetchAdaptive       bool          `name:"fetch-adaptive" default:"true" negatable:"" help:"Adapt the in-flight API requests to what the API takes (between fetch-adaptive-min and fetch-concurrency), from their latency and overload answers."`
	FetchAdaptiveMin    int           `name:"fetch-adaptive-min" default:"4" help:"Smallest adaptive limit of in-flight API requests."`
	FetchAdaptiveRTT    time.Duration `name:"fetch-adaptive-rtt" default:"25ms" help:"API latency the adaptive limit always accepts; above it (and above twice the no-load latency) the limit shrinks."`
	BreakerFailures     int           `name:"breaker-failures" default:"50" help:"Consecutive API failures (connection errors, timeouts, 5xx) that open the fetcher's circuit breaker; 0 disables it."`
	BreakerCooldown     time.Duration `name:"breaker-cooldown" default:"5s" help:"How long the open circuit breaker fails requests fast before it lets a probe through."`
	RecorderRetries     int           `name:"recorder-retries" default:"8" help:"Attempts to store a result batch before it is nacked for redelivery."`
	RedeliveryLimit     int           `name:"redelivery-limit" default:"10" help:"Deliveries of a message that keeps failing transiently (while its dependencies are up) before it goes to its dead-letter topic (class redelivery-limit)."`
	ReconcileLookback   time.Duration `name:"reconcile-lookback" default:"1h" help:"How far back the scheduler's leader records minutes nobody scheduled as missed (class not-scheduled)."`
	SimulatorMode       string        `name:"simulator-mode" default:"random-walk" help:"Mode of the built-in simulator: random-walk or deterministic."`
	LogLevel            string        `name:"log-level" default:"info" help:"debug, info, warn or error."`
	LogFormat           string        `name:"log-format" default:"auto" help:"auto (text when stderr is a terminal, else json), json or text."`
	ShutdownTimeout     time.Duration `name:"shutdown-timeout" default:"30s" help:"How long a stopping process waits for in-flight work."`
	Retention           time.Duration `name:"retention" default:"168h" help:"How long minute points are kept (whole days are dropped); hourly and daily rollups are kept."`
	DeadLetterRetention time.Duration `name:"dead-letter-retention" default:"168h" help:"How long archived dead letters are kept (replayed or not), from their receive time; older ones are deleted hourly in batches."`
	MissedRetention     time.Duration `name:"missed-retention" default:"168h" help:"How long missed (pk, minute) entries are kept, from their minute; older ones are deleted hourly in batches (never kept past the minute points' retention)."`
	PostgresWriters     int           `name:"postgres-writers" default:"2" help:"With a database-url: batch writes of the recorder that run at once in this process (more wait; the server's CPU, not their number, bounds the write rate)."`

	// Suspicion checks (SPEC §1.6).
	SuspicionInterval    time.Duration `name:"suspicion-interval" default:"24h" help:"How often each influencer's is_suspicious answer is refreshed; the checks of a round are spread over it."`
	SuspicionConcurrency int           `name:"suspicion-concurrency" default:"128" help:"Maximum in-flight is_suspicious requests per suspicion process (the API takes 1-10 s each)."`
	SuspicionTimeout     time.Duration `name:"suspicion-timeout" default:"30s" help:"Timeout of one is_suspicious request."`
	SuspicionAttempts    int           `name:"suspicion-attempts" default:"3" help:"Requests per pk at most when is_suspicious fails in a retryable way (timeout, 5xx, 429)."`

	SimulatorSuspiciousDelayMin time.Duration `name:"simulator-suspicious-delay-min" default:"1s" help:"Built-in simulator: shortest is_suspicious latency."`
	SimulatorSuspiciousDelayMax time.Duration `name:"simulator-suspicious-delay-max" default:"10s" help:"Built-in simulator: longest is_suspicious latency (0 with min 0: instant)."`

	// Tracing (package tracing).
	OTLPEndpoint     string  `name:"otlp-endpoint" help:"OTLP/HTTP collector base URL for traces (e.g. http://jaeger:4318); empty: spans are not exported (trace ids are still propagated and logged)."`
	TraceSampleRatio float64 `name:"trace-sample-ratio" default:"1" help:"Fraction of shard-minute traces recorded (0..1); a message keeps its trace's decision."`

	// Broker tuning (package broker).
	KafkaVersion         string        `name:"kafka-version" default:"3.7.0" help:"Kafka protocol version the client speaks (X.Y.Z); at most the brokers' version."`
	KafkaPartitions      int           `name:"kafka-partitions" default:"16" help:"Partitions of each topic created at start when missing (existing topics are left as they are)."`
	PostgresPollInterval time.Duration `name:"postgres-poll-interval" default:"250ms" help:"With broker postgres: how often an idle subscriber polls its topic table."`
	PostgresInFlight     int           `name:"postgres-in-flight" default:"8" help:"With broker postgres: messages one subscription works on at once (each holds a connection of the subscriber's pool while its handler runs)."`
}

// Default returns the configuration with every default applied; a test keeps
// it equal to the defaults in the struct tags.
func Default() Config {
	return Config{
		Broker:              BrokerGoChannel,
		HTTPAddr:            ":8080",
		Shards:              1024,
		RegistryBootstrap:   "1000000-1000999",
		SpreadWindow:        45 * time.Second,
		FetchConcurrency:    256,
		FetchTimeout:        5 * time.Second,
		FetchRetryInitial:   100 * time.Millisecond,
		FetchRetryMax:       5 * time.Second,
		FetchAdaptive:       true,
		FetchAdaptiveMin:    4,
		FetchAdaptiveRTT:    25 * time.Millisecond,
		BreakerFailures:     50,
		BreakerCooldown:     5 * time.Second,
		RecorderRetries:     8,
		RedeliveryLimit:     10,
		ReconcileLookback:   time.Hour,
		SimulatorMode:       SimulatorRandomWalk,
		LogLevel:            "info",
		LogFormat:           LogFormatAuto,
		ShutdownTimeout:     30 * time.Second,
		Retention:           7 * 24 * time.Hour,
		DeadLetterRetention: 7 * 24 * time.Hour,
		MissedRetention:     7 * 24 * time.Hour,
		PostgresWriters:     2,
		TraceSampleRatio:    1,

		SuspicionInterval:    24 * time.Hour,
		SuspicionConcurrency: 128,
		SuspicionTimeout:     30 * time.Second,
		SuspicionAttempts:    3,

		SimulatorSuspiciousDelayMin: time.Second,
		SimulatorSuspiciousDelayMax: 10 * time.Second,

		KafkaVersion:         "3.7.0",
		KafkaPartitions:      16,
		PostgresPollInterval: 250 * time.Millisecond,
		PostgresInFlight:     8,
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.APIURL != "" {
		if err := validateHTTPURL(c.APIURL); err != nil {
			bad("api-url: %w", err)
		}
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("database-url: want postgres://user@host:port/db")
		}
	}
	switch c.Broker {
	case BrokerGoChannel:
	case BrokerKafka:
		if len(c.KafkaBrokers) == 0 {
			bad("kafka-brokers: required when broker is kafka")
		}
	case BrokerPostgres:
		if c.DatabaseURL == "" {
			bad("broker postgres needs database-url")
		}
	default:
		bad("broker: %q is not one of gochannel, kafka, postgres", c.Broker)
	}
	for _, b := range c.KafkaBrokers {
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			bad("kafka-brokers: %q is not host:port", b)
		}
	}
	if !kafkaVersionRE.MatchString(c.KafkaVersion) {
		bad("kafka-version: %q is not X.Y.Z", c.KafkaVersion)
	}
	if c.KafkaPartitions < 1 || c.KafkaPartitions > 10_000 {
		bad("kafka-partitions: %d not in [1, 10000]", c.KafkaPartitions)
	}
	if c.PostgresPollInterval <= 0 || c.PostgresPollInterval > time.Minute {
		bad("postgres-poll-interval: %s not in (0s, 1m]", c.PostgresPollInterval)
	}
	if c.PostgresWriters < 1 || c.PostgresWriters > 64 {
		bad("postgres-writers: %d not in [1, 64]", c.PostgresWriters)
	}
	if c.PostgresInFlight < 1 || c.PostgresInFlight > 256 {
		bad("postgres-in-flight: %d not in [1, 256]", c.PostgresInFlight)
	}
	if err := checkListenAddr(c.HTTPAddr); err != nil {
		bad("http-addr: %w", err)
	}
	for _, o := range c.CORSOrigins {
		if err := checkCORSOrigin(o); err != nil {
			bad("cors-origins: %w", err)
		}
	}
	if c.PprofAddr != "" {
		if err := checkListenAddr(c.PprofAddr); err != nil {
			bad("pprof-addr: %w", err)
		}
	}
	if c.Shards < 1 || c.Shards > 1<<20 {
		bad("shards: %d not in [1, 1048576]", c.Shards)
	}
	if c.RegistryBootstrap != "" {
		if _, err := influencer.ParseRange(c.RegistryBootstrap); err != nil {
			bad("registry-bootstrap: %w", err)
		}
	}
	if c.SpreadWindow < 0 || c.SpreadWindow >= time.Minute {
		bad("spread-window: %s not in [0s, 1m)", c.SpreadWindow)
	}
	if c.DeadlineGrace < 0 || c.DeadlineGrace > 30*time.Second {
		bad("deadline-grace: %s not in [0s, 30s]", c.DeadlineGrace)
	}
	if c.FetchConcurrency < 1 || c.FetchConcurrency > 100_000 {
		bad("fetch-concurrency: %d not in [1, 100000]", c.FetchConcurrency)
	}
	if c.FetchTimeout <= 0 || c.FetchTimeout > time.Minute {
		bad("fetch-timeout: %s not in (0s, 1m]", c.FetchTimeout)
	}
	if c.FetchRetryInitial <= 0 || c.FetchRetryMax < c.FetchRetryInitial {
		bad("fetch-retry-initial/fetch-retry-max: want 0 < initial (%s) <= max (%s)", c.FetchRetryInitial, c.FetchRetryMax)
	}
	if math.IsNaN(c.FetchRateLimit) || c.FetchRateLimit < 0 || c.FetchRateLimit > 1_000_000 {
		bad("fetch-rate-limit: %g not in [0, 1000000] requests per second", c.FetchRateLimit)
	}
	if c.FetchAdaptiveMin < 1 || c.FetchAdaptiveMin > c.FetchConcurrency {
		bad("fetch-adaptive-min: %d not in [1, fetch-concurrency %d]", c.FetchAdaptiveMin, c.FetchConcurrency)
	}
	if c.FetchAdaptiveRTT <= 0 || c.FetchAdaptiveRTT >= c.FetchTimeout {
		bad("fetch-adaptive-rtt: %s not in (0s, fetch-timeout %s)", c.FetchAdaptiveRTT, c.FetchTimeout)
	}
	if c.BreakerFailures < 0 || c.BreakerFailures > 1_000_000 {
		bad("breaker-failures: %d not in [0, 1000000]", c.BreakerFailures)
	}
	if c.BreakerCooldown <= 0 || c.BreakerCooldown > 10*time.Minute {
		bad("breaker-cooldown: %s not in (0s, 10m]", c.BreakerCooldown)
	}
	if c.RecorderRetries < 0 || c.RecorderRetries > 100 {
		bad("recorder-retries: %d not in [0, 100]", c.RecorderRetries)
	}
	if c.RedeliveryLimit < 1 || c.RedeliveryLimit > 1000 {
		bad("redelivery-limit: %d not in [1, 1000]", c.RedeliveryLimit)
	}
	if c.ReconcileLookback < time.Minute || c.ReconcileLookback > 24*time.Hour {
		bad("reconcile-lookback: %s not in [1m, 24h]", c.ReconcileLookback)
	}
	if c.SimulatorMode != SimulatorRandomWalk && c.SimulatorMode != SimulatorDeterministic {
		bad("simulator-mode: %q is not random-walk or deterministic", c.SimulatorMode)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level: %q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case LogFormatAuto, LogFormatJSON, LogFormatText:
	default:
		bad("log-format: %q is not auto, json or text", c.LogFormat)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown-timeout: must be positive")
	}
	if c.SuspicionInterval < time.Minute {
		bad("suspicion-interval: %s is less than a minute", c.SuspicionInterval)
	}
	if c.SuspicionConcurrency < 1 || c.SuspicionConcurrency > 100000 {
		bad("suspicion-concurrency: %d not in [1, 100000]", c.SuspicionConcurrency)
	}
	if c.SuspicionTimeout <= 0 {
		bad("suspicion-timeout: must be positive")
	}
	if c.SuspicionAttempts < 1 || c.SuspicionAttempts > 100 {
		bad("suspicion-attempts: %d not in [1, 100]", c.SuspicionAttempts)
	}
	if c.SimulatorSuspiciousDelayMin < 0 || c.SimulatorSuspiciousDelayMax < c.SimulatorSuspiciousDelayMin {
		bad("simulator-suspicious-delay-min/max: want 0 <= min (%s) <= max (%s)", c.SimulatorSuspiciousDelayMin, c.SimulatorSuspiciousDelayMax)
	}
	if c.OTLPEndpoint != "" {
		if err := validateHTTPURL(c.OTLPEndpoint); err != nil {
			bad("otlp-endpoint: %w", err)
		}
	}
	if math.IsNaN(c.TraceSampleRatio) || c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		bad("trace-sample-ratio: %v not in [0, 1]", c.TraceSampleRatio)
	}
	if c.Retention < 24*time.Hour {
		bad("retention: %s is less than a day (minute points are dropped by whole days)", c.Retention)
	}
	if c.DeadLetterRetention < time.Hour {
		bad("dead-letter-retention: %s is less than an hour (a pk's permanent failure is dead-lettered once an hour)", c.DeadLetterRetention)
	}
	if c.MissedRetention < 24*time.Hour {
		bad("missed-retention: %s is less than a day (the last complete minute and the dashboard read the recent misses)", c.MissedRetention)
	}
	return errors.Join(errs...)
}

// FetcherBaseURL is the API base URL a stand-alone fetcher uses.
func (c Config) FetcherBaseURL() string {
	if c.APIURL == "" {
		return "http://127.0.0.1:3000"
	}
	return c.APIURL
}

// BootstrapRange returns the bootstrap range, if one is configured.
func (c Config) BootstrapRange() (influencer.Range, bool) {
	if c.RegistryBootstrap == "" {
		return influencer.Range{}, false
	}
	r, err := influencer.ParseRange(c.RegistryBootstrap)
	return r, err == nil
}

// kafkaVersionRE is the shape of a Kafka version; whether the client knows
// the version is checked when the broker is built.
var kafkaVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// validateHTTPURL checks an http(s) base URL; its errors show the URL
// without a user and password (api-url may carry them for basic auth).
func validateHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("not a URL: %w", err)
	}
	shown := mockstagramapi.WithoutUserinfo(raw)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http(s)://host[:port]", shown)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: must not have a query or fragment", shown)
	}
	return nil
}

// checkListenAddr reports why addr cannot be listened on as host:port, so
// a bad address stops the process at start with the others, not at listen.
func checkListenAddr(addr string) error {
	if addr == "" {
		return errors.New("empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q not in [0, 65535]", addr, port)
	}
	return nil
}

// checkCORSOrigin reports why o cannot be an allowed CORS origin: "*"
// (any origin), or scheme://host[:port] with scheme http or https, no path,
// query or credentials, and at most one "*" in the host as a wildcard
// (https://*.example.com).
func checkCORSOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http(s)://host[:port] or *", o)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: an origin has no path, query or credentials", o)
	}
	if u.Path == "/" {
		return fmt.Errorf("%q: an origin has no trailing slash", o)
	}
	if strings.Count(u.Host, "*") > 1 {
		return fmt.Errorf("%q: at most one * wildcard", o)
	}
	return nil
}
