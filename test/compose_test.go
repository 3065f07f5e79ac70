package test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/mockstagram/pipeline/config"
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
	subcommands := []string{"run", "scheduler", "fetcher", "recorder", "api", "simulate", "migrate"}

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
