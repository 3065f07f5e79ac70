package cli_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/cli"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(args, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		r := run(t, args...)
		assert.Equal(t, 0, r.code, r.stderr)
		for _, cmd := range []string{"run", "scheduler", "fetcher", "recorder", "suspicion", "api", "simulate", "migrate", "registry", "bench"} {
			assert.Regexp(t, `(?m)^\s+`+cmd+`\b`, r.stdout, "help lists %q", cmd)
		}
		for _, flag := range []string{"--database-url", "--api-url", "--shards", "--broker", "--config"} {
			assert.Contains(t, r.stdout, flag)
		}
	}
}

func TestSubcommandHelp(t *testing.T) {
	t.Parallel()
	r := run(t, "registry", "add", "--help")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "--range")
	assert.Contains(t, r.stdout, "--pk")
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown flag", []string{"--bogus"}, "unknown flag --bogus"},
		{"unknown command", []string{"frobnicate"}, "unexpected argument frobnicate"},
		{"no command", nil, "expected one of"},
		{"registry without subcommand", []string{"registry"}, "expected one of"},
		{"migrate without database", []string{"migrate"}, "migrate needs --database-url (MOCKSTAGRAM_DATABASE_URL)"},
		{"registry add without pks", []string{"registry", "add"}, "give a range (FROM-TO) and/or pks"},
		{"registry add bad range", []string{"registry", "add", "--range", "20-10"}, `range "20-10": want 0 < FROM <= TO`},
		{"registry add junk range", []string{"registry", "add", "--range", "1x-2"}, `range "1x-2": bad start`},
		{"registry add non-positive pk", []string{"registry", "add", "--pk=-3"}, "pk -3 is not positive"},
		{"registry remove without pks", []string{"registry", "remove"}, "give a range (FROM-TO) and/or pks"},
		{"registry list without database", []string{"registry", "list"}, "registry commands need --database-url"},
		{"registry list bad limit", []string{"registry", "list", "--limit", "0"}, "--limit must be in [1, 1000000]"},
		{"bench bad influencers", []string{"bench", "--influencers", "0"}, "want 1 <= --influencers <= 5000000"},
		{"bench bad minutes", []string{"bench", "--minutes", "0"}, "1 <= --minutes <= 60"},
		{"bench unknown wiring", []string{"bench", "--wirings", "memory,redis"}, `unknown wiring "redis"`},
		{"bench bad database url", []string{"bench", "--wirings", "pg-pg", "--database-url", "mysql://x"}, `want postgres://user@host:port/db`},
		{"simulate bad range", []string{"simulate", "--range", "5-1"}, `range "5-1": want 0 < FROM <= TO`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.args...)
			assert.Equal(t, 2, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			assert.Contains(t, r.stderr, tc.wantErr)
		})
	}
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"zero shards", []string{"--shards", "0", "registry", "list"}, []string{"shards: 0 not in [1, 1048576]"}},
		{"bad broker and log level", []string{"--broker", "rabbit", "--log-level", "loud", "registry", "list"},
			[]string{`broker: "rabbit" is not one of gochannel, kafka, postgres`, `log-level: "loud" is not debug, info, warn or error`}},
		{"bad database url", []string{"--database-url", "mysql://h/db", "migrate"}, []string{"database-url: want postgres://user@host:port/db"}},
		{"bad api url", []string{"--api-url", "ftp://x", "fetcher"}, []string{`api-url: "ftp://x": want http(s)://host[:port]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.args...)
			assert.Equal(t, 2, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			for _, w := range tc.wantErr {
				assert.Contains(t, r.stderr, w)
			}
		})
	}
}

func TestMigrateAndRegistry(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)

	r := run(t, "migrate", "--database-url", dsn, "--log-level", "error")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "migrations applied\n", r.stdout)

	r = run(t, "migrate", "--database-url", dsn, "--log-level", "error")
	require.Equal(t, 0, r.code, "migrate is idempotent: %s", r.stderr)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"registry", "add", "--range", "1000000-1000009", "--database-url", dsn}, "10 influencers now tracked\n"},
		{[]string{"registry", "add", "--pk", "5", "--database-url", dsn}, "1 influencers now tracked\n"},
		{[]string{"registry", "add", "--pk", "5", "--database-url", dsn}, "0 influencers now tracked\n"},
		{[]string{"registry", "remove", "--pk", "1000003", "--database-url", dsn}, "1 influencers no longer tracked\n"},
		{[]string{"registry", "remove", "--pk", "1000003", "--pk", "424242", "--database-url", dsn}, "0 influencers no longer tracked\n"},
	} {
		r := run(t, tc.args...)
		require.Equal(t, 0, r.code, "%v: %s", tc.args, r.stderr)
		assert.Equal(t, tc.want, r.stdout, "%v", tc.args)
	}

	start := time.Now().Add(-time.Minute)
	r = run(t, "registry", "list", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.NotEmpty(t, lines)
	assert.Equal(t, []string{"PK", "USERNAME", "ACTIVE", "UPDATED"}, strings.Fields(lines[0]))
	type row struct{ pk, active string }
	var got []row
	for _, line := range lines[1:] {
		// No samples yet, so the username column is empty.
		f := strings.Fields(line)
		require.Len(t, f, 3, "row %q", line)
		updated, err := time.Parse(time.RFC3339, f[2])
		require.NoError(t, err, "row %q", line)
		assert.True(t, updated.After(start), "updated %s", updated)
		got = append(got, row{f[0], f[1]})
	}
	assert.Equal(t, []row{
		{"5", "true"},
		{"1000000", "true"},
		{"1000001", "true"},
		{"1000002", "true"},
		{"1000003", "false"},
		{"1000004", "true"},
		{"1000005", "true"},
		{"1000006", "true"},
		{"1000007", "true"},
		{"1000008", "true"},
		{"1000009", "true"},
	}, got)

	r = run(t, "registry", "list", "--after", "1000002", "--limit", "2", "--database-url", dsn)
	require.Equal(t, 0, r.code, r.stderr)
	lines = strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 3, r.stdout)
	assert.Equal(t, []string{"1000003", "false"}, strings.Fields(lines[1])[:2])
	assert.Equal(t, []string{"1000004", "true"}, strings.Fields(lines[2])[:2])
}

func TestRegistryListFreshDatabase(t *testing.T) {
	t.Parallel()
	// The store migrates on open, so a fresh database lists no rows.
	r := run(t, "registry", "list", "--database-url", pgtest.NewDatabase(t))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"PK", "USERNAME", "ACTIVE", "UPDATED"}, strings.Fields(r.stdout))
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	dsn := "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	for _, args := range [][]string{
		{"migrate", "--database-url", dsn, "--log-level", "error"},
		{"registry", "list", "--database-url", dsn},
	} {
		r := run(t, args...)
		assert.Equal(t, 1, r.code, "%v: stdout: %s\nstderr: %s", args, r.stdout, r.stderr)
		assert.True(t, strings.HasPrefix(r.stderr, "mockstagram: "), r.stderr)
		assert.Empty(t, r.stdout)
	}
}

func TestStandaloneStagesNeedSharedBrokerAndDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"fetcher"}, "fetcher alone needs a shared broker"},
		{[]string{"scheduler", "--database-url", "postgres://h/db"}, "scheduler alone needs a shared broker"},
		{[]string{"api"}, "api alone needs --database-url"},
		{[]string{"suspicion", "--broker", "kafka", "--kafka-brokers", "k:9092"}, "suspicion alone needs --database-url"},
		{[]string{"suspicion", "--database-url", "postgres://h/db"}, "suspicion alone needs a shared broker"},
	} {
		r := run(t, tc.args...)
		assert.Equal(t, 2, r.code, "%v", tc.args)
		assert.Contains(t, r.stderr, tc.want, "%v", tc.args)
	}
}
