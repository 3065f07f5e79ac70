package test

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store"
)

// chromiumPath finds Debian's chromium; CI installs it (.ci/run).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (apt-get install chromium)")
	}
	t.Skip("chromium not installed; apt-get install chromium to run the browser test")
	return ""
}

// apiProxy stands between the browser and the application so a test can
// make the API unreachable: while down, every connection is cut without an
// answer (the browser's fetch fails as with a stopped server).
type apiProxy struct {
	srv  *httptest.Server
	down atomic.Bool
}

func newAPIProxy(t *testing.T, addr string) *apiProxy {
	t.Helper()
	target, err := url.Parse("http://" + addr)
	require.NoError(t, err)
	p := &apiProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			panic(http.ErrAbortHandler) // closes the connection, logs nothing
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// browser drives one headless Chromium tab; its helpers fail the test.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1400, 1300),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	bctx, cancelTimeout := context.WithTimeout(bctx, 4*time.Minute)
	t.Cleanup(cancelTimeout)
	return &browser{t: t, ctx: bctx}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, steps...))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.TextContent(sel))
	require.NoError(b.t, err, sel)
	return strings.TrimSpace(v)
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.AttributeValue(sel, name))
	require.NoError(b.t, err, sel)
	return v.Value
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	require.NoError(b.t, err, expr)
	return v
}

// waitUntil polls a JavaScript predicate until it is truthy.
func (b *browser) waitUntil(pred string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](pred, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		// What the page shows, to tell a slow refresh from a wrong one.
		state, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`[document.querySelector("#status").textContent, location.search,
			document.querySelector("#error").textContent, [...document.querySelectorAll(".refreshable.stale")].map((e) => e.id).join(",")].join(" | ")`))
		b.t.Fatalf("waiting for %s: %v; page: %s", pred, err, state)
	}
}

// skewClock moves the page's Date.now forward by d (the page's refresh
// schedule follows Date.now): the fake clock of the browser.
func (b *browser) skewClock(d time.Duration) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`(() => {
		if (!window.__realNow) { window.__realNow = Date.now.bind(Date); window.__skew = 0; Date.now = () => window.__realNow() + window.__skew; }
		window.__skew += %d; return "ok"; })()`, d.Milliseconds()))
}

// TestDashboardInBrowser opens the dashboard served by the application (the
// same fx graph as 'run') in headless Chromium and checks what it shows
// against the store: the values, growth, movers and leaderboard; the refresh
// after a minute; the range and compare list kept in the URL across a
// reload; the step a custom range picks; the CSV link; the compare chart;
// and the stale state while the API is unreachable. It saves a screenshot as
// a test artifact (and to $MOCKSTAGRAM_SCREENSHOT when set).
func TestDashboardInBrowser(t *testing.T) {
	chromiumPath(t)

	// The page asks for "the last hour" of the browser's clock, so the fake
	// clock starts a few minutes before real time.
	first := time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Minute)
	cfg := testConfigStore(t, "memory")
	cfg.SuspicionInterval = time.Minute // the page shows an is_suspicious answer
	p := &pipeline{clock: clockwork.NewFakeClockAt(first), published: map[time.Time]float64{}}
	a := fxtest.New(t, app.Options(cfg, app.AllRoles()),
		fx.Decorate(func(clockwork.Clock) clockwork.Clock { return p.clock }),
		fx.Populate(&p.store, &p.pub, &p.metrics, &p.http))
	a.RequireStart()
	t.Cleanup(a.RequireStop)
	for i := range 3 {
		p.runMinute(t, cfg, first.Add(time.Duration(i)*time.Minute), numPKs)
	}

	const pk = firstPK + 7
	ctx := context.Background()
	var sum influencer.Summary
	waitFor(t, 30*time.Second, func() bool {
		var err error
		sum, err = p.store.Summary(ctx, pk)
		require.NoError(t, err)
		return sum.Suspicion != nil
	}, "the suspicion answer of pk %d", pk)
	rank, err := p.store.Rank(ctx, pk)
	require.NoError(t, err)

	// History for the growth windows and the movers: pk's values an hour,
	// a day and a week before its last minute, and a day-old value for a
	// few more pks (gainers and a loser), recorded straight into the store.
	last := sum.LastMinute
	bases := map[time.Time]int64{
		last.Add(-61 * time.Minute):                sum.FollowerCount - sum.FollowerCount/50 - 1,
		last.Add(-24 * time.Hour):                  sum.FollowerCount - sum.FollowerCount/10 - 1,
		last.Add(-7*24*time.Hour - 30*time.Minute): sum.FollowerCount - sum.FollowerCount/4 - 1,
	}
	for m, f := range bases {
		_, err := p.store.Record(ctx, influencer.Batch{Minute: m, Samples: []influencer.Sample{{PK: pk, Username: sum.Username,
			FollowerCount: f, FollowingCount: sum.FollowingCount, Minute: m, FetchedAt: m}}})
		require.NoError(t, err)
	}
	dayAgo := last.Add(-24 * time.Hour)
	wantGrowth := map[int64]int64{pk: sum.FollowerCount - bases[dayAgo]}
	var gainers []int64
	for q := int64(firstPK); len(gainers) < 4; q++ {
		s, err := p.store.Summary(ctx, q)
		require.NoError(t, err)
		if q == pk || s.FollowerCount < 1000 {
			continue
		}
		gainers = append(gainers, q)
		wantGrowth[q] = int64(900 - 200*(len(gainers)-1))
	}
	const loser = firstPK + 299
	wantGrowth[loser] = -77
	for q, g := range wantGrowth {
		if q == pk {
			continue
		}
		s, err := p.store.Summary(ctx, q)
		require.NoError(t, err)
		_, err = p.store.Record(ctx, influencer.Batch{Minute: dayAgo, Samples: []influencer.Sample{{PK: q, Username: s.Username,
			FollowerCount: s.FollowerCount - g, FollowingCount: s.FollowingCount, Minute: dayAgo, FetchedAt: dayAgo}}})
		require.NoError(t, err)
	}
	require.NoError(t, p.store.RecomputeMovers(ctx, p.clock.Now(), store.MoversWindow))
	var wantUp []int64
	for q, g := range wantGrowth {
		if g > 0 {
			wantUp = append(wantUp, q)
		}
	}
	slices.SortFunc(wantUp, func(x, y int64) int {
		if c := cmp.Compare(wantGrowth[y], wantGrowth[x]); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})

	proxy := newAPIProxy(t, p.http.Addr)
	b := newBrowser(t)
	b.do(
		chromedp.Navigate(proxy.srv.URL+"/"),
		chromedp.WaitVisible(`#leaderboard tbody tr`),
		chromedp.SetValue(`#pk`, strconv.Itoa(pk)),
		chromedp.Click(`#search button[type=submit]`),
		chromedp.WaitVisible(`#influencer`),
		chromedp.WaitVisible(`#chart-counts canvas`),
	)
	b.waitUntil(`document.querySelector("#status").classList.contains("ok")`)

	en := message.NewPrinter(language.English)
	num := func(n int64) string { return en.Sprintf("%d", n) }
	assert.Equal(t, sum.Username, b.text(`#inf-username`))
	assert.Equal(t, num(sum.FollowerCount), b.text(`#inf-followers`))
	assert.Equal(t, num(sum.FollowingCount), b.text(`#inf-following`))
	assert.Equal(t, "#"+num(rank), b.text(`#inf-rank`))
	wantSuspicious := map[bool]string{true: "yes", false: "no"}[simulator.Suspicious(pk)]
	assert.Equal(t, wantSuspicious, b.text(`#inf-suspicious`))
	assert.Equal(t, "3", b.attr(`#chart-counts`, "data-points"), "the chart plots the three stored minutes of the last hour")
	assert.Equal(t, "1m", b.attr(`#chart-counts`, "data-step"))
	assert.Equal(t, "2", b.eval(`String(document.querySelectorAll("#chart-counts canvas, #chart-ratio canvas").length)`), "both charts are drawn")
	assert.Equal(t, "20", b.eval(`String(document.querySelectorAll("#leaderboard tbody tr").length)`), "the leaderboard shows its first page")
	assert.Contains(t, b.eval(`location.search`), "pk="+strconv.Itoa(pk))

	// Growth: the store's values at the three base minutes.
	growthText := func(g, base int64) string {
		pct := math.Round(float64(g)/float64(base)*10000) / 100
		return fmt.Sprintf("+%s (%+.2f %%)", num(g), pct)
	}
	for name, m := range map[string]time.Time{"1h": last.Add(-61 * time.Minute), "24h": dayAgo, "7d": last.Add(-7*24*time.Hour - 30*time.Minute)} {
		assert.Equal(t, growthText(sum.FollowerCount-bases[m], bases[m]), b.text(`#growth-`+name), "growth %s", name)
	}
	// Freshness against the expected lag of 120 s (index.html).
	st, err := p.store.Stats(ctx, p.clock.Now())
	require.NoError(t, err)
	fresh := p.clock.Now().Sub(st.LastCompleteMinute).Seconds()
	wantFresh := "on time"
	if late := math.Round(fresh - 120); late > 0 {
		wantFresh = fmt.Sprintf("%.0f s late", late)
	}
	assert.Equal(t, wantFresh, b.text(`#stat-fresh`), "freshness %.0f s", fresh)
	assert.Equal(t, st.LastCompleteMinute.Format("2006-01-02 15:04 UTC"), b.text(`#stat-minute`))

	// Movers: the pks given a day-old value, by growth.
	rows := func(sel string, col int) []string {
		var out []string
		require.NoError(t, json.Unmarshal([]byte(b.eval(fmt.Sprintf(
			`JSON.stringify([...document.querySelectorAll(%q)].map((tr) => tr.cells[%d].textContent))`, sel+" tbody tr", col))), &out))
		return out
	}
	var wantPKs, wantGrowthText []string
	for _, q := range wantUp {
		wantPKs = append(wantPKs, strconv.FormatInt(q, 10))
		wantGrowthText = append(wantGrowthText, "+"+num(wantGrowth[q]))
	}
	assert.Equal(t, wantPKs, rows("#movers", 1), "gainers")
	assert.Equal(t, wantGrowthText, rows("#movers", 4))
	b.do(chromedp.Click(`[data-dir="down"]`))
	b.waitUntil(`document.querySelector("#movers tbody tr") && document.querySelector("#movers tbody tr").cells[1].textContent === "` + strconv.Itoa(loser) + `"`)
	assert.Equal(t, []string{"-77"}, rows("#movers", 4), "losers")

	// Refresh with the minute: one more minute through the pipeline, then
	// the page's clock passes the next minute boundary.
	samplesBefore := b.text(`#inf-samples`)
	p.runMinute(t, cfg, first.Add(3*time.Minute), numPKs)
	sum4, err := p.store.Summary(ctx, pk)
	require.NoError(t, err)
	require.Equal(t, first.Add(3*time.Minute), sum4.LastMinute)
	b.skewClock(66 * time.Second)
	b.waitUntil(fmt.Sprintf(`document.querySelector("#inf-samples").textContent === %q`, num(sum4.Samples)))
	assert.NotEqual(t, samplesBefore, num(sum4.Samples))
	b.waitUntil(`document.querySelector("#status").classList.contains("ok")`)
	assert.Equal(t, num(sum4.FollowerCount), b.text(`#inf-followers`))
	assert.Equal(t, sum4.LastMinute.Format("2006-01-02 15:04 UTC"), b.text(`#inf-minute`))
	assert.Equal(t, "4", b.attr(`#chart-counts`, "data-points"), "the new minute is plotted")
	assert.Equal(t, first.Add(3*time.Minute).Format("2006-01-02 15:04 UTC"), b.text(`#stat-minute`), "the header refreshed too")

	// A preset range is kept in the URL and restored by a reload: 6 h also
	// holds the point an hour before the last minute.
	b.do(chromedp.Click(`[data-range="6h"]`))
	b.waitUntil(`location.search.includes("range=6h") && document.querySelector("#chart-counts").dataset.points === "5"`)
	b.do(chromedp.Reload(), chromedp.WaitVisible(`#chart-counts canvas`))
	b.waitUntil(`document.querySelector("#chart-counts").dataset.points === "5"`)
	assert.Contains(t, b.attr(`[data-range="6h"]`, "class"), "active")
	assert.Equal(t, strconv.Itoa(pk), b.eval(`document.querySelector("#pk").value`))

	// A custom range of ten days picks step 1h (10 days of minutes is more
	// than the API's 10,080 points); its buckets are the store's rollups.
	from, to := last.Add(-8*24*time.Hour).Truncate(time.Hour), last.Add(2*24*time.Hour).Truncate(time.Hour)
	b.do(
		chromedp.SetValue(`#from`, from.Format("2006-01-02T15:04")),
		chromedp.SetValue(`#to`, to.Format("2006-01-02T15:04")),
		chromedp.Click(`#custom button[type=submit]`),
	)
	buckets, err := p.store.Rollup(ctx, pk, time.Hour, from, to, 10_080)
	require.NoError(t, err)
	b.waitUntil(fmt.Sprintf(`document.querySelector("#chart-counts").dataset.step === "1h" && document.querySelector("#chart-counts").dataset.points === "%d"`, len(buckets)))
	assert.Equal(t, "1h", b.text(`#step`))
	assert.Contains(t, b.eval(`location.search`), "from="+from.Format(time.RFC3339))
	b.do(chromedp.Reload(), chromedp.WaitVisible(`#chart-counts canvas`))
	b.waitUntil(fmt.Sprintf(`document.querySelector("#chart-counts").dataset.points === "%d"`, len(buckets)))
	assert.Equal(t, from.Format("2006-01-02T15:04"), b.eval(`document.querySelector("#from").value`))
	assert.Equal(t, "1h", b.attr(`#chart-counts`, "data-step"))

	// The CSV link returns the shown timeline as CSV.
	href := b.attr(`#csv`, "href")
	require.NotEmpty(t, href)
	res, err := http.Get(proxy.srv.URL + href)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
	assert.Equal(t, "text/csv; charset=utf-8", res.Header.Get("Content-Type"))
	records, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 1+len(buckets), "a header and one row per bucket")
	assert.Equal(t, "minute", records[0][0])
	for i, bk := range buckets {
		assert.Equal(t, bk.Start.Format(time.RFC3339), records[i+1][0])
		assert.Equal(t, strconv.FormatInt(bk.FollowerLast, 10), records[i+1][7], "followerCountLast of %s", bk.Start)
	}

	// Compare: two more influencers, one series each, kept in the URL.
	b.do(chromedp.Click(`[data-range="1h"]`))
	for _, q := range gainers[:2] {
		b.do(chromedp.SetValue(`#compare-pk`, strconv.FormatInt(q, 10)), chromedp.Click(`#compare-form button[type=submit]`))
	}
	b.waitUntil(`document.querySelector("#chart-compare").dataset.series === "3"`)
	wantCompare := fmt.Sprintf("compare=%d,%d", gainers[0], gainers[1])
	assert.Contains(t, b.eval(`location.search`), wantCompare)
	b.do(chromedp.Reload(), chromedp.WaitVisible(`#chart-compare canvas`))
	b.waitUntil(`document.querySelector("#chart-compare").dataset.series === "3"`)
	// uPlot's legend: the x series plus one per influencer.
	assert.Equal(t, "4", b.eval(`String(document.querySelectorAll("#chart-compare .u-legend .u-series").length)`))
	assert.Equal(t, "2", b.eval(`String(document.querySelectorAll("#compare-list .chip").length)`))
	b.waitUntil(`document.querySelector("#status").classList.contains("ok")`)
	shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)

	// The API goes away: at the next refresh every panel keeps its numbers,
	// marked stale, and the header says the API is unreachable; they come
	// back when it answers again.
	tracked := b.text(`#stat-tracked`)
	followers := b.text(`#inf-followers`)
	proxy.down.Store(true)
	b.skewClock(66 * time.Second)
	b.waitUntil(`document.querySelector("#status").classList.contains("stale")`)
	assert.Contains(t, b.text(`#status`), "API unreachable")
	for _, sel := range []string{"#stats", "#influencer", "#movers-panel", "#leaderboard-panel"} {
		assert.Contains(t, b.attr(sel, "class"), "stale", sel)
	}
	assert.Equal(t, tracked, b.text(`#stat-tracked`), "the old numbers stay, marked stale")
	assert.Equal(t, followers, b.text(`#inf-followers`))
	proxy.down.Store(false)
	b.skewClock(16 * time.Second) // the retry after a failure
	b.waitUntil(`document.querySelector("#status").classList.contains("ok") && !document.querySelector(".refreshable.stale")`)

	saveScreenshot(t, shot)
}

// saveScreenshot writes the dashboard's screenshot to the artifacts and,
// when MOCKSTAGRAM_SCREENSHOT names a file (relative to the repository),
// there too (docs/dashboard.png is made so).
func saveScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	require.Greater(t, len(shot), 10_000, "screenshot of %d bytes", len(shot))
	dir := os.Getenv("MOCKSTAGRAM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	paths := []string{filepath.Join(dir, "dashboard.png")}
	if p := os.Getenv("MOCKSTAGRAM_SCREENSHOT"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join("..", p)
		}
		paths = append(paths, p)
	}
	for _, p := range paths {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, shot, 0o644))
		t.Logf("screenshot: %s (%d bytes)", p, len(shot))
	}
}
