package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// TestDashboardInBrowser opens the dashboard served by the application (the
// same fx graph as 'run') in headless Chromium, searches a pk and checks the
// chart and the values; it saves a screenshot as a test artifact.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath(t)

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

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	bctx, cancelTimeout := context.WithTimeout(bctx, 60*time.Second)
	defer cancelTimeout()

	url := "http://" + p.http.Addr + "/"
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(`#leaderboard tbody tr`),
		chromedp.SetValue(`#pk`, strconv.Itoa(pk)),
		chromedp.Click(`#search button[type=submit]`),
		chromedp.WaitVisible(`#influencer`),
		chromedp.WaitVisible(`#chart-counts canvas`),
	))
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(sel))
		require.NoError(t, err, sel)
		return strings.TrimSpace(v)
	}
	username, followers, following, rankText := text(`#inf-username`), text(`#inf-followers`), text(`#inf-following`), text(`#inf-rank`)
	suspiciousText := text(`#inf-suspicious`)
	points, err := chromedp.Run(bctx, chromedp.AttributeValue(`#chart-counts`, "data-points"))
	require.NoError(t, err)
	lbRows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#leaderboard tbody tr").length`))
	require.NoError(t, err)
	canvases, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#chart-counts canvas, #chart-ratio canvas").length`))
	require.NoError(t, err)
	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)

	en := message.NewPrinter(language.English)
	assert.Equal(t, sum.Username, username)
	assert.Equal(t, en.Sprintf("%d", sum.FollowerCount), followers)
	assert.Equal(t, en.Sprintf("%d", sum.FollowingCount), following)
	assert.Equal(t, "#"+en.Sprintf("%d", rank), rankText)
	wantSuspicious := map[bool]string{true: "yes", false: "no"}[simulator.Suspicious(pk)]
	assert.Equal(t, wantSuspicious, suspiciousText)
	assert.Equal(t, "3", points.Value, "the chart plots the three stored minutes")
	assert.Equal(t, 2, canvases, "both charts are drawn")
	assert.Equal(t, 20, lbRows, "the leaderboard shows its first page")

	dir := os.Getenv("MOCKSTAGRAM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, "dashboard.png")
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	require.Greater(t, len(shot), 10_000, "screenshot of %d bytes", len(shot))
}
