package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store/memory"
)

// countingRegistry applies changes to a real editor and counts the pks it
// was asked to change.
type countingRegistry struct {
	editor *registry.Editor
	pks    int64
}

func (c *countingRegistry) Add(ctx context.Context, ch registry.Change) (int, error) {
	n, err := ch.Size()
	c.pks += n
	if err != nil {
		return 0, err
	}
	return c.editor.Add(ctx, ch)
}

func (c *countingRegistry) Remove(ctx context.Context, ch registry.Change) (int, error) {
	return c.editor.Remove(ctx, ch)
}

// TestRegistryAddSizeLimit: a change above registry.MaxAPIPKs is refused
// with 400 and the CLI command to use, before the store sees any of it; one
// at the limit is applied.
func TestRegistryAddSizeLimit(t *testing.T) {
	t.Parallel()
	s := memory.New(clockwork.NewFakeClock())
	reg := &countingRegistry{editor: registry.New(s)}
	h := httpapi.New(s, clockwork.NewFakeClock(), discard(), nil, httpapi.Options{Registry: reg, AdminToken: adminToken}).Handler(nil, true)
	post := func(body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/api/v1/registry", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}

	for _, body := range []string{
		`{"range": "1000000-10999999"}`,
		`{"range": "1-100000", "pks": [100001]}`,
	} {
		code, out := post(body)
		assert.Equal(t, http.StatusBadRequest, code, body)
		assert.Contains(t, out, "more than the admin API takes (100000); use 'mockstagram registry add --range FROM-TO'", body)
	}
	assert.Zero(t, reg.pks, "refused before the editor")
	tracked, _, err := s.ActivePKs(context.Background())
	require.NoError(t, err)
	assert.Empty(t, tracked)

	code, out := post(`{"range": "1-100000"}`)
	assert.Equal(t, http.StatusOK, code)
	var res httpapi.RegistryResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	assert.Equal(t, httpapi.RegistryResult{Changed: registry.MaxAPIPKs}, res)
}
