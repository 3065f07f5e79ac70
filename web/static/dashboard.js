// Mockstagram dashboard: plain JS over the JSON API, charts by uPlot.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtNum = (n, d) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: d }));
  const fmtTime = (s) => (s ? new Date(s).toISOString().replace("T", " ").replace(":00.000Z", " UTC") : "–");
  const ranges = { hour: { span: 3600, step: "1m" }, day: { span: 86400, step: "1m" }, week: { span: 7 * 86400, step: "1h" } };
  let range = "hour";
  let current = null;
  let globalAverage = null;
  let charts = [];
  let lbCursor = null;

  async function getJSON(url) {
    const res = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await res.json().catch(() => ({ error: "HTTP " + res.status }));
    if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
    return body;
  }

  async function loadStats() {
    try {
      const s = await getJSON("/api/v1/stats");
      globalAverage = s.averageFollowerCount;
      $("stat-tracked").textContent = fmtInt(s.tracked);
      $("stat-influencers").textContent = fmtInt(s.influencers);
      $("stat-average").textContent = fmtNum(s.averageFollowerCount, 1);
      $("stat-minute").textContent = fmtTime(s.lastCompleteMinute);
      $("stat-fresh").textContent = s.freshnessSeconds === null ? "–" : fmtNum(s.freshnessSeconds, 0) + " s";
      $("stat-missed").textContent = fmtInt(s.missedLastHour);
      if (current) $("inf-global").textContent = fmtNum(globalAverage, 1);
    } catch (e) { /* stats are decoration; the error shows on the next search */ }
  }

  function showError(msg) {
    $("error").textContent = msg;
    $("error").hidden = !msg;
  }

  async function show(pk) {
    showError("");
    try {
      const inf = await getJSON("/api/v1/influencers/" + encodeURIComponent(pk));
      current = inf;
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
      history.replaceState(null, "", "#pk=" + inf.pk);
      await drawTimeline(inf.pk);
    } catch (e) {
      $("influencer").hidden = true;
      current = null;
      showError(e.message);
    }
  }

  async function drawTimeline(pk) {
    const r = ranges[range];
    const to = new Date(Math.ceil(Date.now() / 60000) * 60000);
    const from = new Date(to.getTime() - r.span * 1000);
    const q = new URLSearchParams({ from: from.toISOString().replace(".000", ""), to: to.toISOString().replace(".000", ""), step: r.step });
    const tl = await getJSON("/api/v1/influencers/" + pk + "/timeline?" + q);
    const xs = [], fol = [], ing = [], ratio = [];
    for (const p of tl.points) {
      xs.push(Date.parse(p.minute) / 1000);
      fol.push(p.followerCount);
      ing.push(p.followingCount);
      ratio.push(p.followerRatio);
    }
    charts.forEach((c) => c.destroy());
    charts = [];
    $("chart-empty").hidden = xs.length > 0;
    $("chart-counts").dataset.points = String(xs.length);
    const width = Math.max(320, $("search-panel").clientWidth - 32);
    charts.push(new uPlot({
      title: "Followers and following", width, height: 260,
      scales: { x: { time: true }, f: {}, g: {} },
      series: [{}, { label: "followerCount", stroke: "#3b5bdb", width: 2, scale: "f" }, { label: "followingCount", stroke: "#e8590c", width: 2, scale: "g" }],
      axes: [{}, { scale: "f", label: "followers", size: 70 }, { scale: "g", side: 1, label: "following", grid: { show: false }, size: 60 }],
    }, [xs, fol, ing], $("chart-counts")));
    charts.push(new uPlot({
      title: "followerRatio", width, height: 200,
      series: [{}, { label: "followerRatio", stroke: "#2b8a3e", width: 2 }],
      axes: [{}, { size: 60 }],
    }, [xs, ratio], $("chart-ratio")));
  }

  async function loadLeaderboard(after) {
    const q = new URLSearchParams({ limit: "20" });
    if (after) q.set("after", after);
    try {
      const lb = await getJSON("/api/v1/influencers?" + q);
      const body = $("leaderboard").tBodies[0];
      body.replaceChildren();
      for (const it of lb.items) {
        const tr = document.createElement("tr");
        for (const v of [fmtInt(it.rank), String(it.pk), it.username, fmtInt(it.followerCount), fmtInt(it.followingCount), fmtNum(it.followerRatio, 2)]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        }
        tr.addEventListener("click", () => { $("pk").value = it.pk; show(it.pk); });
        body.appendChild(tr);
      }
      lbCursor = lb.next;
      $("lb-next").disabled = !lb.next;
    } catch (e) { showError("leaderboard: " + e.message); }
  }

  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); show($("pk").value.trim()); });
  document.querySelectorAll("[data-range]").forEach((b) => b.addEventListener("click", () => {
    range = b.dataset.range;
    document.querySelectorAll("[data-range]").forEach((x) => x.classList.toggle("active", x === b));
    if (current) drawTimeline(current.pk).catch((e) => showError(e.message));
  }));
  $("lb-next").addEventListener("click", () => loadLeaderboard(lbCursor));
  $("lb-first").addEventListener("click", () => loadLeaderboard(null));

  loadStats();
  loadLeaderboard(null);
  setInterval(loadStats, 15000);
  const m = /pk=(\d+)/.exec(location.hash);
  if (m) { $("pk").value = m[1]; show(m[1]); }
})();
