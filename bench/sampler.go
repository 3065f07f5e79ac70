package bench

import (
	"context"

	"slices"
	"sync"
	"time"
)

// procGroup is a process, or a set of processes counted together (the
// PostgreSQL server), whose CPU and memory a run measures.
type procGroup struct {
	Name string
	// Multi: several processes sharing memory (PostgreSQL's shared buffers),
	// so the group's peak is the largest sum of their private memory
	// (RssAnon) seen at one sample; otherwise the peak is the process's VmHWM.
	Multi bool
	PIDs  func(ctx context.Context) []int
}

type pidState struct{ base, last time.Duration }

type groupState struct {
	pids map[int]*pidState
	peak int64
}

// sampler samples the CPU time and memory of process groups from /proc.
// The CPU of a group is what its processes used since the first sample:
// a process seen in the first sample counts from then, one that appears
// later from its start; a process that exits keeps what it was last seen
// using (up to one interval of its last work is lost).
type sampler struct {
	read   func(pid int) (procSample, error)
	groups []procGroup

	mu     sync.Mutex
	state  map[string]*groupState
	rounds int
}

func newSampler(groups ...procGroup) *sampler {
	s := &sampler{read: readProc, groups: groups, state: map[string]*groupState{}}
	for _, g := range groups {
		s.state[g.Name] = &groupState{pids: map[int]*pidState{}}
	}
	return s
}

// round takes one sample of every group.
func (s *sampler) round(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.rounds == 0
	s.rounds++
	for _, g := range s.groups {
		st := s.state[g.Name]
		var sum int64
		for _, pid := range g.PIDs(ctx) {
			p, err := s.read(pid)
			if err != nil {
				continue // gone between listing and reading
			}
			ps := st.pids[pid]
			if ps == nil {
				ps = &pidState{}
				if first {
					ps.base = p.CPU
				}
				st.pids[pid] = ps
			}
			ps.last = max(ps.last, p.CPU)
			if g.Multi {
				sum += p.RSSAnon
			} else {
				st.peak = max(st.peak, p.HWM, p.RSS)
			}
		}
		if g.Multi {
			st.peak = max(st.peak, sum)
		}
	}
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// procUsage is a group's CPU time so far and its peak memory.
type procUsage struct {
	CPU  time.Duration
	Peak int64 // bytes
}

// snapshot samples once more and returns every group's usage so far.
func (s *sampler) snapshot(ctx context.Context) map[string]procUsage {
	s.round(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]procUsage, len(s.state))
	for name, st := range s.state {
		var cpu time.Duration
		for _, ps := range st.pids {
			cpu += ps.last - ps.base
		}
		out[name] = procUsage{CPU: cpu, Peak: st.peak}
	}
	return out
}

// groupNames are the groups in the order they were given.
func (s *sampler) groupNames() []string {
	return slices.Collect(func(yield func(string) bool) {
		for _, g := range s.groups {
			if !yield(g.Name) {
				return
			}
		}
	})
}
