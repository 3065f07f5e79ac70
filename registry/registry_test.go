package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// fakeTracker records the batches it gets and fails the one numbered
// failAt (1-based; 0: never).
type fakeTracker struct {
	calls   []string // "track 3" = a Track of 3 pks
	seen    []int64
	failAt  int
	changed func(pks []int64) int
}

func (f *fakeTracker) call(op string, pks []int64) (int, error) {
	f.calls = append(f.calls, fmt.Sprintf("%s %d", op, len(pks)))
	if len(f.calls) == f.failAt {
		return 0, errors.New("store down")
	}
	f.seen = append(f.seen, pks...)
	if f.changed != nil {
		return f.changed(pks), nil
	}
	return len(pks), nil
}

func (f *fakeTracker) Track(_ context.Context, pks []int64) (int, error) { return f.call("track", pks) }
func (f *fakeTracker) Untrack(_ context.Context, pks []int64) (int, error) {
	return f.call("untrack", pks)
}

func TestApplyBatches(t *testing.T) {
	t.Parallel()
	b := registry.Batch
	for _, tc := range []struct {
		name      string
		op        registry.Op
		change    registry.Change
		wantCalls []string
		wantDone  []int64
	}{
		{"small range, one batch", registry.OpAdd, registry.Change{Range: "1-5"}, []string{"track 5"}, []int64{5}},
		{"range of exactly a batch", registry.OpAdd, registry.Change{Range: fmt.Sprintf("1-%d", b)},
			[]string{fmt.Sprintf("track %d", b)}, []int64{int64(b)}},
		{"range of two and a half batches", registry.OpAdd, registry.Change{Range: fmt.Sprintf("1-%d", 2*b+b/2)},
			[]string{fmt.Sprintf("track %d", b), fmt.Sprintf("track %d", b), fmt.Sprintf("track %d", b/2)},
			[]int64{int64(b), int64(2 * b), int64(2*b + b/2)}},
		{"range and listed pks (sorted, deduplicated) in separate batches", registry.OpRemove,
			registry.Change{Range: "10-12", PKs: []int64{7, 3, 7}}, []string{"untrack 3", "untrack 2"}, []int64{3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeTracker{}
			var done []int64
			var last registry.Progress
			n, err := registry.New(f).Apply(context.Background(), tc.op, tc.change, func(p registry.Progress) {
				done = append(done, p.Done)
				last = p
			})
			require.NoError(t, err)
			assert.Equal(t, tc.wantCalls, f.calls)
			assert.Equal(t, tc.wantDone, done)
			size, err := tc.change.Size()
			require.NoError(t, err)
			assert.Equal(t, registry.Progress{Done: size, Total: size, Changed: len(f.seen)}, last)
			assert.Equal(t, len(f.seen), n)
			want, err := tc.change.Resolve()
			require.NoError(t, err)
			assert.ElementsMatch(t, slices.Compact(slices.Sorted(slices.Values(want))), f.seen, "every pk once")
		})
	}
}

func TestApplyStopsAtFailure(t *testing.T) {
	t.Parallel()
	f := &fakeTracker{failAt: 3, changed: func(pks []int64) int { return len(pks) - 1 }}
	b := registry.Batch
	n, err := registry.New(f).Add(context.Background(), registry.Change{Range: fmt.Sprintf("1-%d", 5*b)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("track: after %d of %d pks (%d changed; run it again to finish): store down", 2*b, 5*b, 2*b-2))
	assert.Equal(t, 2*b-2, n, "the batches applied before the failure")
	assert.Len(t, f.calls, 3, "no batch after the failure")

	ctx, cancel := context.WithCancel(context.Background())
	f = &fakeTracker{}
	_, err = registry.New(f).Apply(ctx, registry.OpAdd, registry.Change{Range: fmt.Sprintf("1-%d", 3*b)}, func(p registry.Progress) {
		if p.Done == int64(b) {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []string{fmt.Sprintf("track %d", b)}, f.calls, "an interrupt stops between batches")
}

func TestCheckAPI(t *testing.T) {
	t.Parallel()
	ok := registry.Change{Range: fmt.Sprintf("1-%d", registry.MaxAPIPKs)}
	require.NoError(t, ok.CheckAPI("registry add"))
	big := registry.Change{Range: fmt.Sprintf("1-%d", registry.MaxAPIPKs), PKs: []int64{registry.MaxAPIPKs + 1}}
	err := big.CheckAPI("registry add")
	require.ErrorIs(t, err, registry.ErrInvalid)
	assert.Contains(t, err.Error(), "100001 pks in one request, more than the admin API takes (100000); use 'mockstagram registry add --range FROM-TO'")
	require.ErrorIs(t, registry.Change{}.CheckAPI("registry add"), registry.ErrInvalid)
}
