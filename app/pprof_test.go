package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestPprofOnItsOwnAddressOnly(t *testing.T) {
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RegistryBootstrap = ""
	cfg.PprofAddr = freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := app.Start(ctx, cfg, app.Roles{API: true}, app.Quiet())
	require.NoError(t, err)
	defer func() { assert.NoError(t, p.Stop(context.Background())) }()

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get("http://" + cfg.PprofAddr + "/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "goroutine")
	code, _ = get("http://" + p.HTTPAddr + "/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code, "pprof is not on the API's address")
}

// The API URL's user and password are the fetcher's basic auth; the process
// reports (and the banner prints) the URL without them (issue 10).
func TestProcessAPIBaseURLHasNoCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RegistryBootstrap = ""
	cfg.APIURL = "http://alice:s3cret@mockstagram.invalid:3000/mock"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := app.Start(ctx, cfg, app.Roles{API: true}, app.Quiet())
	require.NoError(t, err)
	defer func() { assert.NoError(t, p.Stop(context.Background())) }()
	assert.Equal(t, "http://mockstagram.invalid:3000/mock", p.APIBaseURL)
}
