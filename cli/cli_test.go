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
		for _, flag := range []string{"--config", "--version"} {
			assert.Contains(t, r.stdout, flag)
		}
	}
}

// TestSubcommandHelp: a command's own flags come first; the pipeline's
// settings, for the commands that run it, come after them under "Pipeline
// flags:"; the tools list only the settings they use.
func TestSubcommandHelp(t *testing.T) {
	t.Parallel()
	pipelineFlags := []string{"--api-url", "--database-url", "--broker", "--shards", "--spread-window", "--log-format", "--postgres-poll-interval"}
	for _, tc := range []struct {
		args     []string
		own      []string // in this order, before any pipeline flag
		pipeline bool
		absent   []string
	}{
		{[]string{"run"}, nil, true, nil},
		{[]string{"fetcher"}, nil, true, nil},
		{[]string{"scheduler"}, nil, true, nil},
		{[]string{"dlq", "replay"}, []string{"--topic", "--id", "--dry-run"}, true, nil},
		{[]string{"bench-node"}, []string{"--stage", "--influencers", "--meter-addr"}, true, nil},
		{[]string{"registry", "add"}, []string{"--range", "--pk", "--database-url", "--retention"}, false, []string{"--shards", "--broker", "--api-url"}},
		{[]string{"registry", "list"}, []string{"--after", "--limit", "--database-url"}, false, []string{"--shards", "--broker"}},
		{[]string{"dlq", "list"}, []string{"--topic", "--limit", "--database-url"}, false, []string{"--shards", "--broker"}},
		{[]string{"migrate"}, []string{"--database-url", "--log-level", "--log-format"}, false, []string{"--shards", "--broker"}},
		{[]string{"simulate"}, []string{"--addr", "--mode", "--range", "--capacity"}, false, []string{"--database-url", "--shards", "--broker", "--log-level"}},
		{[]string{"kafka-dev"}, []string{"--addr", "--partitions"}, false, []string{"--database-url", "--shards", "--kafka-brokers"}},
		{[]string{"bench"}, []string{"--influencers", "--wirings", "--database-url"}, false, []string{"--shards", "--broker"}},
		{[]string{"healthcheck"}, []string{"--url", "--timeout", "--http-addr"}, false, []string{"--shards", "--database-url"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, append(tc.args, "--help")...)
			require.Equal(t, 0, r.code, r.stderr)
			out := r.stdout
			pos := func(flag string) int { return strings.Index(out, "  "+flag) }
			require.Contains(t, out, "Flags:")
			groupAt := strings.Index(out, "Pipeline flags:")
			if tc.pipeline {
				require.Greater(t, groupAt, strings.Index(out, "Flags:"), "pipeline flags after the command's flags:\n%s", out)
				for _, f := range pipelineFlags {
					assert.Greater(t, pos(f), groupAt, "%s listed under Pipeline flags", f)
				}
			} else {
				assert.Equal(t, -1, groupAt, out)
			}
			last := -1
			for _, f := range tc.own {
				p := pos(f)
				require.GreaterOrEqual(t, p, 0, "%s listed:\n%s", f, out)
				assert.Greater(t, p, last, "%s in order", f)
				if groupAt >= 0 {
					assert.Less(t, p, groupAt, "%s before the pipeline flags", f)
				}
				last = p
			}
			for _, f := range tc.absent {
				assert.Equal(t, -1, pos(f), "%s is not a flag of %v", f, tc.args)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"run", "--version"}, {"registry", "add", "--version"}} {
		r := run(t, args...)
		assert.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		assert.Regexp(t, `^mockstagram \S+( \(.*go1\.[0-9.]+\))?\n$`, r.stdout, "%v", args)
		assert.Empty(t, r.stderr)
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"--version"}, &stdout, &stderr, cli.WithVersion("v1.2.3")))
	assert.Regexp(t, `^mockstagram v1\.2\.3( \(.*\))?\n$`, stdout.String())
}

// TestVersionAndHelpIgnoreABadEnvironment: --version and --help answer
// whatever MOCKSTAGRAM_* holds. Not parallel: it sets the environment.
func TestVersionAndHelpIgnoreABadEnvironment(t *testing.T) {
	t.Setenv("MOCKSTAGRAM_SHARDS", "abc")
	for _, args := range [][]string{{"run", "--version"}, {"run", "--help"}} {
		r := run(t, args...)
		assert.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
	}
	r := run(t, "run")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, `shards: expected a valid 64 bit int but got "abc" (from MOCKSTAGRAM_SHARDS)`)
}

// TestRegistryChangeIgnoresTheEnvironment: a registry change names its pks
// on the command line; an exported MOCKSTAGRAM_RANGE (simulate's old
// variable) or MOCKSTAGRAM_PK does not drive a bare 'registry add'. Not
// parallel: it sets the environment.
func TestRegistryChangeIgnoresTheEnvironment(t *testing.T) {
	t.Setenv("MOCKSTAGRAM_RANGE", "1000000-1999999")
	t.Setenv("MOCKSTAGRAM_PK", "5")
	t.Setenv("MOCKSTAGRAM_SIMULATOR_RANGE", "1000000-1999999")
	for _, cmd := range []string{"add", "remove"} {
		r := run(t, "registry", cmd, "--database-url", "postgres://nobody@127.0.0.1:1/none")
		assert.Equal(t, 2, r.code, "registry %s: %s", cmd, r.stdout)
		assert.Contains(t, r.stderr, "give a range (FROM-TO) and/or pks", cmd)
		assert.Empty(t, r.stdout)
	}
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
		{"zero shards", []string{"fetcher", "--shards", "0"}, []string{"shards: 0 not in [1, 1048576]"}},
		{"bad broker and log level", []string{"run", "--broker", "rabbit", "--log-level", "loud"},
			[]string{`broker: "rabbit" is not one of gochannel, kafka, postgres`, `log-level: "loud" is not debug, info, warn or error`}},
		{"bad log format", []string{"run", "--log-format", "yaml"}, []string{`log-format: "yaml" is not auto, json or text`}},
		{"bad database url", []string{"migrate", "--database-url", "mysql://h/db"}, []string{"database-url: want postgres://user@host:port/db"}},
		{"migrate bad log level", []string{"migrate", "--log-level", "loud"}, []string{`log-level: "loud" is not debug, info, warn or error`}},
		{"registry bad database url", []string{"registry", "list", "--database-url", "mysql://h/db"}, []string{"database-url: want postgres://user@host:port/db"}},
		{"registry short retention", []string{"registry", "list", "--retention", "1h"}, []string{"retention: 1h0m0s is less than a day"}},
		{"bad api url", []string{"fetcher", "--api-url", "ftp://x"}, []string{`api-url: "ftp://x": want http(s)://host[:port]`}},
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
		{[]string{"registry", "add", "--range", "1000000-1000009", "--database-url", dsn}, "added 10, 10 influencers now tracked\n"},
		{[]string{"registry", "add", "--pk", "5", "--database-url", dsn}, "added 1, 11 influencers now tracked\n"},
		{[]string{"registry", "add", "--pk", "5", "--database-url", dsn}, "added 0, 11 influencers now tracked\n"},
		{[]string{"registry", "add", "--range", "1000000-1000009", "--database-url", dsn}, "added 0, 11 influencers now tracked\n"},
		{[]string{"registry", "remove", "--pk", "1000003", "--database-url", dsn}, "removed 1, 10 influencers now tracked\n"},
		{[]string{"registry", "remove", "--pk", "1000003", "--pk", "424242", "--database-url", dsn}, "removed 0, 10 influencers now tracked\n"},
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
