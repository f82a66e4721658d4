// Modelyard dashboard: the timeline and compare pages' charts, drawn from the page's own data
// (the #story-data element, what /api/v1/models/{name}/timeline and /compare answer). Values
// reach the page with textContent only, never as HTML.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const node = document.getElementById("story-data");
  if (!node || !window.Plotly) return;
  const data = JSON.parse(node.textContent);
  const config = { displaylogo: false, responsive: true };
  const COLOURS = {
    deploy: "#0b5cad", rollback: "#8250df", scale: "#57606a", start: "#57606a",
    stop: "#57606a", stopped: "#57606a", failed: "#a40e26", replica: "#bc4c00",
    drift: "#bc4c00", drift_clear: "#116329", alert: "#a40e26", resolved: "#116329",
  };
  const SYMBOLS = {
    deploy: "triangle-up", rollback: "triangle-down", replica: "x", drift: "diamond",
    alert: "star", resolved: "circle-open", drift_clear: "diamond-open",
  };

  function localTime(ms) { return new Date(ms).toLocaleString(); }

  function timeline() {
    for (const t of document.querySelectorAll("#events time[data-ms]")) {
      t.textContent = localTime(Number(t.dataset.ms));
    }
    const s = data.series;
    const x = s.t.map((ms) => new Date(ms));
    const traces = [];
    if (s.high.some((v) => v !== null)) {
      traces.push({ x, y: s.high, mode: "lines", line: { width: 0 }, hoverinfo: "skip",
        showlegend: false, type: "scatter" });
      traces.push({ x, y: s.low, mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: "rgba(11,92,173,0.15)", name: "95 % interval", hoverinfo: "skip",
        type: "scatter" });
    }
    traces.push({ x, y: s.value, mode: "lines+markers", name: data.metric || "metric",
      line: { color: "#0b5cad", width: 2 }, type: "scatter" });
    if (s.coverage.some((v) => v !== null)) {
      traces.push({ x, y: s.coverage, mode: "lines", name: "label coverage", yaxis: "y2",
        line: { color: "#57606a", dash: "dot" }, type: "scatter" });
    }
    const shapes = [];
    const annotations = [];
    const kinds = {};
    for (const e of data.events) {
      const colour = COLOURS[e.kind] || "#57606a";
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: new Date(e.at_ms),
        x1: new Date(e.at_ms), y0: 0, y1: 1, line: { color: colour, width: 1, dash: "dot" } });
      if (e.kind === "deploy" || e.kind === "rollback" || e.kind === "alert") {
        annotations.push({ x: new Date(e.at_ms), y: 1, yref: "paper", yanchor: "bottom",
          text: e.kind === "alert" ? "alert" : e.title.replace(/ \(.*\)$/, ""), showarrow: false,
          font: { size: 11, color: colour }, textangle: -30 });
      }
      (kinds[e.kind] = kinds[e.kind] || []).push(e);
    }
    for (const [kind, events] of Object.entries(kinds)) {
      traces.push({
        x: events.map((e) => new Date(e.at_ms)), y: events.map(() => 1.04), yaxis: "y2",
        mode: "markers", type: "scatter", name: kind.replace("_", " "),
        marker: { size: 11, color: COLOURS[kind] || "#57606a", symbol: SYMBOLS[kind] || "circle" },
        text: events.map((e) => e.title + (e.detail ? "<br>" + e.detail : "")),
        hovertemplate: "%{x}<br>%{text}<extra></extra>",
      });
    }
    const lay = {
      margin: { l: 55, r: 55, t: 60, b: 40 }, height: 420, hovermode: "closest",
      xaxis: { type: "date", range: [new Date(data.start_ms), new Date(data.end_ms)] },
      yaxis: { title: { text: data.metric || "monitor metric" } },
      yaxis2: { overlaying: "y", side: "right", range: [0, 1.1], dtick: 0.25, title: { text: "label coverage" },
        showgrid: false, tickformat: ".0%" },
      legend: { orientation: "h", y: -0.15 }, shapes, annotations,
    };
    // The range's data only: a long range with a short story zooms to where things happened.
    const times = [...s.t, ...data.events.map((e) => e.at_ms)];
    if (times.length) {
      const lo = Math.min(...times);
      const hi = Math.max(...times);
      const pad = Math.max(1000, (hi - lo) * 0.05);
      lay.xaxis.range = [new Date(lo - pad), new Date(hi + pad)];
    }
    window.Plotly.react("chart-timeline", traces, lay, config);
  }

  function compare() {
    const sides = [["A", data.a, "#57606a"], ["B", data.b, "#bc4c00"]];
    const metric = data.metric || "metric";
    const traces = sides.filter(([, side]) => side.metric && side.metric.value !== null)
      .map(([letter, side, colour]) => ({
        x: [letter + ": " + side.label], y: [side.metric.value], type: "scatter", mode: "markers",
        name: letter, marker: { size: 12, color: colour },
        error_y: side.metric.low === null ? undefined : {
          type: "data", symmetric: false, array: [side.metric.high - side.metric.value],
          arrayminus: [side.metric.value - side.metric.low], color: colour },
      }));
    window.Plotly.react("chart-compare-metric", traces, {
      title: { text: metric + " with its 95 % interval", font: { size: 13 } },
      margin: { l: 50, r: 10, t: 30, b: 40 }, height: 260, showlegend: false,
      yaxis: { title: { text: metric } },
    }, config);
    const holder = document.getElementById("feature-charts");
    for (const f of data.features) {
      if (!f.a_hist.count && !f.b_hist.count) continue;
      const div = document.createElement("div");
      div.className = "chart";
      div.id = "feature-" + f.feature.replace(/[^A-Za-z0-9_-]/g, "_");
      div.setAttribute("role", "figure");
      div.setAttribute("aria-label", "Histogram of " + f.feature + " for A and B");
      holder.appendChild(div);
      const bars = [];
      for (const [letter, hist, colour] of [["A", f.a_hist, "#57606a"], ["B", f.b_hist, "#bc4c00"]]) {
        if (!hist.count) continue;
        const mids = hist.shares.map((_, i) => (hist.edges[i] + hist.edges[i + 1]) / 2);
        const widths = hist.shares.map((_, i) => hist.edges[i + 1] - hist.edges[i]);
        bars.push({ x: mids, y: hist.shares, width: widths, type: "bar", name: letter + " (n=" +
          hist.count + ")", marker: { color: colour }, opacity: 0.55 });
      }
      window.Plotly.react(div.id, bars, {
        title: { text: f.feature, font: { size: 13 } }, barmode: "overlay",
        margin: { l: 45, r: 10, t: 30, b: 30 }, height: 220, legend: { orientation: "h" },
        yaxis: { title: { text: "share" }, tickformat: ".0%" },
      }, config);
    }
  }

  if (page === "timeline") timeline();
  else if (page === "compare") compare();
})();
