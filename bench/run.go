package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/postgres"
)

// CompleteGrace is how long after the end of the last measured minute a
// wiring waits for that minute to be complete (every influencer stored or
// missed) before it is reported as it is.
const CompleteGrace = time.Minute

// WarmUp is the least time between a wiring's start and its first
// measured minute (the partial minute it started in, and more when it
// started in the minute's last seconds).
const WarmUp = 15 * time.Second

// procSpec is a pipeline process of a wiring.
type procSpec struct {
	Name     string
	Args     []string
	Env      []string // on top of the wiring's environment
	HTTPAddr string   // health (and the API, for run and api)
	Meter    string   // the node's meter address; "" = a plain stage
	API      bool     // serves the HTTP API the readers read
}

// planPipeline is the pipeline processes of w, in start order (the
// scheduler last, so nothing is scheduled before it can be fetched and
// recorded). addr gives a free loopback address per call.
func planPipeline(w Wiring, influencers int, addr func() (string, error)) ([]procSpec, error) {
	node := func(stage string) (procSpec, error) {
		h, err := addr()
		if err != nil {
			return procSpec{}, err
		}
		m, err := addr()
		if err != nil {
			return procSpec{}, err
		}
		return procSpec{Name: stage, HTTPAddr: h, Meter: m, API: stage == "run",
			Args: []string{"bench-node", "--stage", stage, "--influencers", fmt.Sprint(influencers), "--meter-addr", m}}, nil
	}
	stage := func(name string) (procSpec, error) {
		h, err := addr()
		if err != nil {
			return procSpec{}, err
		}
		return procSpec{Name: name, HTTPAddr: h, API: name == "api", Args: []string{name}}, nil
	}
	var out []procSpec
	if w.Staged {
		rec, err := node("recorder")
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
		for _, name := range []string{"api", "fetcher", "scheduler"} {
			p, err := stage(name)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	} else {
		p, err := node("run")
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	for i := range out {
		out[i].Env = []string{"MOCKSTAGRAM_HTTP_ADDR=" + out[i].HTTPAddr}
	}
	return out, nil
}

// wiringEnv is the environment every pipeline process of w gets (a bare
// KEY: unset).
func wiringEnv(w Wiring, simURL, kafka, db, bootstrap string) []string {
	env := []string{
		"MOCKSTAGRAM_API_URL=" + simURL,
		"MOCKSTAGRAM_BROKER=" + w.Broker,
		"MOCKSTAGRAM_DATABASE_URL=" + db,
		"MOCKSTAGRAM_REGISTRY_BOOTSTRAP=" + bootstrap, // empty: none
	}
	if w.Scenario() {
		// The scenarios measure the adaptive limit, whatever the environment says.
		env = append(env, "MOCKSTAGRAM_FETCH_ADAPTIVE=true")
	}
	if kafka != "" {
		return append(env, "MOCKSTAGRAM_KAFKA_BROKERS="+kafka)
	}
	return append(env, "MOCKSTAGRAM_KAFKA_BROKERS")
}

// simulatorArgs are the arguments of the deterministic simulator on pks at
// addr; capacity > 0 limits it to that many requests per second.
func simulatorArgs(addr string, pks influencer.Range, capacity float64) []string {
	args := []string{"simulate", "--mode", "deterministic", "--addr", addr, "--range", pks.String()}
	if capacity > 0 {
		args = append(args, "--capacity", strconv.FormatFloat(capacity, 'g', -1, 64))
	}
	return args
}

// wiring runs one wiring and reports it; a failure is the report's Error.
func (r runner) wiring(ctx context.Context, w Wiring, limits Limits) (wr WiringReport) {
	n := w.Influencers(r.c.Influencers, r.c.Capacity)
	pks := influencer.Range{From: FirstPK, To: FirstPK + int64(n) - 1}
	capacity := 0.0 // the simulator's: unlimited
	if w.Scenario() {
		capacity = r.c.Capacity
	}
	wr = WiringReport{Name: w.Name, Description: w.Describe(), Influencers: n}
	fail := func(err error) WiringReport {
		wr.Error = err.Error()
		return wr
	}
	ctx, cancel := context.WithTimeout(ctx, 2*StartTimeout+time.Duration(r.c.Minutes+1)*time.Minute+CompleteGrace+5*time.Minute)
	defer cancel()
	r.logf("%s (%s): starting", w.Name, w.Describe())

	var children []*child
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			children[i].Stop()
		}
	}()
	var groups []procGroup
	roles := map[string]string{}
	add := func(c *child, role string) {
		children = append(children, c)
		groups = append(groups, procGroup{Name: c.name, PIDs: func(context.Context) []int { return []int{c.PID()} }})
		roles[c.name] = role
	}

	db, bootstrap := "", pks.String()
	if w.Postgres {
		var drop func()
		var err error
		if db, drop, err = createDB(ctx, r.c.AdminURL, w.Name); err != nil {
			return fail(err)
		}
		defer drop()
		if err := prepareDB(ctx, db, pks); err != nil {
			return fail(err)
		}
		bootstrap = ""
		groups = append(groups, r.postgresGroup(db))
		roles[RolePostgres] = RolePostgres
	}
	sim, simURL, err := r.startSimulator(ctx, w.Name+"-simulator", pks, capacity)
	if err != nil {
		return fail(err)
	}
	add(sim, RoleSimulator)
	kafka := ""
	if w.Kafka() {
		if kafka, err = freeAddr(); err != nil {
			return fail(err)
		}
		k, err := startChild(ctx, r.c.WorkDir, w.Name+"-kafka-dev", r.c.Binary, r.env(r.childDefaults()...), "kafka-dev", "--addr", kafka)
		if err != nil {
			return fail(err)
		}
		add(k, RoleBroker)
		if err := waitTCP(ctx, k, kafka, time.Minute); err != nil {
			return fail(err)
		}
	}
	procs, err := planPipeline(w, n, freeAddr)
	if err != nil {
		return fail(err)
	}
	base := append(r.childDefaults(), wiringEnv(w, simURL, kafka, db, bootstrap)...)
	var meterURL, apiURL string
	for _, p := range procs {
		env := append(append([]string{}, base...), p.Env...)
		c, err := startChild(ctx, r.c.WorkDir, w.Name+"-"+p.Name, r.c.Binary, r.env(env...), p.Args...)
		if err != nil {
			return fail(err)
		}
		add(c, RolePipeline)
		if err := waitHTTP(ctx, c, "http://"+p.HTTPAddr+"/readyz", StartTimeout); err != nil {
			return fail(err)
		}
		if p.Meter != "" {
			meterURL = "http://" + p.Meter + MeterPath
			if err := waitHTTP(ctx, c, meterURL, StartTimeout); err != nil {
				return fail(err)
			}
		}
		if p.API {
			apiURL = "http://" + p.HTTPAddr
		}
	}

	smp := newSampler(groups...)
	sctx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	go smp.run(sctx, time.Second)

	first := time.Now().Add(WarmUp).Truncate(time.Minute).Add(time.Minute)
	last := first.Add(time.Duration(r.c.Minutes-1) * time.Minute)
	end := last.Add(time.Minute)
	r.logf("%s: running %d influencers; measuring minutes %s..%s", w.Name, n, first.Format("15:04"), last.Format("15:04"))
	readsDone := make(chan *Reads, 1)
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	go func() {
		readsDone <- readLoad(readCtx, apiURL, db, r.c.Readers, r.c.ReadRate, pks, first, end)
	}()

	var mark0, mark1 map[string]procUsage
	var markAt0, markAt1 time.Time
	var meter []MeterMinute
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	nextProgress := time.Now().Add(r.c.Progress)
	for {
		now := time.Now()
		if mark0 == nil && !now.Before(first) {
			mark0, markAt0 = smp.snapshot(ctx), time.Now()
		}
		if mark1 == nil && !now.Before(end) {
			mark1, markAt1 = smp.snapshot(ctx), time.Now()
		}
		for _, c := range children {
			if done, err := c.exited(); done {
				return fail(fmt.Errorf("%s exited during the run: %w (log in %s)", c.name, err, r.c.WorkDir))
			}
		}
		complete := false
		if !now.Before(nextProgress) || mark1 != nil {
			if meter, err = fetchMeter(ctx, meterURL); err != nil {
				return fail(err)
			}
			complete = meterComplete(meter, last, n)
		}
		if !now.Before(nextProgress) {
			nextProgress = nextProgress.Add(r.c.Progress)
			r.logf("%s", progressLine(w.Name, now, first, r.c.Minutes, meter))
		}
		if mark1 != nil && (complete || !now.Before(end.Add(CompleteGrace))) {
			break
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-tick.C:
		}
	}
	stopReaders()
	wr.Reads = <-readsDone

	// Stop the pipeline before the check, so nothing writes while it reads.
	for i := len(children) - 1; i >= 0; i-- {
		if roles[children[i].name] == RolePipeline {
			children[i].Stop()
		}
	}
	var check *DBCheck
	if w.Postgres {
		r.logf("%s: checking the database", w.Name)
		c, err := CheckDB(ctx, db, pks, first, end)
		if err != nil {
			return fail(err)
		}
		check = &c
	}
	usage := map[string]procUsage{}
	for name, u1 := range mark1 {
		usage[name] = procUsage{CPU: u1.CPU - mark0[name].CPU, Peak: u1.Peak}
	}
	var procRows []procRow
	for _, g := range groups {
		procRows = append(procRows, procRow{name: g.Name, role: roles[g.Name], usage: usage[g.Name]})
	}
	wr = buildReport(wr, first, r.c.Minutes, meter, check, procRows, markAt1.Sub(markAt0), limits, w.Postgres)
	if w.Scenario() {
		wr.Capacity = capacityReport(wr, w, capacity)
	}
	return wr
}

// prepareDB migrates db and tracks the run's pks, so the stages start on a
// ready registry (none of them bootstraps it).
func prepareDB(ctx context.Context, db string, pks influencer.Range) error {
	s, err := postgres.New(ctx, db, slog.New(slog.DiscardHandler), clockwork.NewRealClock())
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Track(ctx, pks.PKs())
	return err
}

func meterComplete(ms []MeterMinute, minute time.Time, influencers int) bool {
	for _, m := range ms {
		if m.Minute.Equal(minute) {
			return m.Completed != nil || m.Stored+m.Missed >= influencers
		}
	}
	return false
}

// progressLine is one line of progress: the minute now, and what the
// meter counted so far for the measured minutes and the latest minute.
func progressLine(name string, now, first time.Time, minutes int, ms []MeterMinute) string {
	var stored, missed int
	var latest *MeterMinute
	end := first.Add(time.Duration(minutes) * time.Minute)
	for i := range ms {
		m := &ms[i]
		if !m.Minute.Before(first) && m.Minute.Before(end) {
			stored += m.Stored
			missed += m.Missed
		}
		if latest == nil || m.Minute.After(latest.Minute) {
			latest = m
		}
	}
	phase := "warm-up"
	if !now.Before(first) {
		n := int(now.Sub(first)/time.Minute) + 1
		phase = fmt.Sprintf("minute %d/%d", min(n, minutes), minutes)
		if n > minutes {
			phase = "waiting for the last minute"
		}
	}
	line := fmt.Sprintf("%s %s (%s): measured minutes stored %d, missed %d", name, phase, now.Format("15:04:05"), stored, missed)
	if latest != nil {
		line += fmt.Sprintf("; minute %s so far stored %d, missed %d", latest.Minute.Local().Format("15:04"), latest.Stored, latest.Missed)
	}
	return line
}

// procRow is a measured process group before it is reported.
type procRow struct {
	name, role string
	usage      procUsage
}

// buildReport completes wr from the meter's minutes, the database check
// (nil for the memory store: the meter's counts and value checks are used),
// the processes' usage over wall and the limits.
func buildReport(wr WiringReport, first time.Time, minutes int, meter []MeterMinute, check *DBCheck, procs []procRow, wall time.Duration, limits Limits, pg bool) WiringReport {
	byMinute := map[int64]MeterMinute{}
	for _, m := range meter {
		byMinute[m.Minute.Unix()] = m
	}
	var commits []weighted
	var checked, wrong int64
	for _, m := range meter {
		checked += int64(m.Checked)
		wrong += int64(m.Wrong)
	}
	n := int64(wr.Influencers)
	wr.Minutes = nil
	for i := range minutes {
		mi := first.Add(time.Duration(i) * time.Minute).UTC()
		mm := byMinute[mi.Unix()]
		row := MinuteRow{Minute: mi, Stored: int64(mm.Stored), Missed: int64(mm.Missed), ByClass: map[string]int64{}}
		var minuteCommits []weighted
		for k, v := range mm.ByClass {
			row.ByClass[k] = int64(v)
		}
		if check != nil && i < len(check.Minutes) {
			dm := check.Minutes[i]
			row.Stored, row.Missed, row.ByClass = dm.Stored, dm.Missed(), dm.ByClass
		}
		row.NotStored = max(0, n-row.Stored-row.Missed)
		if n > 0 {
			row.StoredShare = float64(row.Stored) / float64(n)
		}
		if mm.Completed != nil {
			row.CompleteAfter = new(Dur(mm.Completed.Sub(mi.Add(time.Minute))))
		}
		for _, c := range mm.Commits {
			minuteCommits = append(minuteCommits, weighted{v: time.Duration(c[0]), w: int(c[1])})
		}
		commits = append(commits, minuteCommits...)
		row.FreshnessP50 = Dur(weightedQuantile(minuteCommits, 0.50))
		row.FreshnessP99 = Dur(weightedQuantile(minuteCommits, 0.99))
		wr.Minutes = append(wr.Minutes, row)
	}
	wr.FreshnessP50 = Dur(weightedQuantile(commits, 0.50))
	wr.FreshnessP99 = Dur(weightedQuantile(commits, 0.99))

	stored := wr.Stored()
	for _, p := range procs {
		row := ProcRow{Name: p.name, Role: p.role, CPU: Dur(p.usage.CPU), PeakRSS: p.usage.Peak}
		if stored > 0 {
			row.CPUPerSample = Dur(p.usage.CPU / time.Duration(stored))
		}
		if wall > 0 {
			row.Cores = p.usage.CPU.Seconds() / wall.Seconds()
		}
		wr.Processes = append(wr.Processes, row)
	}

	rate := wr.SamplesPerSecond()
	if limits.SimulatorGETs > 0 {
		wr.OfSimulatorLimit = rate / limits.SimulatorGETs
	}
	storeLimit := limits.MemoryWrites
	if pg {
		storeLimit = limits.PostgresWrites
	}
	if storeLimit > 0 {
		wr.OfStoreLimit = rate / storeLimit
	}

	c := &Check{Source: "meter", Checked: checked, Wrong: wrong}
	if check != nil {
		c = &Check{Source: "database", Checked: check.Rows, Wrong: check.Wrong, Duplicates: check.Duplicates,
			Unaccounted: check.Unaccounted(), Both: check.Both, BadSummaries: check.BadSummaries}
	} else {
		c.Unaccounted = sumRows(wr.Minutes, func(m MinuteRow) int64 { return m.NotStored })
	}
	wr.Check = c
	return wr
}
