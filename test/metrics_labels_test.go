package test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/middleware"
	"github.com/mockstagram/pipeline/mockstagramapi"
)

// The labelled failure counters have a series (0) for every known label
// value from the start, so dashboards show 0 instead of "No data" and an
// alert's increase() sees the first failure. The values written in
// metrics.go (which cannot import the packages that define them) are the
// constants of those packages.
func TestFailureCountersArePreinitialized(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	families, err := reg.Gather()
	require.NoError(t, err)
	series := map[string][]string{} // metric -> its series' label values joined by "/"
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			if mf.GetType() != dto.MetricType_COUNTER || len(m.GetLabel()) == 0 {
				continue
			}
			assert.Zero(t, m.GetCounter().GetValue(), mf.GetName())
			values := map[string]string{}
			for _, l := range m.GetLabel() {
				values[l.GetName()] = l.GetValue()
			}
			// In the metric's label order: (handler, class), (from, to).
			var key []string
			for _, name := range []string{"handler", "class", "outcome", "topic", "from", "to"} {
				if v, ok := values[name]; ok {
					key = append(key, v)
				}
			}
			series[mf.GetName()] = append(series[mf.GetName()], strings.Join(key, "/"))
		}
	}

	apiClasses := []string{mockstagramapi.ClassNotFound, mockstagramapi.ClassTimeout, mockstagramapi.ClassConnection,
		mockstagramapi.ClassServer, mockstagramapi.ClassRateLimited, mockstagramapi.ClassClient, mockstagramapi.ClassMalformed,
		mockstagramapi.ClassOversize, mockstagramapi.ClassInvalid, mockstagramapi.ClassCircuitOpen}
	require.Len(t, apiClasses, countClassConstants(t, "../mockstagramapi/errors.go"),
		"a new mockstagramapi class: add it here and to metrics.preinitialize")
	require.Equal(t, handlers.ClassExpired, middleware.ClassExpired)
	failureClasses := append(append([]string{}, apiClasses...), handlers.ClassExpired)

	gobreakerTransition := func(from, to gobreaker.State) string { return from.String() + "/" + to.String() }
	want := map[string][]string{
		"mockstagram_fetch_failures_total":   failureClasses,
		"mockstagram_suspicion_checks_total": append(append([]string{}, failureClasses...), "suspicious", "not_suspicious"),
		"mockstagram_dead_letters_total":     {messages.TopicFetcherDLQ, messages.TopicSuspicionDLQ},
		"mockstagram_dead_letters_archived_total": {
			messages.TopicFetcherDLQ, messages.TopicResultDLQ, messages.TopicSuspicionDLQ},
		"mockstagram_messages_given_up_total": {
			messages.HandlerFetcher + "/" + middleware.ClassRedeliveryLimit, messages.HandlerFetcher + "/" + middleware.ClassExpired,
			messages.HandlerRecorder + "/" + middleware.ClassRedeliveryLimit, messages.HandlerRecorder + "/" + middleware.ClassExpired,
			messages.HandlerSuspicion + "/" + middleware.ClassRedeliveryLimit},
		"mockstagram_fetch_breaker_transitions_total": {
			gobreakerTransition(gobreaker.StateClosed, gobreaker.StateOpen),
			gobreakerTransition(gobreaker.StateOpen, gobreaker.StateHalfOpen),
			gobreakerTransition(gobreaker.StateHalfOpen, gobreaker.StateClosed),
			gobreakerTransition(gobreaker.StateHalfOpen, gobreaker.StateOpen)},
	}
	for name, values := range want {
		sort.Strings(values)
		got := series[name]
		sort.Strings(got)
		assert.Equal(t, values, got, name)
	}
	assert.Len(t, series, len(want), "every labelled counter is pre-initialized: %v", keys(series))
}

// countClassConstants counts the exported Class* constants of a Go file.
func countClassConstants(t *testing.T, path string) int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	require.NoError(t, err)
	n := 0
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				if strings.HasPrefix(name.Name, "Class") {
					n++
				}
			}
		}
	}
	return n
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
