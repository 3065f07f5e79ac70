// Mockstagram dashboard: plain JS over the JSON API, charts by uPlot.
//
// Every panel refreshes once a minute, a few seconds after each minute
// boundary (a new minute is complete by then). A panel whose refresh fails
// because the API is unreachable (network error or 5xx) keeps its last
// numbers, marked stale, and the header says so; nothing old is shown as
// current. The view (pk, range, compare list) lives in the URL's query.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const EXPECTED_LAG = Number(document.body.dataset.expectedLag) || 120; // seconds, see index.html
  const REFRESH_AFTER_MINUTE = 5000; // ms after each minute boundary
  const RETRY_AFTER_FAILURE = 15000; // ms
  const MAX_POINTS = 10080; // the timeline API's limit per response
  const MAX_COMPARED = 5; // influencers on the compare chart, the selected one included
  const PRESETS = { "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
  const STEPS = [["1m", 60], ["1h", 3600], ["1d", 86400]];
  const COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a"];

  const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtNum = (n, d) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: d }));
  const fmtTime = (s) => (s ? new Date(s).toISOString().replace("T", " ").replace(/:\d\d\.000Z$/, " UTC") : "–");
  const fmtClock = (ms) => new Date(ms).toISOString().slice(11, 19) + " UTC";
  const rfc3339 = (d) => d.toISOString().replace(".000Z", "Z");
  const signed = (n) => (n > 0 ? "+" : "") + fmtInt(n);
  const fmtGrowth = (g, pct) => (g === null || g === undefined ? "–" : signed(g) + (pct === null || pct === undefined ? "" : " (" + (pct > 0 ? "+" : "") + pct.toFixed(2) + " %)"));
  // toLocal/fromLocal convert between a Date and a datetime-local value in UTC.
  const toLocal = (d) => d.toISOString().slice(0, 16);
  const fromLocal = (v) => (v ? new Date(Date.parse(v + ":00Z")) : null);

  // The view, mirrored in the URL.
  const view = { pk: null, range: "1h", from: null, to: null, compare: [], dir: "up" };
  let globalAverage = null;
  let charts = [];
  let lbAfter = null; // cursor of the leaderboard page shown (null: first)
  let lbNext = null;
  let nextDue = 0; // Date.now() of the next refresh
  let refreshing = null; // the refresh in progress

  // ApiError is an answer the API gave (4xx): the request was wrong, the
  // API is fine. Anything else (network error, 5xx) means unreachable.
  class ApiError extends Error {}

  async function getJSON(url) {
    const res = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await res.json().catch(() => ({ error: "HTTP " + res.status }));
    if (res.status >= 400 && res.status < 500) throw new ApiError(body.error || "HTTP " + res.status);
    if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
    return body;
  }

  // stepFor is the finest step whose points over spanSec fit in one response.
  function stepFor(spanSec) {
    for (const [name, sec] of STEPS) if (spanSec / sec <= MAX_POINTS) return name;
    return null;
  }

  // currentWindow is the time range shown: a preset ends at the next
  // minute boundary of now.
  function currentWindow() {
    let from, to;
    if (view.range === "custom") {
      from = view.from; to = view.to;
    } else {
      to = new Date(Math.ceil(Date.now() / 60000) * 60000);
      from = new Date(to.getTime() - PRESETS[view.range] * 1000);
    }
    return { from, to, step: stepFor((to - from) / 1000) };
  }

  function readURL() {
    const q = new URLSearchParams(location.search);
    const hash = /pk=(\d+)/.exec(location.hash); // links of the previous version
    const pk = q.get("pk") || (hash && hash[1]);
    view.pk = pk && /^\d+$/.test(pk) ? pk : null;
    const range = q.get("range");
    const from = fromISO(q.get("from")), to = fromISO(q.get("to"));
    if (from && to && from < to && stepFor((to - from) / 1000)) {
      view.range = "custom"; view.from = from; view.to = to;
    } else if (range && PRESETS[range]) {
      view.range = range;
    }
    view.compare = (q.get("compare") || "").split(",").filter((x) => /^\d+$/.test(x) && x !== view.pk).slice(0, MAX_COMPARED - 1);
    view.compare = [...new Set(view.compare)];
  }

  function fromISO(s) {
    if (!s) return null;
    const t = Date.parse(s);
    return isNaN(t) ? null : new Date(t);
  }

  function writeURL() {
    const q = new URLSearchParams();
    if (view.pk) q.set("pk", view.pk);
    if (view.range === "custom") {
      q.set("from", rfc3339(view.from));
      q.set("to", rfc3339(view.to));
    } else {
      q.set("range", view.range);
    }
    if (view.compare.length) q.set("compare", view.compare.join(","));
    history.replaceState(null, "", "?" + q.toString().replace(/%2C/g, ",").replace(/%3A/g, ":"));
  }

  function showError(msg) {
    $("error").textContent = msg;
    $("error").hidden = !msg;
  }

  // panel runs load for one panel with its loading and stale states; it
  // resolves true when the API answered (even with an error it shows).
  async function panel(el, load) {
    el.classList.add("loading");
    el.setAttribute("aria-busy", "true");
    try {
      await load();
      el.classList.remove("stale");
      delete el.dataset.stale;
      return true;
    } catch (e) {
      if (e instanceof ApiError) {
        el.classList.remove("stale");
        return true;
      }
      el.classList.add("stale");
      el.dataset.stale = e.message || "unreachable";
      return false;
    } finally {
      el.classList.remove("loading");
      el.removeAttribute("aria-busy");
    }
  }

  async function loadStats() {
    const s = await getJSON("/api/v1/stats");
    globalAverage = s.averageFollowerCount;
    $("stat-tracked").textContent = fmtInt(s.tracked);
    $("stat-influencers").textContent = fmtInt(s.influencers);
    $("stat-average").textContent = fmtNum(s.averageFollowerCount, 1);
    $("stat-minute").textContent = fmtTime(s.lastCompleteMinute);
    const fresh = $("stat-fresh");
    if (s.freshnessSeconds === null) {
      fresh.textContent = "–";
      fresh.title = "no complete minute in the last hour";
      fresh.classList.remove("late");
    } else {
      const late = Math.round(s.freshnessSeconds - EXPECTED_LAG);
      fresh.textContent = late > 0 ? late + " s late" : "on time";
      fresh.classList.toggle("late", late > 0);
      fresh.title = "the last complete minute started " + Math.round(s.freshnessSeconds) + " s ago; a healthy pipeline stays within " + EXPECTED_LAG + " s";
    }
    $("stat-missed").textContent = fmtInt(s.missedLastHour);
    if (view.pk) $("inf-global").textContent = fmtNum(globalAverage, 1);
  }

  async function loadInfluencer() {
    if (!view.pk) return;
    const pk = view.pk;
    const w = currentWindow();
    const q = new URLSearchParams({ from: rfc3339(w.from), to: rfc3339(w.to), step: w.step });
    let inf;
    try {
      inf = await getJSON("/api/v1/influencers/" + encodeURIComponent(pk));
    } catch (e) {
      if (e instanceof ApiError) {
        $("influencer").hidden = true;
        showError(e.message);
      }
      throw e;
    }
    const pks = [pk, ...view.compare];
    const [growth, ...timelines] = await Promise.all([
      getJSON("/api/v1/influencers/" + pk + "/growth"),
      ...pks.map((p) => getJSON("/api/v1/influencers/" + p + "/timeline?" + q).catch((e) => {
        if (e instanceof ApiError && p !== pk) return { pk: p, points: [], error: e.message }; // a compared pk went wrong
        throw e;
      })),
    ]);
    if (pk !== view.pk) return; // another influencer was selected meanwhile
    showError("");
    $("influencer").hidden = false;
    $("inf-username").textContent = inf.username;
    $("inf-pk").textContent = "pk " + inf.pk;
    $("inf-followers").textContent = fmtInt(inf.followerCount);
    $("inf-following").textContent = fmtInt(inf.followingCount);
    $("inf-ratio").textContent = fmtNum(inf.followerRatio, 2);
    $("inf-rank").textContent = inf.rank ? "#" + fmtInt(inf.rank) : "–";
    const susp = $("inf-suspicious");
    susp.textContent = inf.suspicious === null ? "not checked yet" : (inf.suspicious ? "yes" : "no");
    susp.title = inf.suspicionCheckedAt ? "checked " + fmtTime(inf.suspicionCheckedAt) : "checked once a day";
    $("inf-average").textContent = fmtNum(inf.averageFollowerCount, 1);
    $("inf-global").textContent = fmtNum(globalAverage, 1);
    $("inf-minute").textContent = fmtTime(inf.lastMinute);
    $("inf-samples").textContent = fmtInt(inf.samples);
    for (const g of growth.windows) {
      const el = $("growth-" + g.window);
      if (!el) continue;
      el.textContent = fmtGrowth(g.followerGrowth, g.followerGrowthPercent);
      el.classList.toggle("up", g.followerGrowth > 0);
      el.classList.toggle("down", g.followerGrowth < 0);
      el.title = g.baseMinute ? "since " + fmtTime(g.baseMinute) : "not enough history";
    }
    $("csv").href = "/api/v1/influencers/" + pk + "/timeline.csv?" + q;
    $("step").textContent = w.step;
    draw(timelines, w);
  }

  function draw(timelines, w) {
    const main = timelines[0];
    const xs = [], fol = [], ing = [], ratio = [];
    for (const p of main.points) {
      xs.push(Date.parse(p.minute) / 1000);
      fol.push(p.followerCount);
      ing.push(p.followingCount);
      ratio.push(p.followerRatio);
    }
    charts.forEach((c) => c.destroy());
    charts = [];
    $("chart-empty").hidden = xs.length > 0;
    $("chart-counts").dataset.points = String(xs.length);
    $("chart-counts").dataset.step = w.step;
    const width = Math.max(320, $("search-panel").clientWidth - 32);
    const xScale = { time: true, min: w.from.getTime() / 1000, max: w.to.getTime() / 1000 };
    const cmp = $("chart-compare");
    cmp.hidden = timelines.length < 2;
    cmp.dataset.series = String(timelines.length < 2 ? 0 : timelines.length);
    if (timelines.length >= 2) {
      // One series per influencer on the union of their minutes.
      const all = [...new Set(timelines.flatMap((t) => t.points.map((p) => Date.parse(p.minute) / 1000)))].sort((a, b) => a - b);
      const data = [all];
      const series = [{}];
      timelines.forEach((t, i) => {
        const byX = new Map(t.points.map((p) => [Date.parse(p.minute) / 1000, p.followerCount]));
        data.push(all.map((x) => (byX.has(x) ? byX.get(x) : null)));
        series.push({ label: "pk " + (t.pk || view.compare[i - 1]) + (t.error ? " (" + t.error + ")" : ""), stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true });
      });
      charts.push(new uPlot({ title: "followerCount compared", width, height: 260, scales: { x: xScale }, series, axes: [{}, { size: 70 }] }, data, cmp));
    }
    charts.push(new uPlot({
      title: "Followers and following", width, height: 260,
      scales: { x: xScale, f: {}, g: {} },
      series: [{}, { label: "followerCount", stroke: "#3b5bdb", width: 2, scale: "f" }, { label: "followingCount", stroke: "#e8590c", width: 2, scale: "g" }],
      axes: [{}, { scale: "f", label: "followers", size: 70 }, { scale: "g", side: 1, label: "following", grid: { show: false }, size: 60 }],
    }, [xs, fol, ing], $("chart-counts")));
    charts.push(new uPlot({
      title: "followerRatio", width, height: 200, scales: { x: xScale },
      series: [{}, { label: "followerRatio", stroke: "#2b8a3e", width: 2 }],
      axes: [{}, { size: 60 }],
    }, [xs, ratio], $("chart-ratio")));
  }

  function row(body, cells, onClick) {
    const tr = document.createElement("tr");
    for (const [v, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = v;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    tr.addEventListener("click", onClick);
    body.appendChild(tr);
  }

  async function loadMovers() {
    const m = await getJSON("/api/v1/movers?" + new URLSearchParams({ window: "24h", direction: view.dir, limit: "10" }));
    const body = $("movers").tBodies[0];
    body.replaceChildren();
    for (const it of m.items) {
      const cls = it.followerGrowth > 0 ? "up" : "down";
      row(body, [[String(it.rank)], [String(it.pk)], [it.username], [fmtInt(it.followerCount)], [signed(it.followerGrowth), cls],
        [it.followerGrowthPercent === null ? "–" : (it.followerGrowthPercent > 0 ? "+" : "") + it.followerGrowthPercent.toFixed(2) + " %", cls]],
      () => select(String(it.pk)));
    }
    $("movers-at").textContent = m.computedAt ? "computed " + fmtTime(m.computedAt) : "";
    $("movers-empty").hidden = m.items.length > 0;
    $("movers-empty").textContent = m.computedAt ? "No " + (view.dir === "up" ? "gains" : "losses") + " over the day." :
      "Not computed yet: the list is recomputed hourly from the day-old values.";
  }

  async function loadLeaderboard() {
    const q = new URLSearchParams({ limit: "20" });
    if (lbAfter) q.set("after", lbAfter);
    const lb = await getJSON("/api/v1/influencers?" + q);
    const body = $("leaderboard").tBodies[0];
    body.replaceChildren();
    for (const it of lb.items) {
      row(body, [[fmtInt(it.rank)], [String(it.pk)], [it.username], [fmtInt(it.followerCount)], [fmtInt(it.followingCount)], [fmtNum(it.followerRatio, 2)]],
        () => select(String(it.pk)));
    }
    lbNext = lb.next;
    $("lb-next").disabled = !lb.next;
  }

  // refresh reloads every panel (or the given ones) and sets the status.
  function refresh(which) {
    if (refreshing) return refreshing.then(() => refresh(which));
    if (view.range !== "custom") renderRange(); // the preset's window moved
    const status = $("status");
    status.className = "status loading";
    status.textContent = "Loading…";
    const jobs = {
      stats: () => panel($("stats"), loadStats),
      influencer: () => panel($("influencer"), loadInfluencer),
      movers: () => panel($("movers-panel"), loadMovers),
      leaderboard: () => panel($("leaderboard-panel"), loadLeaderboard),
    };
    const names = which || Object.keys(jobs);
    refreshing = Promise.all(names.map((n) => jobs[n]())).then((oks) => {
      refreshing = null;
      const now = Date.now();
      if (oks.every(Boolean) && !document.querySelector(".refreshable.stale")) {
        status.className = "status ok";
        status.textContent = "Updated " + fmtClock(now);
        status.title = "refreshes a few seconds after every minute";
        nextDue = Math.floor(now / 60000) * 60000 + 60000 + REFRESH_AFTER_MINUTE;
      } else {
        status.className = "status stale";
        const since = status.dataset.okAt ? " since " + fmtClock(Number(status.dataset.okAt)) : "";
        status.textContent = "Stale: API unreachable" + since + ", retrying";
        status.title = "numbers marked stale are from the last successful refresh";
        nextDue = now + RETRY_AFTER_FAILURE;
        return;
      }
      status.dataset.okAt = String(now);
    });
    return refreshing;
  }

  function select(pk) {
    pk = String(pk).trim();
    if (!/^\d+$/.test(pk)) { showError("pk must be a positive integer"); return; }
    view.pk = pk;
    view.compare = view.compare.filter((x) => x !== pk);
    $("pk").value = pk;
    writeURL();
    renderCompare();
    refresh(["influencer"]);
  }

  function renderCompare() {
    const list = $("compare-list");
    list.replaceChildren();
    for (const p of view.compare) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.dataset.pk = p;
      chip.title = "remove from the comparison";
      chip.textContent = p + " ×";
      chip.addEventListener("click", () => {
        view.compare = view.compare.filter((x) => x !== p);
        writeURL(); renderCompare(); refresh(["influencer"]);
      });
      list.appendChild(chip);
    }
    const full = view.compare.length >= MAX_COMPARED - 1;
    $("compare-pk").disabled = full;
    $("compare-hint").textContent = full ? "at most " + MAX_COMPARED + " influencers" : "up to " + MAX_COMPARED + " influencers on one chart";
  }

  function renderRange() {
    document.querySelectorAll("[data-range]").forEach((b) => b.classList.toggle("active", b.dataset.range === view.range));
    const w = currentWindow();
    $("from").value = toLocal(w.from);
    $("to").value = toLocal(w.to);
    $("step").textContent = w.step;
  }

  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); select($("pk").value); });
  document.querySelectorAll("[data-range]").forEach((b) => b.addEventListener("click", () => {
    view.range = b.dataset.range;
    view.from = view.to = null;
    writeURL(); renderRange(); refresh(["influencer"]);
  }));
  $("custom").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const from = fromLocal($("from").value), to = fromLocal($("to").value);
    if (!from || !to || !(from < to)) { showError("custom range: from must be before to"); return; }
    if (!stepFor((to - from) / 1000)) { showError("custom range: at most " + MAX_POINTS + " days"); return; }
    showError("");
    view.range = "custom"; view.from = from; view.to = to;
    writeURL(); renderRange(); refresh(["influencer"]);
  });
  $("compare-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = $("compare-pk").value.trim();
    if (!/^\d+$/.test(p) || p === view.pk || view.compare.includes(p) || view.compare.length >= MAX_COMPARED - 1) return;
    view.compare.push(p);
    $("compare-pk").value = "";
    writeURL(); renderCompare(); refresh(["influencer"]);
  });
  document.querySelectorAll("[data-dir]").forEach((b) => b.addEventListener("click", () => {
    view.dir = b.dataset.dir;
    document.querySelectorAll("[data-dir]").forEach((x) => x.classList.toggle("active", x === b));
    refresh(["movers"]);
  }));
  $("lb-next").addEventListener("click", () => { lbAfter = lbNext; refresh(["leaderboard"]); });
  $("lb-first").addEventListener("click", () => { lbAfter = null; refresh(["leaderboard"]); });

  readURL();
  if (view.pk) $("pk").value = view.pk;
  renderRange();
  renderCompare();
  refresh();
  // A one-second tick checks whether the next refresh is due: it survives
  // a sleeping laptop or a throttled background tab, and follows Date.now.
  setInterval(() => { if (!refreshing && Date.now() >= nextDue) refresh(); }, 1000);
})();
