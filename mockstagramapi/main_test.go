package mockstagramapi_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
)

func TestMain(m *testing.M) {
	// fasthttp's idle-connection janitor sleeps until its next check,
	// then ends by itself once the pool is empty.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newMetrics() *metrics.Pipeline { return metrics.New(prometheus.NewRegistry()) }

func sampleJSON(pk int64) string {
	return fmt.Sprintf(`{"pk":%d,"username":"influencer-%d","followerCount":1200,"followingCount":300}`, pk, pk)
}

// newClient is a client of url on clock; mod changes the config.
func newClient(t *testing.T, url string, clock clockwork.Clock, m *metrics.Pipeline, mod func(*mockstagramapi.Config)) *mockstagramapi.Client {
	t.Helper()
	cfg := mockstagramapi.Config{BaseURL: url, Concurrency: 4, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := mockstagramapi.New(cfg, clock, discardLogger(), m)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// apiError is err's classified error; it fails the test if there is none.
func apiError(t *testing.T, err error) *mockstagramapi.Error {
	t.Helper()
	var e *mockstagramapi.Error
	require.ErrorAs(t, err, &e)
	return e
}
