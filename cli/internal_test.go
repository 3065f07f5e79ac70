package cli

import (
	"io"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionString(t *testing.T) {
	t.Parallel()
	vcs := func(settings ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(settings); i += 2 {
			out = append(out, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		override string
		info     *debug.BuildInfo
		want     string
	}{
		{"no build info", "", nil, "mockstagram (devel)"},
		{"override without build info", "v9.9.9", nil, "mockstagram v9.9.9"},
		{"module version and VCS", "", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main:     debug.Module{Path: "github.com/mockstagram/pipeline", Version: "v0.0.0-20261201120000-0123456789ab"},
			Settings: vcs("vcs.revision", "0123456789abcdef0123", "vcs.time", "2026-12-01T12:00:00Z", "vcs.modified", "false")},
			"mockstagram v0.0.0-20261201120000-0123456789ab (commit 0123456789ab, 2026-12-01T12:00:00Z, go1.26.8)"},
		{"modified tree", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "abc", "vcs.modified", "true")},
			"mockstagram (devel) (commit abc-dirty, go1.26.8)"},
		{"link-time override wins", "v1.2.3", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "abc")},
			"mockstagram v1.2.3 (commit abc, go1.26.8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, versionString(tc.override, tc.info))
		})
	}
}

// envFlag is one use of an environment variable: the flag and the command.
type envFlag struct {
	command, flag, typ, def string
}

// TestEnvNotShared: an environment variable is read by one setting only.
// Commands may share a variable only for the same setting: the same flag
// name, type and default (MOCKSTAGRAM_DATABASE_URL of run and registry),
// or a pair listed in sameSetting. So MOCKSTAGRAM_ADDR cannot set both
// simulate's and kafka-dev's listen addresses, and MOCKSTAGRAM_RANGE cannot
// drive a bare 'registry add'.
func TestEnvNotShared(t *testing.T) {
	t.Parallel()
	// simulate --mode is the built-in simulator's --simulator-mode of run.
	sameSetting := map[string][]string{"MOCKSTAGRAM_SIMULATOR_MODE": {"mode", "simulator-mode"}}

	var cli CLI
	parser, err := newParser(&cli, options{}, io.Discard, io.Discard, func(int) {})
	require.NoError(t, err)
	uses := map[string][]envFlag{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			for _, env := range f.Envs {
				uses[env] = append(uses[env], envFlag{command: n.Path(), flag: f.Name, typ: f.Target.Type().String(), def: f.Default})
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(parser.Model.Node)
	require.Contains(t, uses, "MOCKSTAGRAM_DATABASE_URL")
	require.Contains(t, uses, "MOCKSTAGRAM_SIMULATOR_ADDR")
	require.Contains(t, uses, "MOCKSTAGRAM_KAFKA_DEV_ADDR")

	for env, fs := range uses {
		assert.True(t, strings.HasPrefix(env, "MOCKSTAGRAM_"), "%s: %v", env, fs)
		names := map[string]bool{}
		for _, f := range fs {
			names[f.flag] = true
			assert.Equal(t, fs[0].typ, f.typ, "%s: flags of different types: %v", env, fs)
		}
		if want, ok := sameSetting[env]; ok {
			var got []string
			for n := range names {
				got = append(got, n)
			}
			sort.Strings(got)
			assert.Equal(t, want, got, env)
			continue
		}
		assert.Len(t, names, 1, "%s is read by different flags: %v", env, fs)
		for _, f := range fs {
			assert.Equal(t, fs[0].def, f.def, "%s: the same flag with different defaults: %v", env, fs)
		}
	}
	for _, env := range []string{"MOCKSTAGRAM_ADDR", "MOCKSTAGRAM_RANGE", "MOCKSTAGRAM_PK", "MOCKSTAGRAM_LIMIT",
		"MOCKSTAGRAM_INFLUENCERS", "MOCKSTAGRAM_VERSION", "MOCKSTAGRAM_HELP"} {
		assert.NotContains(t, uses, env)
	}
	for _, env := range []string{"MOCKSTAGRAM_SIMULATOR_ADDR", "MOCKSTAGRAM_SIMULATOR_RANGE", "MOCKSTAGRAM_SIMULATOR_CAPACITY"} {
		assert.Equal(t, []string{"simulate"}, commands(uses[env]), env)
	}
	assert.Equal(t, []string{"kafka-dev"}, commands(uses["MOCKSTAGRAM_KAFKA_DEV_ADDR"]))
	assert.Equal(t, []string{"bench"}, commands(uses["MOCKSTAGRAM_BENCH_INFLUENCERS"]))
}

func commands(fs []envFlag) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.command)
	}
	slices.Sort(out)
	return out
}

func TestChangeReport(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "added 10, 1010 influencers now tracked", changeReport("added", 10, 1010))
	assert.Equal(t, "added 0, 1 influencer now tracked", changeReport("added", 0, 1))
	assert.Equal(t, "removed 1, 0 influencers now tracked", changeReport("removed", 1, 0))
}
