package test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/simulator"
)

// The suspicion rounds run beside the per-minute pipeline: with a one-minute
// interval, every tracked pk with data gets the simulator's is_suspicious
// answer, each pk is asked once per round, and the API serves the answer.
func TestSuspicionEndToEnd(t *testing.T) {
	for _, su := range []setup{{config.BrokerGoChannel, "memory"}, {config.BrokerGoChannel, "postgres"}} {
		t.Run(su.String(), func(t *testing.T) {
			cfg := testConfig(t, su)
			cfg.SuspicionInterval = time.Minute
			p := startPipeline(t, cfg)
			ctx := context.Background()

			// Minute 0 stores the first samples; its round finds no data yet
			// (or some, for the late shards). Minute 1's round asks for every pk.
			p.runMinute(t, cfg, start, numPKs)
			p.runMinute(t, cfg, start.Add(time.Minute), numPKs)
			checked := func() int {
				n := 0
				for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
					s, err := p.store.Summary(ctx, pk)
					require.NoError(t, err)
					if s.Suspicion != nil && !s.Suspicion.CheckedAt.Before(start.Add(time.Minute)) {
						n++
					}
				}
				return n
			}
			// The rounds run on the fake clock: a scheduler timer set late (the
			// machine is busy) fires only when the clock moves on, so the clock
			// keeps moving, a second per 100 ms, while the test waits (at most
			// into minute 3; answers of rounds 12:01 to 12:03 all count).
			deadline := time.Now().Add(60 * time.Second)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for checked() < numPKs {
				require.True(t, time.Now().Before(deadline), "timed out waiting for every pk checked from minute 1 on: %d of %d", checked(), numPKs)
				if p.clock.Now().Before(start.Add(3*time.Minute + 30*time.Second)) {
					p.clock.Advance(time.Second)
				}
				<-tick.C
			}

			suspicious := 0
			for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
				s, err := p.store.Summary(ctx, pk)
				require.NoError(t, err)
				require.NotNil(t, s.Suspicion, "pk %d", pk)
				assert.Equal(t, simulator.Suspicious(pk), s.Suspicion.Suspicious, "pk %d", pk)
				assert.True(t, s.Suspicion.CheckedAt.Before(start.Add(4*time.Minute)), "pk %d checked at %s", pk, s.Suspicion.CheckedAt)
				if s.Suspicion.Suspicious {
					suspicious++
				}
			}
			require.Positive(t, suspicious, "the simulator marks a few percent suspicious")
			// Each pk was asked at most once per round (rounds 12:00 to 12:03).
			asked := testutil.ToFloat64(p.metrics.SuspicionChecks.WithLabelValues("suspicious")) +
				testutil.ToFloat64(p.metrics.SuspicionChecks.WithLabelValues("not_suspicious"))
			assert.GreaterOrEqual(t, asked, float64(numPKs))
			assert.LessOrEqual(t, asked, float64(4*numPKs))
			assert.Zero(t, testutil.ToFloat64(p.metrics.DeadLetters.WithLabelValues(messages.TopicSuspicionDLQ)), "no check failed")

			// The API serves the answer.
			pk := int64(firstPK)
			for ; !simulator.Suspicious(pk); pk++ {
			}
			resp, err := http.Get("http://" + p.http.Addr + "/api/v1/influencers/" + strconv.FormatInt(pk, 10))
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var body struct {
				Suspicious         *bool   `json:"suspicious"`
				SuspicionCheckedAt *string `json:"suspicionCheckedAt"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			require.NotNil(t, body.Suspicious)
			assert.True(t, *body.Suspicious)
			require.NotNil(t, body.SuspicionCheckedAt)
		})
	}
}
