package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store/memory"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		change  registry.Change
		want    []int64
		wantErr string
	}{
		{"range", registry.Change{Range: "5-7"}, []int64{5, 6, 7}, ""},
		{"pks", registry.Change{PKs: []int64{9, 3}}, []int64{9, 3}, ""},
		{"both", registry.Change{Range: "1-2", PKs: []int64{10}}, []int64{1, 2, 10}, ""},
		{"empty", registry.Change{}, nil, "give a range"},
		{"bad range", registry.Change{Range: "9-1"}, nil, "want 0 < FROM <= TO"},
		{"junk range", registry.Change{Range: "a-b"}, nil, "bad start"},
		{"zero pk", registry.Change{PKs: []int64{0}}, nil, "pk 0 is not positive"},
		{"too many pks", registry.Change{PKs: make([]int64, registry.MaxExplicitPKs+1)}, nil, "use a range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.change.Resolve()
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, registry.ErrInvalid))
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestAddRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New(clockwork.NewFakeClock())
	svc := registry.New(st)
	n, err := svc.Add(ctx, registry.Change{Range: "100-109"})
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	n, err = svc.Add(ctx, registry.Change{PKs: []int64{100, 200}})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "100 was already tracked")
	n, err = svc.Remove(ctx, registry.Change{PKs: []int64{105, 999}})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	pks, _, err := st.ActivePKs(ctx)
	require.NoError(t, err)
	assert.Equal(t, []int64{100, 101, 102, 103, 104, 106, 107, 108, 109, 200}, pks)
	_, err = svc.Add(ctx, registry.Change{})
	assert.ErrorIs(t, err, registry.ErrInvalid)
}
