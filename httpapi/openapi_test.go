package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/registry"
)

// undocumented are the routes deliberately left out of openapi.yaml: the
// dashboard (HTML and its assets) and the Prometheus endpoint. Any other
// route must be documented with the same method, and vice versa.
var undocumented = []string{"/", "/static/*", "/metrics"}

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPI())
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()))
	return doc
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	assert.Equal(t, "3.0.3", doc.OpenAPI)

	// The served document is the embedded one.
	clock := clockwork.NewFakeClockAt(now)
	h := httpapi.New(failing{errors.New("unused")}, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	r := do(t, h, http.MethodGet, "/api/v1/openapi.yaml")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "application/yaml", r.contentType)
	assert.Equal(t, string(httpapi.OpenAPI()), r.body)
	var parsed map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(r.body), &parsed))
}

// TestOpenAPIRoutes: every route of the router is documented with the same
// method, and every documented operation is routed.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	clock := clockwork.NewFakeClockAt(now)
	metrics := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	dashboard := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	// Everything on: metrics, dashboard, admin.
	h := httpapi.New(failing{errors.New("unused")}, clock, discard(), nil,
		httpapi.Options{Registry: registry.New(nil), AdminToken: "t", Dashboard: dashboard}).Handler(metrics, true)
	routes, ok := h.(chi.Routes)
	require.True(t, ok, "Handler must return a chi router (%T) for this test to walk it", h)

	routed := map[string]bool{}
	seenUndocumented := map[string]bool{}
	require.NoError(t, chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if slices.Contains(undocumented, route) {
			seenUndocumented[route] = true
			return nil
		}
		routed[method+" "+route] = true
		return nil
	}))
	for _, u := range undocumented {
		assert.True(t, seenUndocumented[u], "exception %s is not routed any more: drop it from the list", u)
	}

	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	assert.Equal(t, sortedKeys(documented), sortedKeys(routed), "routes and openapi.yaml differ")
	assert.Len(t, routed, 12)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIResponses sends real requests for every endpoint and outcome
// and validates each response (status, content type, body schema) against
// openapi.yaml. Every documented response of every operation must be hit by
// at least one case.
func TestOpenAPIResponses(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)

	s, clock := newReadStore(t)
	api := httpapi.New(s, clock, discard(), nil, httpapi.Options{Registry: registry.New(s), AdminToken: adminToken,
		Tracked: s, Shards: 16, SpreadWindow: 45 * time.Second}).Handler(nil, true)
	broken := httpapi.New(failing{errors.New("connection refused")}, clock, discard(), nil,
		httpapi.Options{Registry: registry.New(s), AdminToken: adminToken}).Handler(nil, true)
	brokenRegistry := httpapi.New(s, clock, discard(), nil, httpapi.Options{Registry: failingRegistry{}, AdminToken: adminToken}).Handler(nil, true)
	unreachableErr := fmt.Errorf("read: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	unreachable := httpapi.New(failing{unreachableErr}, clock, discard(), nil,
		httpapi.Options{Registry: registryFailing{unreachableErr}, AdminToken: adminToken}).Handler(nil, true)
	disabled := httpapi.New(s, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)
	notReady := httpapi.New(s, clock, discard(), func(context.Context) error { return errors.New("router not running") },
		httpapi.Options{}).Handler(nil, true)

	const (
		admin = "Bearer " + adminToken
		inf   = "/api/v1/influencers"
		reg   = "/api/v1/registry"
	)
	cases := []struct {
		name   string
		h      http.Handler
		method string
		target string
		auth   string
		body   string
		status int
	}{
		{"influencer", api, "GET", inf + "/1", "", "", 200},
		{"influencer, ratio null", api, "GET", inf + "/2", "", "", 200},
		{"influencer, rank null", api, "GET", inf + "/9", "", "", 200},
		{"influencer, bad pk", api, "GET", inf + "/abc", "", "", 400},
		{"influencer, no data", api, "GET", inf + "/12345", "", "", 404},
		{"influencer, store down", broken, "GET", inf + "/1", "", "", 500},
		{"influencer, store unreachable", unreachable, "GET", inf + "/1", "", "", 503},
		{"timeline 1m", api, "GET", inf + "/1/timeline?from=2026-11-25T00:00:00Z&to=2026-11-25T02:00:00Z", "", "", 200},
		{"timeline 1m, ratio null", api, "GET", inf + "/2/timeline", "", "", 200},
		{"timeline 1m, empty", api, "GET", inf + "/12345/timeline", "", "", 200},
		{"timeline 1h", api, "GET", inf + "/1/timeline?step=1h", "", "", 200},
		{"timeline 1h, ratio null", api, "GET", inf + "/2/timeline?step=1h", "", "", 200},
		{"timeline 1d", api, "GET", inf + "/1/timeline?step=1d", "", "", 200},
		{"timeline, bad step", api, "GET", inf + "/1/timeline?step=5m", "", "", 400},
		{"timeline, from after to", api, "GET", inf + "/1/timeline?from=2026-11-25T02:00:00Z&to=2026-11-25T01:00:00Z", "", "", 400},
		{"timeline, bad pk", api, "GET", inf + "/0/timeline", "", "", 400},
		{"timeline, store down", broken, "GET", inf + "/1/timeline?step=1h", "", "", 500},
		{"timeline, store unreachable", unreachable, "GET", inf + "/1/timeline", "", "", 503},
		{"timeline.csv 1m", api, "GET", inf + "/1/timeline.csv?from=2026-11-25T00:00:00Z&to=2026-11-25T02:00:00Z", "", "", 200},
		{"timeline.csv 1h", api, "GET", inf + "/1/timeline.csv?step=1h", "", "", 200},
		{"timeline.csv, bad step", api, "GET", inf + "/1/timeline.csv?step=5m", "", "", 400},
		{"timeline.csv, store down", broken, "GET", inf + "/1/timeline.csv", "", "", 500},
		{"timeline.csv, store unreachable", unreachable, "GET", inf + "/1/timeline.csv", "", "", 503},
		{"growth", api, "GET", inf + "/1/growth", "", "", 200},
		{"growth, bad pk", api, "GET", inf + "/x/growth", "", "", 400},
		{"growth, no data", api, "GET", inf + "/12345/growth", "", "", 404},
		{"growth, store down", broken, "GET", inf + "/1/growth", "", "", 500},
		{"growth, store unreachable", unreachable, "GET", inf + "/1/growth", "", "", 503},
		{"movers, never computed", api, "GET", "/api/v1/movers", "", "", 200},
		{"movers, down", api, "GET", "/api/v1/movers?window=24h&direction=down&limit=100", "", "", 200},
		{"movers, bad window", api, "GET", "/api/v1/movers?window=1h", "", "", 400},
		{"movers, bad limit", api, "GET", "/api/v1/movers?limit=101", "", "", 400},
		{"movers, store down", broken, "GET", "/api/v1/movers", "", "", 500},
		{"movers, store unreachable", unreachable, "GET", "/api/v1/movers", "", "", 503},
		{"leaderboard", api, "GET", inf + "?limit=2", "", "", 200},
		{"leaderboard, last page", api, "GET", inf + "?limit=1000", "", "", 200},
		{"leaderboard, after", api, "GET", inf + "?limit=2&after=900.1", "", "", 200},
		{"leaderboard, bad limit", api, "GET", inf + "?limit=0", "", "", 400},
		{"leaderboard, bad cursor", api, "GET", inf + "?after=x", "", "", 400},
		{"leaderboard, store down", broken, "GET", inf, "", "", 500},
		{"leaderboard, store unreachable", unreachable, "GET", inf, "", "", 503},
		{"stats", api, "GET", "/api/v1/stats", "", "", 200},
		{"stats, store down", broken, "GET", "/api/v1/stats", "", "", 500},
		{"stats, store unreachable", unreachable, "GET", "/api/v1/stats", "", "", 503},
		{"registry add", api, "POST", reg, admin, `{"range": "100-104", "pks": [200]}`, 200},
		{"influencer, tracked without data", api, "GET", inf + "/200", "", "", 404},
		{"registry add, bad body", api, "POST", reg, admin, `{"range": "5-1"}`, 400},
		{"registry add, unknown field", api, "POST", reg, admin, `{"x": 1}`, 400},
		{"registry add, no token", api, "POST", reg, "", `{"pks": [1]}`, 401},
		{"registry add, wrong token", api, "POST", reg, "Bearer nope", `{"pks": [1]}`, 403},
		{"registry add, disabled", disabled, "POST", reg, admin, `{"pks": [1]}`, 403},
		{"registry add, store down", brokenRegistry, "POST", reg, admin, `{"pks": [1]}`, 500},
		{"registry remove, store down", brokenRegistry, "DELETE", reg + "/1", admin, "", 500},
		{"registry add, store unreachable", unreachable, "POST", reg, admin, `{"pks": [1]}`, 503},
		{"registry add, body too large", api, "POST", reg, admin, `{"pks": [` + strings.Repeat("1,", httpapi.MaxAdminBody/2) + `1]}`, 413},
		{"registry remove, store unreachable", unreachable, "DELETE", reg + "/1", admin, "", 503},
		{"registry remove", api, "DELETE", reg + "/100", admin, "", 200},
		{"registry remove, bad pk", api, "DELETE", reg + "/abc", admin, "", 400},
		{"registry remove, no token", api, "DELETE", reg + "/100", "", "", 401},
		{"registry remove, wrong token", api, "DELETE", reg + "/100", "Bearer nope", "", 403},
		{"registry remove, disabled", disabled, "DELETE", reg + "/100", admin, "", 403},
		{"healthz", api, "GET", "/healthz", "", "", 200},
		{"readyz", api, "GET", "/readyz", "", "", 200},
		{"readyz, store down", broken, "GET", "/readyz", "", "", 503},
		{"readyz, not ready", notReady, "GET", "/readyz", "", "", 503},
		{"openapi.yaml", api, "GET", "/api/v1/openapi.yaml", "", "", 200},
	}

	hit := map[string]bool{} // "METHOD path status"
	validate := func(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
		t.Helper()
		route, params, err := router.FindRoute(req)
		require.NoError(t, err, "no documented route for %s %s", req.Method, req.URL)
		hit[req.Method+" "+route.Path+" "+strconv.Itoa(rec.Code)] = true

		opts := &openapi3filter.Options{
			IncludeResponseStatus: true, // an undocumented status fails
			ExcludeRequestBody:    true, // requests are deliberately bad in places
			AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
			MultiError:            true,
		}
		err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{
				Request: req, PathParams: params, Route: route, Options: opts,
			},
			Status:  rec.Code,
			Header:  rec.Header(),
			Body:    io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
			Options: opts,
		})
		assert.NoError(t, err, "response: %s", rec.Body.String())
	}
	for _, tc := range cases {
		// Sequential: the registry cases change the shared store.
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := httptest.NewRequest(tc.method, tc.target, body)
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, req)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			validate(t, req, rec)
		})
	}
	// Revalidation: the tag of a first answer gets 304.
	for _, target := range []string{inf + "/1", inf + "/1/timeline?step=1h", inf + "/1/timeline.csv", inf + "/1/growth",
		inf + "?limit=2", "/api/v1/movers", "/api/v1/stats"} {
		t.Run("304 "+target, func(t *testing.T) {
			first := httptest.NewRecorder()
			api.ServeHTTP(first, httptest.NewRequest(http.MethodGet, target, nil))
			require.Equal(t, http.StatusOK, first.Code)
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("If-None-Match", first.Header().Get("ETag"))
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, req)
			require.Equal(t, http.StatusNotModified, rec.Code)
			validate(t, req, rec)
		})
	}

	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := strings.ToUpper(method) + " " + path + " " + status
				assert.True(t, hit[key], "documented response %s is not exercised by any case", key)
			}
		}
	}
}

// TestOpenAPIDetectsDrift makes sure the response validation above has
// teeth: a body with an undocumented field, a missing field or a wrong type
// fails it.
func TestOpenAPIDetectsDrift(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	good := `{"tracked": 1, "influencers": 1, "averageFollowerCount": 1, "lastCompleteMinute": null, "freshnessSeconds": null, "missedLastHour": 0}`
	for _, tc := range []struct {
		name, body string
		status     int
		ok         bool
	}{
		{"the real shape", good, 200, true},
		{"an extra field", strings.Replace(good, `"tracked": 1`, `"tracked": 1, "extra": 1`, 1), 200, false},
		{"a missing field", strings.Replace(good, `"missedLastHour": 0`, `"missedLastHour2": 0`, 1), 200, false},
		{"a wrong type", strings.Replace(good, `"tracked": 1`, `"tracked": "1"`, 1), 200, false},
		{"an undocumented status", `{"error": "x"}`, 418, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/stats", nil)
			route, params, err := router.FindRoute(req)
			require.NoError(t, err)
			opts := &openapi3filter.Options{IncludeResponseStatus: true}
			err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
				Status:                 tc.status,
				Header: http.Header{"Content-Type": []string{"application/json"},
					"Etag": []string{`W/"x"`}, "Cache-Control": []string{"public, max-age=30"}},
				Body:    io.NopCloser(strings.NewReader(tc.body)),
				Options: opts,
			})
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// failingRegistry is a RegistryEditor whose store is down.
type failingRegistry struct{}

func (failingRegistry) Add(context.Context, registry.Change) (int, error) {
	return 0, errors.New("connection refused")
}

func (failingRegistry) Remove(context.Context, registry.Change) (int, error) {
	return 0, errors.New("connection refused")
}
