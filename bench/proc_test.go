package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		err        bool
	}{
		{"plain", "1234 (mockstagram) S 1 1234 1234 0 -1 4194560 9000 0 12 0 150 42 0 0 20 0 9 0 100 0 0", 192 * clockTick, false},
		{"name with spaces and parens", "77 (post gres: (x) y) R 1 77 77 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 10 * clockTick, false},
		{"no name", "1234 mockstagram S 1", 0, true},
		{"short", "1 (a) S 1 2 3", 0, true},
		{"not a number", "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 1 0 0 20 0 1 0 5", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat([]byte(tc.stat))
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	hwm, rss, anon, err := parseStatus([]byte("Name:\tpostgres\nVmPeak:\t  300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    2048 kB\nRssFile:\t  8192 kB\nThreads:\t1\n"))
	require.NoError(t, err)
	assert.Equal(t, int64(20480<<10), hwm)
	assert.Equal(t, int64(10240<<10), rss)
	assert.Equal(t, int64(2048<<10), anon)

	hwm, rss, anon, err = parseStatus([]byte("Name:\tkthreadd\nState:\tS (sleeping)\n"))
	require.NoError(t, err, "a kernel thread has no memory lines")
	assert.Zero(t, hwm+rss+anon)

	_, _, _, err = parseStatus([]byte("VmRSS:\t10 MB\n"))
	require.Error(t, err)
}

func TestReadProcSelf(t *testing.T) {
	t.Parallel()
	s, err := readProc(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, s.RSS, "this process is resident")
	assert.GreaterOrEqual(t, s.HWM, s.RSS)
	_, err = readProc(-1)
	require.Error(t, err)
}

func TestSampler(t *testing.T) {
	t.Parallel()
	// The fake /proc: what each pid reads at the current round.
	procs := map[int]procSample{}
	pids := map[string][]int{"stage": {1}, "postgres": {10, 11}}
	s := newSampler(
		procGroup{Name: "stage", PIDs: func(context.Context) []int { return pids["stage"] }},
		procGroup{Name: "postgres", Multi: true, PIDs: func(context.Context) []int { return pids["postgres"] }},
	)
	s.read = func(pid int) (procSample, error) {
		p, ok := procs[pid]
		if !ok {
			return procSample{}, os.ErrNotExist
		}
		return p, nil
	}
	ctx := context.Background()
	sec := time.Second

	// Round 1: processes that already ran count from here on.
	procs[1] = procSample{CPU: 5 * sec, HWM: 100, RSS: 90}
	procs[10] = procSample{CPU: 50 * sec, RSS: 1000, RSSAnon: 10}
	procs[11] = procSample{CPU: 7 * sec, RSS: 1000, RSSAnon: 20}
	u := s.snapshot(ctx)
	assert.Equal(t, procUsage{CPU: 0, Peak: 100}, u["stage"])
	assert.Equal(t, procUsage{CPU: 0, Peak: 30}, u["postgres"], "private memory summed")

	// Round 2: a new backend counts from its start; one is gone.
	procs[1] = procSample{CPU: 6 * sec, HWM: 150, RSS: 80}
	procs[10] = procSample{CPU: 52 * sec, RSSAnon: 15}
	delete(procs, 11)
	procs[12] = procSample{CPU: 3 * sec, RSSAnon: 5}
	pids["postgres"] = []int{10, 11, 12}
	u = s.snapshot(ctx)
	assert.Equal(t, procUsage{CPU: sec, Peak: 150}, u["stage"])
	assert.Equal(t, procUsage{CPU: 2*sec + 3*sec, Peak: 30}, u["postgres"], "the gone backend keeps what it was last seen using")
	assert.Equal(t, []string{"stage", "postgres"}, s.groupNames())
}
