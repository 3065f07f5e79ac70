package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/memory"
)

var errNotCalled = errors.New("must not be called")

// summaryRanker is the memory store read through SummaryRank, with its own
// rank (the memory store tracks nothing here) and a count of calls; Summary
// and Rank fail, so the handler must not call them.
type summaryRanker struct {
	*memory.Store
	ranks map[int64]int64
	calls int
}

func (s *summaryRanker) SummaryRank(ctx context.Context, pk int64) (influencer.Summary, int64, bool, error) {
	s.calls++
	sum, err := s.Store.Summary(ctx, pk)
	if err != nil {
		return influencer.Summary{}, 0, false, err
	}
	r, ok := s.ranks[pk]
	return sum, r, ok, nil
}

func (s *summaryRanker) Summary(context.Context, int64) (influencer.Summary, error) {
	return influencer.Summary{}, fmt.Errorf("summary: %w", errNotCalled)
}

func (s *summaryRanker) Rank(context.Context, int64) (int64, error) {
	return 0, fmt.Errorf("rank: %w", errNotCalled)
}

// TestInfluencerUsesSummaryRank checks that GET /api/v1/influencers/{pk}
// reads a SummaryRanker in one call: the rank when ranked, null when not,
// 404 without data.
func TestInfluencerUsesSummaryRank(t *testing.T) {
	clock := clockwork.NewFakeClockAt(now)
	sr := &summaryRanker{Store: newStore(t, clock), ranks: map[int64]int64{1000000: 7}}
	h := httpapi.New(sr, clock, discard(), nil, httpapi.Options{}).Handler(nil, true)

	seven := int64(7)
	tests := []struct {
		pk     string
		status int
		rank   *int64
	}{
		{"1000000", http.StatusOK, &seven},
		{"2000000", http.StatusOK, nil},
		{"3000000", http.StatusNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.pk, func(t *testing.T) {
			before := sr.calls
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/influencers/"+tt.pk, nil))
			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			assert.Equal(t, before+1, sr.calls)
			if tt.status != http.StatusOK {
				return
			}
			var got httpapi.InfluencerResponse
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			assert.Equal(t, tt.rank, got.Rank)
			assert.Equal(t, tt.pk, fmt.Sprint(got.PK))
		})
	}
}
