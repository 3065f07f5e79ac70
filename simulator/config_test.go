package simulator

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	good := Config{Range: testRange}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"zero but range", good, nil},
		{"everything set", Config{
			Mode: Deterministic, Range: testRange, Seed: -3,
			ErrorRate: 0.1, RateLimitRate: 0.05, RetryAfter: 2 * time.Second,
			Latency: time.Millisecond, LatencyJitter: time.Millisecond, SpikeRate: 0.01, SpikeLatency: time.Second,
			TimeoutRate: 0.01, MalformedRate: 0.01, OversizeRate: 0.01, UnknownRate: 0.5,
			MaxInFlight: 4, Capacity: 4800, SuspiciousDelayMin: 0, SuspiciousDelayMax: time.Nanosecond,
		}, nil},
		{"fractional capacity", Config{Range: testRange, Capacity: 0.5}, nil},
		{"highest capacity", Config{Range: testRange, Capacity: 1e9}, nil},
		{"capacity above a nanosecond per request", Config{Range: testRange, Capacity: 2e9}, []string{"capacity 2e+09"}},
		{"infinite capacity", Config{Range: testRange, Capacity: math.Inf(1)}, []string{"capacity +Inf"}},
		{"exclusive rates sum to exactly one", Config{Range: testRange, ErrorRate: 0.5, RateLimitRate: 0.5}, nil},
		{"single pk", Config{Range: influencer.Range{From: 1, To: 1}}, nil},
		{"unknown mode", Config{Range: testRange, Mode: "chaos"}, []string{`mode "chaos"`}},
		{"zero range", Config{}, []string{"range 0-0"}},
		{"reversed range", Config{Range: influencer.Range{From: 10, To: 5}}, []string{"range 10-5"}},
		{"huge range", Config{Range: influencer.Range{From: 1, To: 20_000_000}}, []string{"more than"}},
		{"exclusive rates over one", Config{Range: testRange, ErrorRate: 0.6, MalformedRate: 0.6}, []string{"sum to"}},
		{"every problem at once", Config{
			Mode: "x", ErrorRate: -0.1, RateLimitRate: 1.5, SpikeRate: math.NaN(), TimeoutRate: 2,
			MalformedRate: -1, OversizeRate: 7, UnknownRate: -0.5,
			RetryAfter: -1, Latency: -1, LatencyJitter: -1, SpikeLatency: -1,
			SuspiciousDelayMin: 5 * time.Second, SuspiciousDelayMax: time.Second, MaxInFlight: -1,
			Capacity: math.NaN(),
		}, []string{
			`mode "x"`, "range 0-0",
			"error rate -0.1", "rate-limit rate 1.5", "spike rate NaN", "timeout rate 2",
			"malformed rate -1", "oversize rate 7", "unknown rate -0.5",
			"retry-after -1ns", "latency -1ns", "latency jitter -1ns", "spike latency -1ns",
			"suspicious delay max 1s is less than min 5s", "capacity NaN", "max in flight -1",
		}},
		{"negative capacity", Config{Range: testRange, Capacity: -1}, []string{"capacity -1"}},
		{"negative suspicious delays", Config{Range: testRange, SuspiciousDelayMin: -1, SuspiciousDelayMax: -2}, []string{
			"suspicious delay min -1ns", "suspicious delay max -2ns",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("error lists %d problems, want %d:\n%v", n, len(tc.want), err)
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}, clockwork.NewFakeClock()); err == nil {
		t.Fatal("New accepted a config without a range")
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Range: testRange}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Mode != RandomWalk || c.RetryAfter != time.Second ||
		c.SuspiciousDelayMin != time.Second || c.SuspiciousDelayMax != 10*time.Second {
		t.Errorf("defaults not applied: %+v", c)
	}
	if s.walk == nil || s.sem != nil || s.queue != nil || s.padding != nil {
		t.Error("random walk state missing, or unneeded semaphore, queue or padding allocated")
	}
}
