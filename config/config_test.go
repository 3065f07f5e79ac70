package config_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
)

func TestDefaultsMatchTags(t *testing.T) {
	got, err := config.Load(nil)
	require.NoError(t, err)
	assert.Equal(t, config.Default(), got)
	require.NoError(t, config.Default().Validate())
}

func TestGoodFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := config.Load([]string{"--config", f})
			require.NoError(t, err)
		})
	}
}

func TestGoodFixtureValues(t *testing.T) {
	c, err := config.Load([]string{"--config", "testdata/postgres.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, "postgres", c.Broker)
	assert.Equal(t, 256, c.Shards)
	assert.Equal(t, 40*time.Second, c.SpreadWindow)
	assert.Equal(t, "1000000-1999999", c.RegistryBootstrap)

	k, err := config.Load([]string{"--config", "testdata/kafka.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, []string{"kafka-1:9092", "kafka-2:9092"}, k.KafkaBrokers)
	assert.Equal(t, 2500.5, k.FetchRateLimit)
	assert.Equal(t, 20, k.BreakerFailures)
	assert.Equal(t, 10*time.Second, k.BreakerCooldown)
	assert.True(t, k.FetchAdaptive, "on by default")
	assert.Equal(t, 16, k.FetchAdaptiveMin)
	assert.Equal(t, 50*time.Millisecond, k.FetchAdaptiveRTT)

	ret, err := config.Load([]string{"--config", "testdata/retention.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, 14*24*time.Hour, ret.Retention)
	assert.Equal(t, 72*time.Hour, ret.DeadLetterRetention)
	assert.Equal(t, 48*time.Hour, ret.MissedRetention)

	off, err := config.Load([]string{"--config", "testdata/adaptive-off.good.yml"})
	require.NoError(t, err)
	assert.False(t, off.FetchAdaptive)
	assert.Equal(t, 64, off.FetchConcurrency)

	text, err := config.Load([]string{"--config", "testdata/log-format.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, config.LogFormatText, text.LogFormat)
	minimal, err := config.Load([]string{"--config", "testdata/minimal.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, config.LogFormatAuto, minimal.LogFormat, "auto by default")
}

func TestBadFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := expectedErrors(t, f)
			require.NotEmpty(t, want, "bad fixture must say which error it expects")
			_, err := config.Load([]string{"--config", f})
			require.Error(t, err)
			for _, w := range want {
				assert.Contains(t, err.Error(), w)
			}
			for _, secret := range []string{"s3cret", "hunter2"} {
				assert.NotContains(t, err.Error(), secret, "errors never show credentials")
			}
		})
	}
}

func expectedErrors(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if w, ok := strings.CutPrefix(sc.Text(), "# error: "); ok {
			out = append(out, w)
		}
	}
	return out
}

// Precedence: flag over environment over file over default.
func TestPrecedence(t *testing.T) {
	t.Setenv("MOCKSTAGRAM_SHARDS", "77")
	t.Setenv("MOCKSTAGRAM_API_URL", "http://env:3000")
	c, err := config.Load([]string{"--config", "testdata/postgres.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, 77, c.Shards, "env beats file")
	assert.Equal(t, "http://env:3000", c.APIURL)
	assert.Equal(t, 512, c.FetchConcurrency, "file beats default")

	c, err = config.Load([]string{"--config", "testdata/postgres.good.yml", "--shards", "5"})
	require.NoError(t, err)
	assert.Equal(t, 5, c.Shards, "flag beats env")
}

func TestEnvNames(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		get        func(config.Config) any
		want       any
	}{
		{"MOCKSTAGRAM_API_URL", "http://api:3000", func(c config.Config) any { return c.APIURL }, "http://api:3000"},
		{"MOCKSTAGRAM_DATABASE_URL", "postgres://h/db", func(c config.Config) any { return c.DatabaseURL }, "postgres://h/db"},
		{"MOCKSTAGRAM_HTTP_ADDR", ":9999", func(c config.Config) any { return c.HTTPAddr }, ":9999"},
		{"MOCKSTAGRAM_SHARDS", "64", func(c config.Config) any { return c.Shards }, 64},
		{"MOCKSTAGRAM_REGISTRY_BOOTSTRAP", "1000000-1999999", func(c config.Config) any { return c.RegistryBootstrap }, "1000000-1999999"},
		{"MOCKSTAGRAM_ADMIN_TOKEN", "tok", func(c config.Config) any { return c.AdminToken }, "tok"},
		{"MOCKSTAGRAM_KAFKA_BROKERS", "a:1,b:2", func(c config.Config) any { return c.KafkaBrokers }, []string{"a:1", "b:2"}},
		{"MOCKSTAGRAM_BROKER", "gochannel", func(c config.Config) any { return c.Broker }, "gochannel"},
		{"MOCKSTAGRAM_OTLP_ENDPOINT", "http://jaeger:4318", func(c config.Config) any { return c.OTLPEndpoint }, "http://jaeger:4318"},
		{"MOCKSTAGRAM_TRACE_SAMPLE_RATIO", "0.5", func(c config.Config) any { return c.TraceSampleRatio }, 0.5},
		{"MOCKSTAGRAM_FETCH_ADAPTIVE", "false", func(c config.Config) any { return c.FetchAdaptive }, false},
		{"MOCKSTAGRAM_FETCH_ADAPTIVE_MIN", "2", func(c config.Config) any { return c.FetchAdaptiveMin }, 2},
		{"MOCKSTAGRAM_FETCH_ADAPTIVE_RTT", "40ms", func(c config.Config) any { return c.FetchAdaptiveRTT }, 40 * time.Millisecond},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			c, err := config.Load(nil)
			require.NoError(t, err)
			assert.Equal(t, tc.want, tc.get(c))
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := config.Default()
	c.Broker = "x"
	c.Shards = -1
	c.FetchTimeout = 0
	err := c.Validate()
	require.Error(t, err)
	for _, w := range []string{"broker:", "shards:", "fetch-timeout:"} {
		assert.Contains(t, err.Error(), w)
	}
}

// Mistyped values of the environment and the config file are all reported,
// with the validation errors of the other values (issue 10).
func TestTypeErrorsAreAllReported(t *testing.T) {
	t.Setenv("MOCKSTAGRAM_SHARDS", "abc")
	t.Setenv("MOCKSTAGRAM_BROKER", "redis")
	t.Setenv("MOCKSTAGRAM_FETCH_TIMEOUT", "xyz")
	t.Setenv("MOCKSTAGRAM_KAFKA_PARTITIONS", "many")
	_, err := config.Load([]string{"--config", "testdata/minimal.good.yml"})
	require.Error(t, err)
	for _, w := range []string{
		`shards: expected a valid 64 bit int but got "abc" (from MOCKSTAGRAM_SHARDS)`,
		`fetch-timeout: expected duration but got "xyz": time: invalid duration "xyz" (from MOCKSTAGRAM_FETCH_TIMEOUT)`,
		`kafka-partitions: expected a valid 64 bit int but got "many" (from MOCKSTAGRAM_KAFKA_PARTITIONS)`,
		`broker: "redis" is not one of gochannel, kafka, postgres`,
	} {
		assert.Contains(t, err.Error(), w)
	}
	assert.NotContains(t, err.Error(), "fetch-adaptive-rtt", "a mistyped value is validated as its default, not as zero")
}

// The environment and flags override mistyped file values, which then are
// no error.
func TestTypeErrorsFollowPrecedence(t *testing.T) {
	t.Setenv("MOCKSTAGRAM_SHARDS", "64")
	c, err := config.Load([]string{"--config", "testdata/types.bad.yml", "--broker", "gochannel", "--fetch-timeout", "2s", "--trace-sample-ratio", "0.5"})
	require.NoError(t, err)
	assert.Equal(t, 64, c.Shards)
	assert.Equal(t, 2*time.Second, c.FetchTimeout)
}
