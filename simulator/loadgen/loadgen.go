// Package loadgen is a plain load generator for the Mockstagram API: a fixed
// number of workers sending keep-alive GETs round-robin over a pk range (or
// to one fixed path), as fast as they can or at a set rate, used to measure
// a server's maximum request rate or its latency under a read load.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/mockstagram/pipeline/influencer"
)

// DefaultConcurrency is used when Config.Concurrency is 0.
const DefaultConcurrency = 64

// Config configures a run. It stops at whichever of Duration, MaxRequests and
// the context comes first; at least one of Duration and MaxRequests must be
// set, so a run is always bounded.
type Config struct {
	BaseURL     string           // e.g. http://127.0.0.1:3000
	PKs         influencer.Range // pks requested round-robin (GET /api/v1/influencers/{pk})
	Path        string           // instead, GET this path (e.g. /api/v1/stats); PKs unused
	Concurrency int              // workers, each with its own keep-alive connection; default 64
	Rate        float64          // requests per second, all workers together; 0 = as fast as they go
	Duration    time.Duration    // 0 = no time limit
	MaxRequests int64            // 0 = no request limit
}

// Validate reports every problem of the configuration, joined, or nil.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("base URL: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("base URL %q: want http(s)://host[:port]", c.BaseURL))
	}
	if c.Path != "" {
		if !strings.HasPrefix(c.Path, "/") {
			errs = append(errs, fmt.Errorf("path %q: want a path starting with /", c.Path))
		}
	} else if c.PKs.From <= 0 || c.PKs.To < c.PKs.From {
		errs = append(errs, fmt.Errorf("pks %d-%d: want 0 < From <= To", c.PKs.From, c.PKs.To))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g: must not be negative", c.Rate))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d: must not be negative", c.Concurrency))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %s: must not be negative", c.Duration))
	}
	if c.MaxRequests < 0 {
		errs = append(errs, fmt.Errorf("max requests %d: must not be negative", c.MaxRequests))
	}
	if c.Duration == 0 && c.MaxRequests == 0 {
		errs = append(errs, errors.New("unbounded run: set a duration or max requests"))
	}
	return errors.Join(errs...)
}

// Result summarises a run. Requests counts completed requests (answered, or
// failed for a reason other than the end of the run); Errors are those that
// were not a 200 or failed in transport, NotFound those of them answered 404.
type Result struct {
	Requests, OK, Errors int64
	NotFound             int64
	Elapsed              time.Duration
	PerSecond            float64 // Requests / Elapsed
	P50, P99             time.Duration
}

// Run sends GETs until the run is over and reports what it measured. It
// returns an error only for an invalid configuration.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	conc := cfg.Concurrency
	if conc == 0 {
		conc = DefaultConcurrency
	}
	if cfg.MaxRequests > 0 && int64(conc) > cfg.MaxRequests {
		conc = int(cfg.MaxRequests)
	}
	// The run is timed from before its deadline is set, so Elapsed is never
	// shorter than Duration.
	start := time.Now()
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(cfg.Duration))
		defer cancel()
	}

	transport := &http.Transport{
		Proxy:               nil, // direct, even if a proxy is set in the environment
		MaxIdleConns:        conc,
		MaxIdleConnsPerHost: conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	g := generator{
		client: client,
		prefix: strings.TrimRight(cfg.BaseURL, "/") + "/api/v1/influencers/",
		pks:    cfg.PKs,
		max:    cfg.MaxRequests,
	}
	if cfg.Path != "" {
		g.fixed = strings.TrimRight(cfg.BaseURL, "/") + cfg.Path
	}
	if cfg.Rate > 0 {
		g.limit = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	hists := make([]histogram, conc)
	results := make([]Result, conc)
	var wg sync.WaitGroup
	for i := range conc {
		wg.Go(func() { results[i] = g.work(ctx, &hists[i]) })
	}
	wg.Wait()

	var res Result
	res.Elapsed = time.Since(start)
	var all histogram
	for i := range conc {
		res.Requests += results[i].Requests
		res.OK += results[i].OK
		res.Errors += results[i].Errors
		res.NotFound += results[i].NotFound
		all.merge(&hists[i])
	}
	if res.Elapsed > 0 {
		res.PerSecond = float64(res.Requests) / res.Elapsed.Seconds()
	}
	res.P50, res.P99 = all.quantile(0.50), all.quantile(0.99)
	return res, nil
}

type generator struct {
	client *http.Client
	prefix string
	fixed  string        // the URL of every request when Config.Path is set
	limit  *rate.Limiter // nil: no rate limit
	pks    influencer.Range
	max    int64
	issued atomic.Int64
}

// work is one worker: it claims request numbers until the limit or the end of
// the run, and counts its own results.
func (g *generator) work(ctx context.Context, h *histogram) Result {
	var res Result
	size := g.pks.To - g.pks.From + 1
	buf := make([]byte, 0, len(g.prefix)+20)
	for ctx.Err() == nil {
		if g.limit != nil && g.limit.Wait(ctx) != nil {
			break // the run ends before the next request may go
		}
		n := g.issued.Add(1)
		if g.max > 0 && n > g.max {
			break
		}
		url := g.fixed
		if url == "" {
			pk := g.pks.From + (n-1)%size
			buf = strconv.AppendInt(append(buf[:0], g.prefix...), pk, 10)
			url = string(buf)
		}
		t0 := time.Now()
		status, err := g.get(ctx, url)
		d := time.Since(t0)
		if err != nil && ctx.Err() != nil {
			break // cut off by the end of the run: not a measured request
		}
		res.Requests++
		h.record(d)
		if err == nil && status == http.StatusOK {
			res.OK++
		} else {
			res.Errors++
			if status == http.StatusNotFound {
				res.NotFound++
			}
		}
	}
	return res
}

// get sends one GET and drains the body so the connection is reused.
func (g *generator) get(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("new request: %w", err)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("read body of %s: %w", url, err)
	}
	return resp.StatusCode, nil
}
