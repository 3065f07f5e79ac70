package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/registry"
)

// logBuffer is a debug-level text logger whose output a test reads.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// connectError is what pgx returns when PostgreSQL does not listen: it
// names the user, the database and the host.
func connectError(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, "postgres://dbadmin:pw@"+addr+"/secretdb?sslmode=disable")
	if conn != nil {
		_ = conn.Close(ctx)
	}
	require.Error(t, err)
	require.Contains(t, err.Error(), "secretdb", "the driver's error names the database")
	return fmt.Errorf("summary of pk 1: %w", err)
}

// failingRegistry with a given error.
type registryFailing struct{ err error }

func (f registryFailing) Add(context.Context, registry.Change) (int, error)    { return 0, f.err }
func (f registryFailing) Remove(context.Context, registry.Change) (int, error) { return 0, f.err }

// A store that cannot be reached makes reads and admin writes answer 503
// with Retry-After, and /readyz say so without the database's details,
// which go to the log (issue 10).
func TestStoreUnreachable(t *testing.T) {
	t.Parallel()
	down := connectError(t)
	for _, tc := range []struct {
		name        string
		err         error
		unreachable bool
	}{
		{"connection refused (pgx)", down, true},
		{"connection reset", fmt.Errorf("read: %w", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}), true},
		{"connection cut mid-answer", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"the store's own timeout", fmt.Errorf("connect: %w", context.DeadlineExceeded), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006", Message: "connection failure"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"}, true},
		{"undefined table", &pgconn.PgError{Code: "42P01", Message: `relation "samples" does not exist`}, false},
		{"query canceled", &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"}, false},
		{"any other error", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := clockwork.NewFakeClockAt(now)
			logger, logs := logBuffer()
			h := httpapi.New(failing{tc.err}, clock, logger, nil,
				httpapi.Options{Registry: registryFailing{tc.err}, AdminToken: adminToken}).Handler(nil, true)
			for _, req := range []struct{ method, path, body string }{
				{http.MethodGet, "/api/v1/influencers/1", ""},
				{http.MethodGet, "/api/v1/influencers/1/timeline", ""},
				{http.MethodGet, "/api/v1/influencers/1/timeline?step=1h", ""},
				{http.MethodGet, "/api/v1/influencers", ""},
				{http.MethodGet, "/api/v1/stats", ""},
				{http.MethodPost, "/api/v1/registry", `{"pks": [1]}`},
				{http.MethodDelete, "/api/v1/registry/1", ""},
			} {
				r, hdr := adminRequest(t, h, req.method, req.path, "Bearer "+adminToken, req.body)
				if tc.unreachable {
					assert.Equal(t, http.StatusServiceUnavailable, r.status, "%s %s", req.method, req.path)
					assert.JSONEq(t, `{"error": "store unreachable, retry later"}`, r.body)
					assert.Equal(t, "5", hdr.Get("Retry-After"))
				} else {
					assert.Equal(t, http.StatusInternalServerError, r.status, "%s %s", req.method, req.path)
					assert.JSONEq(t, `{"error": "internal error"}`, r.body)
					assert.Empty(t, hdr.Get("Retry-After"))
				}
			}

			r := do(t, h, http.MethodGet, "/readyz")
			assert.Equal(t, http.StatusServiceUnavailable, r.status)
			assert.JSONEq(t, `{"error": "store unreachable"}`, r.body, "no database details without auth")
			assert.Contains(t, logs.String(), "readyz: store unreachable")
			if errors.Is(tc.err, down) {
				assert.Contains(t, logs.String(), "secretdb", "the details are logged")
			}
		})
	}
}

// A request whose client went away is not answered 500 nor logged as an
// error; one whose time ran out is left to chi's Timeout (504) (issue 10).
func TestRequestEndedBeforeTheStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		end      func(context.Context) (context.Context, context.CancelFunc)
		status   int
		logLevel string
	}{
		{"client disconnected", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx, cancel
		}, http.StatusOK /* nothing written */, "level=DEBUG"},
		{"request timed out", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithDeadline(ctx, now.Add(-time.Hour)) // real time is long past it
		}, http.StatusGatewayTimeout, "level=WARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/api/v1/influencers/1", "/api/v1/stats", "/readyz"} {
				logger, logs := logBuffer()
				ctx, cancel := tc.end(context.Background())
				defer cancel()
				h := httpapi.New(failing{fmt.Errorf("query: %w", ctx.Err())}, clockwork.NewFakeClockAt(now), logger, nil,
					httpapi.Options{}).Handler(nil, true)
				req := httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				assert.Equal(t, tc.status, rec.Code, path)
				assert.Empty(t, rec.Header().Get("Content-Type"), "no error body: %s", path)
				assert.Empty(t, rec.Body.String(), path)
				assert.NotContains(t, logs.String(), "level=ERROR", path)
				if path != "/readyz" {
					assert.Contains(t, logs.String(), tc.logLevel, path)
				}
			}
		})
	}
}

// An admin body over MaxAdminBody is answered 413 (issue 10).
func TestAdminBodyTooLarge(t *testing.T) {
	t.Parallel()
	h, s := adminHandler(t, adminToken, true)
	before := activePKs(t, s)
	big := `{"pks": [` + strings.Repeat("1,", httpapi.MaxAdminBody/2) + `1]}`
	r, _ := adminRequest(t, h, http.MethodPost, "/api/v1/registry", "Bearer "+adminToken, big)
	assert.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	assert.JSONEq(t, fmt.Sprintf(`{"error": "body larger than %d bytes"}`, httpapi.MaxAdminBody), r.body)
	assert.Equal(t, before, activePKs(t, s))
}
