package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
)

func TestCORSOrigins(t *testing.T) {
	assert.Empty(t, config.Default().CORSOrigins, "CORS is off by default")

	c, err := config.Load([]string{"--config", "testdata/cors.good.yml"})
	require.NoError(t, err)
	assert.Equal(t, []string{"https://dashboard.example.com", "http://localhost:5173", "https://*.example.org"}, c.CORSOrigins)

	t.Setenv("MOCKSTAGRAM_CORS_ORIGINS", "https://a.example.com,*")
	c, err = config.Load(nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"https://a.example.com", "*"}, c.CORSOrigins)

	flag, err := config.Load([]string{"--cors-origins", "http://127.0.0.1:8080"})
	require.NoError(t, err)
	assert.Equal(t, []string{"http://127.0.0.1:8080"}, flag.CORSOrigins)
}
