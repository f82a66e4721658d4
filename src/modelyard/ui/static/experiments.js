// Modelyard dashboard: the experiments page. Renders the runs the page was served with, sorts
// them by any column, charts a metric across the ticked runs (GET /api/v1/experiments/compare),
// shows one run with its files (download links) and log, and refreshes the list every 10 s.
// Values go in the page with textContent only, never as HTML (see app.js).
"use strict";

(function () {
  if (document.body.dataset.page !== "experiments") return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const project = (document.querySelector('meta[name="modelyard-project"]') || {}).content || "";
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const chosen = JSON.parse(document.getElementById("page-chosen").textContent);
  const state = {
    runs: data.experiments, operate: data.operate, sort: { key: "started", dir: -1 },
    ticked: new Set(data.experiments.slice(0, 10).map((r) => r.uuid)), metric: "", detail: chosen || "",
    compared: { runs: [], metrics: [] }, timer: null,
  };
  const LIVE = ["queued", "running"];
  const plotConfig = { displaylogo: false, responsive: true };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function cell(tr, value, tag) {
    const td = document.createElement(tag || "td");
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
    tr.appendChild(td);
    return td;
  }

  function when(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms < 1000 ? ms + " ms" : ms < 120000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(1) + " min";
  }

  function shown(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number" && !Number.isInteger(value)) return Number(value.toPrecision(6)).toString();
    return String(value);
  }

  function runPath(uuid, rest) {
    return "/api/v1/experiments/" + encodeURIComponent(uuid) + (rest || "");
  }

  function inProject(path) {
    if (!project) return path;
    return path + (path.includes("?") ? "&" : "?") + "project=" + encodeURIComponent(project);
  }

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, opts);
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body && body.error ? body.error.message : response.statusText);
    return body;
  }

  function label(run) { return run.name || run.uuid.slice(0, 8); }

  function metricKeys() {
    const keys = new Set();
    for (const r of state.runs) for (const k of Object.keys(r.metrics || {})) keys.add(k);
    return Array.from(keys).sort();
  }

  // -- the runs table ------------------------------------------------------------------------
  function columns() {
    const fixed = [
      { key: "uuid", title: "Run", value: (r) => r.uuid },
      { key: "name", title: "Name", value: (r) => r.name },
      { key: "state", title: "State", value: (r) => r.state },
      { key: "script", title: "Script and arguments", value: (r) => [r.script].concat(r.args || []).join(" ") },
      { key: "code", title: "Code", value: (r) => r.codeDigest },
      { key: "started", title: "Started", value: (r) => r.startedMs },
      { key: "duration", title: "Duration", value: (r) => r.durationMs },
    ];
    return fixed.concat(metricKeys().map((k) => ({ key: "m:" + k, title: k, metric: true, value: (r) => (r.metrics || {})[k] })));
  }

  function compare(a, b) {
    const missing = (v) => v === null || v === undefined;
    if (missing(a) || missing(b)) return missing(a) - missing(b);  // missing last, both ways
    if (typeof a === "number" && typeof b === "number") return (a - b) * state.sort.dir;
    return String(a).localeCompare(String(b)) * state.sort.dir;
  }

  function sorted(cols) {
    const col = cols.find((c) => c.key === state.sort.key) || cols[5];
    return state.runs.slice().sort((x, y) => compare(col.value(x), col.value(y)));
  }

  function header(cols) {
    const tr = document.querySelector("#runs thead tr");
    tr.replaceChildren();
    const tick = el("th", null);
    tick.scope = "col";
    tick.appendChild(el("span", "Chart", "sr"));
    tr.appendChild(tick);
    for (const c of cols) {
      const th = el("th");
      th.scope = "col";
      if (c.key === state.sort.key) th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
      const button = el("button", c.title + (c.key === state.sort.key ? (state.sort.dir > 0 ? " ▲" : " ▼") : ""), "link");
      button.type = "button";
      button.dataset.sort = c.key;
      button.setAttribute("aria-label", "Sort by " + c.title);
      button.addEventListener("click", () => {
        state.sort = { key: c.key, dir: state.sort.key === c.key ? -state.sort.dir : (c.metric ? -1 : 1) };
        renderRuns();
        document.querySelector('#runs button[data-sort="' + CSS.escape(c.key) + '"]').focus();
      });
      th.appendChild(button);
      tr.appendChild(th);
    }
    const actions = el("th", "Actions");
    actions.scope = "col";
    tr.appendChild(actions);
  }

  function renderRuns() {
    const cols = columns();
    header(cols);
    const body = document.querySelector("#runs tbody");
    body.replaceChildren();
    if (!state.runs.length) {
      const tr = document.createElement("tr");
      cell(tr, "No experiments yet: start one with 'modelyard experiments run SCRIPT'.").colSpan = cols.length + 2;
      body.appendChild(tr);
    }
    for (const r of sorted(cols)) {
      const tr = document.createElement("tr");
      tr.dataset.run = r.uuid;
      const box = el("input");
      box.type = "checkbox";
      box.checked = state.ticked.has(r.uuid);
      box.setAttribute("aria-label", "Chart run " + label(r));
      box.addEventListener("change", () => {
        if (box.checked) state.ticked.add(r.uuid); else state.ticked.delete(r.uuid);
        loadCharts();
      });
      cell(tr, box);
      for (const c of cols) {
        const value = c.value(r);
        if (c.key === "uuid") cell(tr, el("span", value.slice(0, 8), "mono")).title = value;
        else if (c.key === "code") cell(tr, value ? el("span", value.replace(/^sha256:/, "").slice(0, 12), "mono") : null).title = value || "";
        else if (c.key === "started") cell(tr, when(value));
        else if (c.key === "duration") cell(tr, duration(value));
        else cell(tr, c.metric ? shown(value) : value);
      }
      const actions = el("span", null, "inline");
      const details = el("button", "Details");
      details.type = "button";
      details.setAttribute("aria-label", "Show run " + label(r));
      details.addEventListener("click", () => showRun(r.uuid));
      actions.appendChild(details);
      if (state.operate && LIVE.includes(r.state)) {
        const cancel = el("button", "Cancel");
        cancel.type = "button";
        cancel.setAttribute("aria-label", "Cancel run " + label(r));
        cancel.addEventListener("click", () => cancelRun(r.uuid));
        actions.appendChild(cancel);
      }
      cell(tr, actions);
      body.appendChild(tr);
    }
    renderMetricSelect();
  }

  // -- charts --------------------------------------------------------------------------------
  function renderMetricSelect() {
    const select = document.getElementById("metric-select");
    const keys = metricKeys();
    if (!state.metric || !keys.includes(state.metric)) state.metric = keys[0] || "";
    select.replaceChildren(...keys.map((k) => { const o = el("option", k); o.value = k; return o; }));
    select.value = state.metric;
  }

  function numeric(value) {
    if (typeof value === "boolean") return value ? 1 : 0;
    return typeof value === "number" ? value : null;
  }

  function drawCharts() {
    if (!window.Plotly) return;
    const key = state.metric;
    const runs = state.compared.runs;
    const lay = (title, xTitle) => ({
      title: { text: title, font: { size: 13 } }, margin: { l: 50, r: 10, t: 30, b: 60 },
      xaxis: { title: { text: xTitle }, automargin: true }, yaxis: { title: { text: key } },
      legend: { orientation: "h" }, height: 280,
    });
    const bars = runs.filter((r) => numeric((r.metrics || {})[key]) !== null);
    window.Plotly.react("chart-last", [{
      type: "bar", x: bars.map(label), y: bars.map((r) => numeric(r.metrics[key])),
      hovertext: bars.map((r) => r.uuid + " " + [r.script].concat(r.args || []).join(" ")), marker: { color: "#0b5cad" },
    }], lay(key ? "Last " + key + " by run" : "No metric yet", "run"), plotConfig);
    const lines = runs.map((r) => {
      const points = ((r.metricHistory || {})[key] || []).filter((p) => numeric(p[1]) !== null);
      return { type: "scatter", mode: "lines+markers", name: label(r),
        x: points.map((_, i) => i + 1), y: points.map((p) => numeric(p[1])) };
    }).filter((t) => t.x.length);
    const history = lay(key ? key + " over each run" : "", "value #");
    if (Math.max(0, ...lines.map((t) => t.x.length)) <= 20) history.xaxis.dtick = 1;  // whole steps
    window.Plotly.react("chart-history", lines, history, plotConfig);
  }

  async function loadCharts() {
    const status = document.getElementById("experiments-status");
    const uuids = state.runs.map((r) => r.uuid).filter((u) => state.ticked.has(u)).slice(0, 50);
    if (!uuids.length) {
      state.compared = { runs: [], metrics: [] };
      drawCharts();
      return;
    }
    try {
      state.compared = await api("/api/v1/experiments/compare?runs=" + encodeURIComponent(uuids.join(",")));
      drawCharts();
    } catch (e) {
      status.textContent = "Could not chart the runs: " + e.message;
    }
  }

  // -- one run -------------------------------------------------------------------------------
  function fieldRows(run) {
    const res = run.resources || {};
    return [
      ["Name", run.name], ["State", run.state + (run.exitCode === null ? "" : " (exit " + run.exitCode + ")")],
      ["Project", run.project], ["Script", run.script], ["Arguments", (run.args || []).join(" ")],
      ["Code version", run.codeDigest], ["Requirements", run.requirements],
      ["Resources", ["cpus", "memory", "gpus", "accelerator"].filter((k) => res[k]).map((k) => k + " " + res[k]).join(", ")],
      ["Queued", when(run.queuedMs)], ["Started", when(run.startedMs)], ["Duration", duration(run.durationMs)],
      ["Metrics", Object.entries(run.metrics || {}).map(([k, v]) => k + " = " + shown(v)).join("; ")],
    ];
  }

  function renderFiles(run) {
    const body = document.querySelector("#run-files tbody");
    body.replaceChildren();
    for (const f of run.files || []) {
      const tr = document.createElement("tr");
      if (f.state === "kept") {
        const link = el("a", f.path);
        link.href = runPath(run.uuid, "/files/" + f.path.split("/").map(encodeURIComponent).join("/"));
        link.setAttribute("download", f.path.split("/").pop());
        cell(tr, link);
      } else {
        cell(tr, f.path);
      }
      cell(tr, f.state === "failed" ? "failed: " + f.error : f.state);
      cell(tr, f.size === null ? null : f.size + " B");
      cell(tr, f.sha256 ? el("span", f.sha256, "mono") : null);
      cell(tr, when(f.keptMs));
      body.appendChild(tr);
    }
    if (!(run.files || []).length) {
      const tr = document.createElement("tr");
      cell(tr, "No files: a run keeps one with track_file(path).").colSpan = 5;
      body.appendChild(tr);
    }
  }

  async function showRun(uuid) {
    state.detail = uuid;
    const status = document.getElementById("run-status");
    document.getElementById("run-id").textContent = uuid;
    try {
      const run = await api(runPath(uuid));
      const body = document.querySelector("#run-fields tbody");
      body.replaceChildren();
      for (const [name, value] of fieldRows(run)) {
        const tr = document.createElement("tr");
        cell(tr, name, "th").scope = "row";
        cell(tr, value);
        body.appendChild(tr);
      }
      renderFiles(run);
      // A log exists once the run started (asking before would be a 404 in the console).
      const response = run.startedMs ? await fetch(runPath(uuid, "/logs?tail=500"), { credentials: "same-origin" }) : null;
      const ok = response !== null && response.ok;
      document.getElementById("run-log").textContent = ok ? await response.text() : "";
      status.textContent = "Run " + run.state + (ok ? "" : "; no log yet");
      clearTimeout(state.timer);
      if (LIVE.includes(run.state)) state.timer = setTimeout(() => { if (state.detail === uuid) showRun(uuid); }, 3000);
    } catch (e) {
      status.textContent = e.message;
    }
  }

  async function cancelRun(uuid) {
    const status = document.getElementById("experiments-status");
    try {
      const run = await api(runPath(uuid, "/cancel"), { method: "POST" });
      status.textContent = "Run " + uuid + " is " + run.state + ".";
    } catch (e) {
      status.textContent = "Could not cancel: " + e.message;
    }
    refresh();
  }

  async function refresh() {
    try {
      state.runs = (await api(inProject("/api/v1/experiments?limit=" + data.limit))).experiments;
      renderRuns();
      await loadCharts();
    } catch (e) {
      document.getElementById("experiments-status").textContent = e.message;
    }
  }

  document.getElementById("metric-select").addEventListener("change", (event) => {
    state.metric = event.target.value;
    drawCharts();
  });
  renderRuns();
  loadCharts();
  if (state.detail) showRun(state.detail);
  setInterval(() => { if (!document.hidden) refresh(); }, 10000);
})();
