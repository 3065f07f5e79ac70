package cli_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte(`{"status":"ready"}`))
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"store unreachable"}`))
		case "/moved":
			http.Redirect(w, r, "/readyz", http.StatusFound)
		case "/hang":
			select { // until the client gives up (or the test ends)
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)

	// A port nothing listens on: a listener closed at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/readyz"
	require.NoError(t, ln.Close())

	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		out, inErr string
	}{
		{"default is readyz of http-addr", []string{"healthcheck", "--http-addr", ":" + port}, 0,
			"http://127.0.0.1:" + port + "/readyz: 200 OK {\"status\":\"ready\"}", ""},
		{"unspecified host is loopback", []string{"healthcheck", "--http-addr", "0.0.0.0:" + port}, 0, "200 OK", ""},
		{"given URL", []string{"healthcheck", "--url", srv.URL + "/readyz"}, 0, "200 OK", ""},
		{"not ready", []string{"healthcheck", "--url", srv.URL + "/down"}, 1, "",
			"answered 503 Service Unavailable: {\"error\":\"store unreachable\"}"},
		{"redirect not followed", []string{"healthcheck", "--url", srv.URL + "/moved"}, 1, "", "answered 302 Found"},
		{"refused", []string{"healthcheck", "--url", refused}, 1, "", "connection refused"},
		{"timeout", []string{"healthcheck", "--url", srv.URL + "/hang", "--timeout", "50ms"}, 1, "", "context deadline exceeded"},
		{"bad timeout", []string{"healthcheck", "--timeout", "0s"}, 2, "", "--timeout must be positive"},
		{"bad URL", []string{"healthcheck", "--url", "http://[::1"}, 2, "", "healthcheck URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.args...)
			assert.Equal(t, tc.code, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, tc.out)
			assert.Contains(t, r.stderr, tc.inErr)
		})
	}
}
