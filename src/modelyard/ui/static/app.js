// Modelyard dashboard scripts: render page data, refresh it with fetch() calls to the REST API
// (the session cookie signs them in; changes send the CSRF token in X-CSRF-Token), draw Plotly
// charts. Values are put in the page with textContent only, never as HTML.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const fmt = window.Modelyard.fmt;  // static/format.js: the Jinja filter fmt's rules
  const page = document.body.dataset.page;
  const projectMeta = document.querySelector('meta[name="modelyard-project"]');
  const project = projectMeta ? projectMeta.content : "";

  // A list's REST path limited to the header's chosen project (none chosen: every project).
  function inProject(path) {
    if (!project) return path;
    return path + (path.includes("?") ? "&" : "?") + "project=" + encodeURIComponent(project);
  }

  const switcher = document.getElementById("project-switch");
  if (switcher) switcher.addEventListener("change", () => switcher.form.submit());

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
      tr.appendChild(td);
    }
    return tr;
  }

  function when(ms) {
    return ms ? new Date(ms).toLocaleString() : "–";
  }

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, opts);
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      throw new Error(message);
    }
    return body;
  }

  function pageData() {
    const node = document.getElementById("page-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function localTimes() {
    for (const cell of document.querySelectorAll("[data-ms]")) {
      cell.textContent = when(Number(cell.dataset.ms));
    }
  }

  function every(seconds, fn) {
    fn();
    setInterval(() => { if (!document.hidden) fn(); }, seconds * 1000);
  }

  const layout = (title, yTitle) => ({
    title: { text: title, font: { size: 13 } },
    margin: { l: 50, r: 10, t: 30, b: 40 },
    xaxis: { type: "date" },
    yaxis: { title: { text: yTitle }, rangemode: "tozero" },
    legend: { orientation: "h" },
    height: 260,
  });
  const plotConfig = { displaylogo: false, responsive: true };

  function draw(id, traces, lay) {
    if (window.Plotly) window.Plotly.react(id, traces, lay, plotConfig);
  }

  // -- overview ------------------------------------------------------------------------------
  // The server renders the table (states, numbers through the fmt filter, sparklines as SVG);
  // a refresh fetches the same page and swaps the live part in: one renderer, not two.
  async function refreshFragment(id) {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(id);
    const current = document.getElementById(id);
    if (current && current.contains(document.activeElement)) return;  // keep the keyboard's place
    if (fresh && current) current.replaceWith(document.adoptNode(fresh));
    document.getElementById("refreshed").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  }

  function overview() {
    setInterval(() => {
      if (!document.hidden) refreshFragment("overview-live").catch(() => { /* next tick */ });
    }, 15000);
  }

  // -- model -----------------------------------------------------------------------------------
  function renderReplicas(status) {
    const body = document.querySelector("#replicas tbody");
    body.replaceChildren();
    if (!status.replicas.length) {
      const tr = row(["No running replicas."]);
      tr.firstChild.colSpan = 8;
      body.appendChild(tr);
    }
    for (const r of status.replicas) {
      const s = r.state;
      body.appendChild(row([
        s.replica_id, s.status, r.in_pool ? "yes" : "no", fmt(s.restarts, "count"),
        s.cpu_percent === null || s.cpu_percent === undefined ? "–" : fmt(s.cpu_percent / 100, "%"),
        fmt(s.rss_bytes, "bytes"), fmt(r.in_flight, "count"), fmt(r.served, "count"),
      ]));
    }
  }

  async function loadTech(name) {
    const span = Number(document.getElementById("range").value);
    const end = Date.now();
    const q = new URLSearchParams({ start: String(end - span), end: String(end) });
    const data = await api("/api/v1/models/" + encodeURIComponent(name) + "/tech?" + q);
    const s = data.series;
    const t = s.t.map((ms) => new Date(ms));
    const res = data.resolution_ms >= 1000 ? (data.resolution_ms / 1000).toFixed(0) + " s" : data.resolution_ms + " ms";
    document.getElementById("tech-resolution").textContent =
      data.intervals + " gateway intervals; resolution " + res + (data.merged ? " (merged)" : "");
    draw("chart-rps", [{ x: t, y: s.rps, name: "requests/s", type: "scatter", mode: "lines+markers" }],
      layout("Requests per second", "req/s"));
    draw("chart-latency", [
      { x: t, y: s.p50_ms, name: "p50", type: "scatter", mode: "lines+markers" },
      { x: t, y: s.p95_ms, name: "p95", type: "scatter", mode: "lines+markers" },
      { x: t, y: s.p99_ms, name: "p99", type: "scatter", mode: "lines+markers" },
    ], layout("Latency percentiles", "ms"));
    draw("chart-errors", [{ x: t, y: s.failures, name: "failed requests", type: "bar", marker: { color: "#a40e26" } }],
      layout("Errors", "failed requests"));
  }

  function showPrediction(found) {
    const box = document.getElementById("prediction-detail");
    box.replaceChildren();
    const p = found.prediction;
    const card = el("div", null, "card");
    card.appendChild(el("h3", "Prediction " + p.predictionUuid));
    card.appendChild(el("p", "From " + when(p.startTimeStampMs) + ", took " +
      fmt(p.endTimeStampMs - p.startTimeStampMs, "ms") + "; build " + p.modelBuildCrn));
    card.appendChild(el("p", "Metrics (delayed values merged):"));
    card.appendChild(el("pre", JSON.stringify(p.metrics, null, 2), "mono"));
    const table = el("table", null, "grid");
    const head = document.createElement("thead");
    head.appendChild(row(["Delayed key", "Value", "Arrived", "Source"]));
    table.appendChild(head);
    const body = document.createElement("tbody");
    for (const d of found.delayed) body.appendChild(row([d.key, JSON.stringify(d.value), when(d.tracked_ms), d.source]));
    if (!found.delayed.length) body.appendChild(row(["no delayed metrics yet", "", "", ""]));
    table.appendChild(body);
    card.appendChild(table);
    box.appendChild(card);
  }

  async function findPrediction(uuid) {
    const box = document.getElementById("prediction-detail");
    try {
      showPrediction(await api("/api/v1/predictions/" + encodeURIComponent(uuid)));
    } catch (e) {
      box.replaceChildren(el("p", e.message, "error"));
    }
  }

  // Recent predictions: a column per tracked key (nested keys flattened to a.b), ground truth
  // keys (delayed) marked and last, long values cut with the whole value as the cell's title,
  // filtered in the page by key, text and time.
  const predState = { rows: [], delayed: [] };

  function flatten(value, prefix, out) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
    } else {
      out[prefix] = value;
    }
    return out;
  }

  function cellText(value) {
    if (value === undefined || value === null) return "–";
    if (typeof value === "number") return fmt(value);
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  function valueCell(value, delayed) {
    if (value === undefined && delayed) return el("span", "not yet", "muted");
    const text = cellText(value);
    const whole = typeof value === "number" ? String(value) : text;
    const span = el("span", text, text.length > 16 ? "cut" : null);
    if (whole !== text || text.length > 16) span.title = whole;
    return span;
  }

  function renderPredictions() {
    const keySelect = document.getElementById("pred-key");
    const key = keySelect.value;
    const needle = document.getElementById("pred-contains").value.trim().toLowerCase();
    const since = Number(document.getElementById("pred-since").value);
    const flat = predState.rows.map((p) => [p, flatten(p.metrics || {}, "", {})]);
    const isDelayed = (k) => predState.delayed.includes(k.split(".")[0]);
    const seen = [];
    for (const [, f] of flat) for (const k of Object.keys(f)) if (!seen.includes(k)) seen.push(k);
    const columns = seen.filter((k) => !isDelayed(k)).concat(seen.filter(isDelayed));
    keySelect.replaceChildren(el("option", "any key"));
    keySelect.firstChild.value = "";
    for (const k of columns) {
      const option = el("option", k + (isDelayed(k) ? " (arrives later)" : ""));
      option.value = k;
      keySelect.appendChild(option);
    }
    keySelect.value = columns.includes(key) ? key : "";
    const head = document.querySelector("#predictions thead tr");
    head.replaceChildren(...["uuid", "Time", "Duration"].map((t) => { const th = el("th", t); th.scope = "col"; return th; }));
    for (const k of columns) {
      const th = el("th", k);
      th.scope = "col";
      if (isDelayed(k)) {
        th.className = "delayed";
        const mark = el("span", " ⏱ arrives later", "delayed-mark");
        th.appendChild(mark);
      }
      head.appendChild(th);
    }
    const now = Date.now();
    const matches = (f) => {
      if (!needle) return true;
      const keys = keySelect.value ? [keySelect.value] : Object.keys(f);
      return keys.some((k) => k in f && cellText(f[k]).toLowerCase().includes(needle)
        || (k in f && String(f[k]).toLowerCase().includes(needle)));
    };
    const shown = flat.filter(([p, f]) => (!since || p.startTimeStampMs >= now - since) && matches(f));
    const body = document.querySelector("#predictions tbody");
    body.replaceChildren();
    for (const [p, f] of shown) {
      const button = el("button", p.predictionUuid.slice(0, 8), "mono link");
      button.type = "button";
      button.title = p.predictionUuid;
      button.setAttribute("aria-label", "Show prediction " + p.predictionUuid);
      button.addEventListener("click", () => findPrediction(p.predictionUuid));
      body.appendChild(row([button, when(p.startTimeStampMs), fmt(p.endTimeStampMs - p.startTimeStampMs, "ms"),
        ...columns.map((k) => valueCell(f[k], isDelayed(k)))]));
    }
    if (!shown.length) {
      const tr = row([predState.rows.length ? "No prediction matches the filters." : "No predictions yet."]);
      tr.firstChild.colSpan = 3 + columns.length;
      body.appendChild(tr);
    }
    document.getElementById("pred-status").textContent = "Showing " + fmt(shown.length, "count") + " of the newest " +
      fmt(predState.rows.length, "count") + " predictions, " + columns.length + " keys" +
      (predState.delayed.length ? " (" + predState.delayed.length + " arriving later)." : ".");
  }

  async function loadPredictions(name) {
    const limit = document.getElementById("pred-limit").value;
    const data = await api("/api/v1/models/" + encodeURIComponent(name) + "/predictions?limit=" + limit);
    predState.rows = data.predictions;
    predState.delayed = data.delayed_keys || [];
    renderPredictions();
  }

  function predictionFilters(name) {
    for (const id of ["pred-key", "pred-since"]) document.getElementById(id).addEventListener("change", renderPredictions);
    document.getElementById("pred-contains").addEventListener("input", renderPredictions);
    document.getElementById("pred-limit").addEventListener("change", () => loadPredictions(name).catch(() => {}));
    document.getElementById("pred-filters").addEventListener("submit", (event) => { event.preventDefault(); renderPredictions(); });
  }

  function model() {
    const data = pageData();
    const name = data.name;
    localTimes();
    renderReplicas(data.status);
    setInterval(async () => {
      if (document.hidden) return;
      try { renderReplicas(await api("/api/v1/models/" + encodeURIComponent(name))); } catch (e) { /* next tick */ }
    }, 5000);
    const range = document.getElementById("range");
    range.addEventListener("change", () => loadTech(name).catch(() => {}));
    every(15, () => loadTech(name).catch(() => {}));
    predictionFilters(name);
    every(15, () => loadPredictions(name).catch(() => {}));
    document.getElementById("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      findPrediction(document.getElementById("search-uuid").value.trim());
    });
    document.getElementById("try-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = document.getElementById("try-output");
      out.textContent = "…";
      const response = await fetch("/ui/models/" + encodeURIComponent(name) + "/try", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: document.getElementById("try-input").value,
      });
      const text = await response.text();
      try { out.textContent = "HTTP " + response.status + "\n" + JSON.stringify(JSON.parse(text), null, 2); }
      catch (e) { out.textContent = "HTTP " + response.status + "\n" + text; }
      loadPredictions(name).catch(() => {});
    });
  }

  // -- metrics explorer ------------------------------------------------------------------------
  async function loadKeys() {
    const deployment = document.getElementById("deployment").value;
    if (!deployment) return;
    const span = Number(document.getElementById("range").value);
    const end = Date.now();
    const q = new URLSearchParams({ deployment, start: String(end - span), end: String(end) });
    const data = await api("/api/v1/series/keys?" + q);
    const list = document.getElementById("metric-keys");
    list.replaceChildren();
    for (const k of data.keys) {
      const option = el("option");
      option.value = k.key;
      option.label = k.key + " (" + k.kinds.join(", ") + ")";
      list.appendChild(option);
    }
    const metric = document.getElementById("metric");
    if (!metric.value && data.keys.length) metric.value = data.keys[0].key;
  }

  async function loadSeries() {
    const deployment = document.getElementById("deployment").value;
    const metric = document.getElementById("metric").value.trim();
    const status = document.getElementById("resolution");
    if (!deployment || !metric) { status.textContent = "Choose a deployment and a metric."; return; }
    const span = Number(document.getElementById("range").value);
    const end = Date.now();
    const q = new URLSearchParams({ deployment, metric, start: String(end - span), end: String(end) });
    let data;
    try { data = await api("/api/v1/series?" + q); } catch (e) { status.textContent = e.message; return; }
    const traces = [];
    const r = data.rollup;
    if (r.t.length) {
      const t = r.t.map((ms) => new Date(ms));
      traces.push({ x: t, y: r.p95, name: "rollup p95", mode: "lines", line: { width: 0 }, showlegend: false, type: "scatter" });
      traces.push({ x: t, y: r.p05, name: "rollup p05–p95", mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: "rgba(11,92,173,0.15)", type: "scatter" });
      traces.push({ x: t, y: r.mean, name: "rollup mean", mode: "lines+markers", type: "scatter" });
    }
    if (data.raw.t.length) {
      traces.push({ x: data.raw.t.map((ms) => new Date(ms)), y: data.raw.value, name: "raw",
        mode: "markers", marker: { size: 4 }, type: "scatter" });
    }
    if (data.aggregate.t.length) {
      traces.push({ x: data.aggregate.t.map((ms) => new Date(ms)), y: data.aggregate.value, name: "aggregate",
        mode: "lines+markers", type: "scatter" });
    }
    status.textContent = "Resolution: " + data.resolution + ".";
    const lay = layout(metric, metric);
    lay.height = 420;
    lay.yaxis.rangemode = "normal";
    draw("chart-metric", traces, lay);
  }

  function metrics() {
    const form = document.getElementById("explore");
    form.addEventListener("submit", (event) => { event.preventDefault(); loadSeries(); });
    document.getElementById("deployment").addEventListener("change", () => loadKeys().catch(() => {}));
    loadKeys().catch(() => {}).then(loadSeries);
    setInterval(() => { if (!document.hidden) loadSeries(); }, 30000);  // new values without a reload
  }

  // -- drift -------------------------------------------------------------------------------
  let driftData = null;

  async function loadDrift() {
    const deployment = document.getElementById("deployment").value;
    const status = document.getElementById("drift-status");
    if (!deployment) { status.textContent = "No deployments yet."; return; }
    const span = Number(document.getElementById("range").value);
    const end = Date.now();
    const q = new URLSearchParams({ deployment, method: document.getElementById("method").value,
      start: String(end - span), end: String(end) });
    try { driftData = await api("/api/v1/drift?" + q); } catch (e) { status.textContent = e.message; return; }
    const d = driftData;
    status.textContent = d.features.length
      ? d.features.length + " features over " + d.windows.length + " monitor windows (" + d.method + ")."
      : "No monitor results with " + d.method + " effects in this range.";
    const x = d.windows.map((w) => when(w.start_ms));
    // One colour language (modelyard.ui.look): calm cells light and neutral, strong drift dark
    // red, flagged cells carry the flag symbol too; the scale's meaning is written beside it.
    const look = JSON.parse(document.getElementById("drift-look").textContent);
    const marks = d.flagged.map((r) => r.map((f) => (f ? look.flag : "")));
    const shown = d.values.flat().filter((v) => v !== null && Number.isFinite(v));
    const strong = look.strong[d.method] || Math.max(1e-9, ...shown);
    const lay = layout("Drift effect (" + d.method + ") by feature and window", "feature");
    lay.height = Math.max(260, 90 + 34 * d.features.length);
    lay.yaxis = { type: "category", automargin: true };
    lay.xaxis = { type: "category", automargin: true };
    document.getElementById("chart-heatmap").style.height = lay.height + "px";
    draw("chart-heatmap", [{ type: "heatmap", x, y: d.features, z: d.values, text: marks,
      texttemplate: "%{text}", textfont: { size: 15 }, colorscale: look.colorscale, zmin: 0, zmax: strong,
      hoverongaps: false, hovertemplate: "%{y} · %{x}: " + d.method + " %{z:.3f} %{text}<extra></extra>",
      colorbar: { title: { text: d.method + "<br>light: calm<br>dark: drift" } } }], lay);
    const select = document.getElementById("cell");
    const chosen = select.value;  // kept across a refresh
    select.replaceChildren(el("option", "choose a feature and window"));
    select.firstChild.value = "";
    d.features.forEach((f, i) => d.windows.forEach((w, j) => {
      const v = d.values[i][j];
      const option = el("option", f + " · " + when(w.start_ms) + (v === null ? "" : " · " + window.Modelyard.fmt(v)) + (d.flagged[i][j] ? " · " + look.flag + " flagged" : ""));
      option.value = i + ":" + j;
      select.appendChild(option);
    }));
    if (chosen && select.querySelector('option[value="' + chosen + '"]')) select.value = chosen;
    const chart = document.getElementById("chart-heatmap");
    if (chart.on && !chart.dataset.bound) {
      chart.dataset.bound = "1";
      chart.on("plotly_click", (event) => {
        const index = event.points[0].pointIndex;  // [feature row, window column]
        if (Array.isArray(index)) openCell(index[0], index[1]);
      });
    }
  }

  // Multivariate drift and segment gaps per window (GET /api/v1/drift/groups).
  async function loadGroups() {
    const deployment = document.getElementById("deployment").value;
    const status = document.getElementById("groups-status");
    if (!deployment) { status.textContent = "No deployments yet."; return; }
    const span = Number(document.getElementById("range").value);
    const end = Date.now();
    const q = new URLSearchParams({ deployment, start: String(end - span), end: String(end) });
    let d;
    try { d = await api("/api/v1/drift/groups?" + q); } catch (e) { status.textContent = e.message; return; }
    status.textContent = d.windows.length
      ? d.windows.length + " monitor windows with multivariate drift or segments."
      : "No monitor windows with multivariate drift or segments in this range.";
    const x = d.windows.map((w) => when(w.start_ms));
    const mv = d.windows.map((w) => w.multivariate || {});
    const auc = mv.map((m) => (m.auc === undefined ? null : m.auc));
    const low = mv.map((m) => (m.auc_ci_low === undefined ? null : m.auc_ci_low));
    const high = mv.map((m) => (m.auc_ci_high === undefined ? null : m.auc_ci_high));
    const lay = layout("Domain classifier AUC (0.5: no drift)", "AUC");
    lay.xaxis = { type: "category", automargin: true };
    lay.yaxis = { title: { text: "AUC" }, range: [0.3, 1] };
    draw("chart-multivariate", [{ type: "scatter", mode: "lines+markers", x, y: auc, name: "AUC",
      error_y: { type: "data", symmetric: false, array: auc.map((a, k) => (a === null ? null : high[k] - a)),
        arrayminus: auc.map((a, k) => (a === null ? null : a - low[k])) } }], lay);
    const gapLay = layout("Largest gap between segments", "gap");
    gapLay.xaxis = { type: "category", automargin: true };
    draw("chart-gaps", d.gap_metrics.map((m) => ({ type: "scatter", mode: "lines+markers", name: m, x,
      y: d.windows.map((w) => (w.gaps[m] ? w.gaps[m].value : null)) })), gapLay);
    const body = document.querySelector("#groups tbody");
    body.replaceChildren();
    for (const w of d.windows) {
      const m = w.multivariate;
      const interval = m && m.auc !== null && m.auc !== undefined
        ? fmt(m.auc) + " [" + fmt(m.auc_ci_low) + ", " + fmt(m.auc_ci_high) + "]" : null;
      const flag = m && m.flagged !== null && m.flagged !== undefined
        ? el("span", m.flagged ? window.Modelyard.FLAG + " yes" : "no", m.flagged ? "bad" : "ok") : null;
      const gaps = Object.entries(w.gaps).filter(([, g]) => g.value !== null)
        .map(([name, g]) => name + " " + fmt(g.value) + " (lowest " + g.min_segment + ", highest " + g.max_segment + ")");
      const notes = [w.segments_reason, m ? m.reason : null,
        ...Object.entries(w.gaps).filter(([, g]) => g.value === null && g.reason).map(([name, g]) => name + " gap: " + g.reason)]
        .filter((n) => n);
      body.appendChild(row([when(w.start_ms), fmt(w.n, "count"), interval, flag,
        m && m.top_features && m.top_features.length ? m.top_features.join(", ") : null,
        gaps.length ? gaps.join("; ") : null, notes.length ? notes.join(" ") : null]));
    }
    if (!d.windows.length) {
      const tr = row(["No windows."]);
      tr.firstChild.colSpan = 7;
      body.appendChild(tr);
    }
  }

  async function openCell(i, j) {
    const d = driftData;
    const feature = d.features[i];
    const w = d.windows[j];
    document.getElementById("cell").value = i + ":" + j;
    const status = document.getElementById("cell-status");
    const q = new URLSearchParams({ deployment: d.deployment_crn, feature,
      start: String(w.start_ms), end: String(w.end_ms) });
    let data;
    try { data = await api("/api/v1/drift/distributions?" + q); } catch (e) { status.textContent = e.message; return; }
    const title = (side) => feature + ": " + side;
    if (data.kind === "numeric") {
      const bars = (side, color) => {
        const e = side.bin_edges;
        const mids = e.slice(0, -1).map((v, k) => (v + e[k + 1]) / 2);
        const widths = e.slice(0, -1).map((v, k) => e[k + 1] - v);
        return [{ type: "bar", x: mids, width: widths, y: side.shares, marker: { color } }];
      };
      const lay = (side) => Object.assign(layout(title(side), "share"),
        { xaxis: { title: { text: feature }, range: data.x_range } });
      draw("chart-reference", bars(data.reference, "#0b5cad"), lay("reference (" + data.reference.count + " rows)"));
      draw("chart-current", bars(data.current, "#a40e26"),
        lay("window from " + when(w.start_ms) + " (" + data.current.count + " values)"));
      status.textContent = "Window " + when(w.start_ms) + " to " + when(w.end_ms) + ": " +
        (data.current.exact ? "exact, from raw records." : "from rollup sketches (rank error " + data.current.rank_error.toFixed(4) + ").");
    } else {
      const lay = (side) => Object.assign(layout(title(side), "share"), { xaxis: { type: "category" } });
      draw("chart-reference", [{ type: "bar", x: data.reference.categories, y: data.reference.shares, marker: { color: "#0b5cad" } }],
        lay("reference category shares"));
      draw("chart-current", [{ type: "bar", x: data.current.categories, y: data.current.shares, marker: { color: "#a40e26" } }],
        lay("window from " + when(w.start_ms) + " (" + data.current.count + " values)"));
      status.textContent = "Window " + when(w.start_ms) + " to " + when(w.end_ms) + ": categories" +
        (data.current.sampled ? " of the window's first records only (a sample)." : ".");
    }
  }

  // -- alerts and keys: the server renders the first view, fetch() keeps it current -----------
  function refreshed() {
    const node = document.getElementById("refreshed");
    if (node) node.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  }

  function renderAlerts(alerts, all) {
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren();
    for (const a of alerts) {
      const firing = a.state === "firing";
      const state = el("span", null, "state " + (firing ? "state-alerting" : "state-healthy"));
      const symbol = el("span", firing ? "✖" : "●");
      symbol.setAttribute("aria-hidden", "true");
      state.append(symbol, " " + a.state);
      const link = el("a", a.deployment_crn.split("/").pop().slice(0, 8), "mono");
      link.href = "/ui/drift?deployment=" + encodeURIComponent(a.deployment_crn);
      body.appendChild(row([state, a.monitor, el("span", a.rule, "mono"), fmt(a.value),
        el("span", JSON.stringify(a.breaching), "mono"), when(a.first_window_start_ms),
        when(a.fired_ms), a.resolved_ms ? when(a.resolved_ms) : null, link]));
    }
    if (!alerts.length) {
      const tr = row(["No alerts" + (all ? "" : " firing") + "."]);
      tr.firstChild.colSpan = 9;
      body.appendChild(tr);
    }
    refreshed();
  }

  function alertsPage() {
    localTimes();
    const all = document.getElementById("alerts").dataset.all === "true";
    setInterval(async () => {
      if (document.hidden) return;
      try { renderAlerts((await api(inProject("/api/v1/alerts?all=" + all))).alerts, all); } catch (e) { /* next tick */ }
    }, 10000);
  }

  function renderKeys(keys) {
    const table = document.getElementById("keys");
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const k of keys) {
      let action = "";
      if (!k.revoked_ms && k.id !== table.dataset.self) {
        action = el("form", null, "inline");
        action.method = "post";
        action.action = "/ui/keys/" + encodeURIComponent(k.id) + "/revoke";
        const hidden = el("input");
        hidden.type = "hidden";
        hidden.name = "csrf";
        hidden.value = csrf;
        const button = el("button", "Revoke");
        button.type = "submit";
        button.setAttribute("aria-label", "Revoke key " + k.name);
        action.append(hidden, button);
      }
      body.appendChild(row([k.name, k.role, el("span", k.prefix, "mono"), when(k.created_ms),
        k.expires_ms ? when(k.expires_ms) : "never", k.revoked_ms ? "revoked" : "active", action]));
    }
    refreshed();
  }

  function keysPage() {
    localTimes();
    setInterval(async () => {
      if (document.hidden) return;
      try { renderKeys((await api("/api/v1/keys")).keys); } catch (e) { /* next tick */ }
    }, 10000);
  }

  function driftPage() {
    document.getElementById("drift-form").addEventListener("submit", (event) => { event.preventDefault(); loadDrift(); });
    document.getElementById("cell").addEventListener("change", (event) => {
      const [i, j] = event.target.value.split(":").map(Number);
      if (event.target.value) openCell(i, j);
    });
    document.getElementById("drift-form").addEventListener("submit", () => { loadGroups().catch(() => {}); });
    every(60, () => { loadDrift().catch(() => {}); loadGroups().catch(() => {}); });  // new windows without a reload
  }

  // -- jobs --------------------------------------------------------------------------------
  const jobsState = { jobs: [], admin: false, job: "", logRun: null, logAbort: null };

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms < 1000 ? ms + " ms" : ms < 120000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(1) + " min";
  }

  function scheduleText(j) {
    if (j.schedule === "cron") return "cron " + j.cron + " (" + j.timezone + ")";
    if (j.schedule === "interval" || j.schedule === "every") return "every " + duration(j.every_ms);
    if (j.schedule === "after") return "after " + j.after + " succeeds";
    return j.schedule;
  }

  function actionButton(label, aria, handler) {
    const button = el("button", label);
    button.type = "button";
    button.setAttribute("aria-label", aria);
    button.addEventListener("click", handler);
    return button;
  }

  function renderJobs() {
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren();
    if (!jobsState.jobs.length) {
      const tr = row(["No jobs yet: define one with 'modelyard jobs create'."]);
      tr.firstChild.colSpan = 6;
      body.appendChild(tr);
    }
    for (const j of jobsState.jobs) {
      const last = j.last_run;
      const actions = el("span", null, "inline");
      actions.appendChild(actionButton("History", "Show runs of " + j.name, () => selectJob(j.name)));
      if (jobsState.admin) {
        actions.appendChild(actionButton("Run now", "Run " + j.name + " now", () => runNow(j.name)));
      }
      body.appendChild(row([
        j.name + (j.paused ? " (paused)" : ""), scheduleText(j), j.next_run_ms ? when(j.next_run_ms) : "–",
        last ? last.state + " · " + when(last.queued_ms) : "never", last ? duration(last.duration_ms) : "–", actions,
      ]));
    }
    const select = document.getElementById("job-select");
    const current = select.value || jobsState.job;
    select.replaceChildren();
    for (const j of jobsState.jobs) {
      const option = el("option", j.name);
      option.value = j.name;
      select.appendChild(option);
    }
    if (current) select.value = current;
  }

  function drawPipeline() {
    const jobs = jobsState.jobs;
    const depth = {};
    const byName = Object.fromEntries(jobs.map((j) => [j.name, j]));
    const level = (j, seen) => {
      if (depth[j.name] !== undefined) return depth[j.name];
      if (!j.after || !byName[j.after] || seen.has(j.name)) return (depth[j.name] = 0);
      seen.add(j.name);
      return (depth[j.name] = level(byName[j.after], seen) + 1);
    };
    jobs.forEach((j) => level(j, new Set()));
    const rows = {};
    const pos = {};
    for (const j of jobs) {
      const d = depth[j.name];
      rows[d] = (rows[d] || 0) + 1;
      pos[j.name] = [d, -(rows[d] - 1)];
    }
    const annotations = jobs.filter((j) => j.after && pos[j.after]).map((j) => ({
      x: pos[j.name][0], y: pos[j.name][1], ax: pos[j.after][0], ay: pos[j.after][1],
      xref: "x", yref: "y", axref: "x", ayref: "y", showarrow: true, arrowhead: 3, arrowsize: 1.5,
      standoff: 14, startstandoff: 14, text: "",
    }));
    const colors = jobs.map((j) => !j.last_run ? "#8c959f" : j.last_run.state === "succeeded" ? "#116329"
      : ["failed", "timed_out"].includes(j.last_run.state) ? "#a40e26" : "#0b5cad");
    const lay = layout("", "");
    lay.xaxis = { visible: false, range: [-0.5, Math.max(0, ...Object.values(depth)) + 0.5] };
    lay.yaxis = { visible: false, range: [Math.min(0, ...Object.values(pos).map((p) => p[1])) - 0.5, 0.5] };
    lay.annotations = annotations;
    lay.showlegend = false;
    draw("chart-pipeline", [{
      type: "scatter", mode: "markers+text", x: jobs.map((j) => pos[j.name][0]), y: jobs.map((j) => pos[j.name][1]),
      text: jobs.map((j) => j.name), textposition: "bottom center", marker: { size: 22, color: colors },
      hovertext: jobs.map((j) => j.name + ": " + (j.last_run ? j.last_run.state : "no runs")), hoverinfo: "text",
    }], lay);
  }

  async function refreshJobs() {
    try {
      jobsState.jobs = (await api(inProject("/api/v1/jobs"))).jobs;
      renderJobs();
      drawPipeline();
      if (jobsState.job) await loadRuns();
    } catch (e) {
      document.getElementById("jobs-status").textContent = e.message;
    }
  }

  async function runNow(name) {
    const status = document.getElementById("jobs-status");
    try {
      const run = await api("/api/v1/jobs/" + encodeURIComponent(name) + "/run", { method: "POST" });
      status.textContent = "Started run " + run.uuid + " of " + name + ".";
      jobsState.job = name;
      document.getElementById("job-select").value = name;
      await refreshJobs();
      showLog(run.uuid);
    } catch (e) {
      status.textContent = "Could not run " + name + ": " + e.message;
    }
  }

  async function cancelRun(uuid) {
    const status = document.getElementById("jobs-status");
    try {
      const run = await api("/api/v1/runs/" + encodeURIComponent(uuid) + "/cancel", { method: "POST" });
      status.textContent = "Run " + uuid + " is " + run.state + ".";
    } catch (e) {
      status.textContent = "Could not cancel: " + e.message;
    }
    refreshJobs();
  }

  async function selectJob(name) {
    jobsState.job = name;
    document.getElementById("job-select").value = name;
    await loadRuns();
    document.getElementById("job-select").focus();
  }

  async function loadRuns() {
    const name = jobsState.job;
    if (!name) return;
    const data = await api("/api/v1/jobs/" + encodeURIComponent(name) + "/runs?limit=50");
    const body = document.querySelector("#runs tbody");
    body.replaceChildren();
    for (const r of data.runs) {
      const actions = el("span", null, "inline");
      actions.appendChild(actionButton("Log", "Show the log of run " + r.uuid, () => showLog(r.uuid)));
      if (jobsState.admin && (r.state === "running" || r.state === "queued")) {
        actions.appendChild(actionButton("Cancel", "Cancel run " + r.uuid, () => cancelRun(r.uuid)));
      }
      body.appendChild(row([r.uuid.slice(0, 8), r.state, r.trigger, r.scheduled_at, when(r.started_ms),
        duration(r.duration_ms), r.exit_code, actions]));
    }
    if (!data.runs.length) {
      const tr = row(["No runs yet."]);
      tr.firstChild.colSpan = 8;
      body.appendChild(tr);
    }
  }

  async function showLog(uuid) {
    // A finished run's log is read once; a running one is followed as the server streams it
    // (GET .../logs?follow=true ends when the run ends), then its final state is shown.
    if (jobsState.logAbort) jobsState.logAbort.abort();
    const controller = new AbortController();
    jobsState.logAbort = controller;
    jobsState.logRun = uuid;
    document.getElementById("log-run").textContent = uuid;
    const status = document.getElementById("log-status");
    const out = document.getElementById("run-log");
    const base = "/api/v1/runs/" + encodeURIComponent(uuid);
    out.textContent = "";
    try {
      const run = await api(base);
      const live = run.state === "running" || run.state === "queued";
      status.textContent = "Run " + run.state + (live ? " (live)" : "");
      const response = await fetch(base + "/logs?tail=500" + (live ? "&follow=true" : ""),
        { credentials: "same-origin", signal: controller.signal });
      if (!response.ok) {
        status.textContent = "Run " + run.state + "; no log yet";
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.textContent += decoder.decode(value, { stream: true });
        if (atEnd) out.scrollTop = out.scrollHeight;
      }
      if (live) {
        const final = await api(base);
        status.textContent = "Run " + final.state;
        refreshJobs();
      }
    } catch (e) {
      if (e.name !== "AbortError") status.textContent = e.message;
    }
  }

  function jobsPage() {
    const data = pageData();
    jobsState.jobs = data.jobs;
    jobsState.admin = data.admin;
    jobsState.job = JSON.parse(document.getElementById("page-chosen").textContent) || (data.jobs[0] ? data.jobs[0].name : "");
    renderJobs();
    drawPipeline();
    loadRuns().catch(() => {});
    document.getElementById("job-select").addEventListener("change", (event) => {
      jobsState.job = event.target.value;
      loadRuns().catch(() => {});
    });
    setInterval(() => { if (!document.hidden) refreshJobs(); }, 10000);
  }

  if (page === "overview") overview();
  else if (page === "jobs") jobsPage();
  else if (page === "drift") driftPage();
  else if (page === "model") model();
  else if (page === "metrics") metrics();
  else if (page === "alerts") alertsPage();
  else if (page === "keys") keysPage();
  else localTimes();
})();
