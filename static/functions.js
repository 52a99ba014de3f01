// The Functions page's chart: one function's runtime and wait percentiles, and its
// processed and failed jobs per step, from GET /api/v1/functions/series, drawn with the
// vendored plotly. Redrawn on queuewatch.js's `qw:tick` (paused while the tab is hidden);
// uirevision keeps the operator's zoom. data-points-count says what was drawn (tests).
(function () {
  "use strict";
  if (!window.Plotly) return;
  var Plotly = window.Plotly;

  function css(name) { return getComputedStyle(document.body).getPropertyValue(name).trim(); }

  // Nothing that leaves the dashboard: no cloud upload, no Chart Studio, no plotly link.
  var CONFIG = {
    responsive: true, displaylogo: false, showLink: false, showSendToCloud: false, showEditInChartStudio: false,
    plotlyServerURL: "", linkText: "",
    modeBarButtons: [["zoom2d", "pan2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "resetScale2d"], ["toImage"]]
  };

  function layout(title, revision) {
    var line = css("--line"), muted = css("--muted"), text = css("--text");
    var axis = { gridcolor: line, linecolor: line, zerolinecolor: line, tickfont: { color: muted } };
    return {
      uirevision: revision, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: text, family: "system-ui, sans-serif", size: 12 },
      margin: { t: 30, r: 20, b: 36, l: 56 }, hovermode: "x unified",
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { color: text } },
      xaxis: Object.assign({ type: "date" }, axis),
      yaxis: Object.assign({ rangemode: "tozero", title: { text: title, font: { color: muted } } }, axis)
    };
  }

  function line(name, points, field, color, dash) {
    return { type: "scatter", mode: "lines+markers", name: name, x: points.map(function (p) { return new Date(p.t); }),
             y: points.map(function (p) { return p[field]; }), line: { color: css(color), dash: dash || "solid" },
             marker: { size: 4 }, connectgaps: false };
  }

  function FunctionChart(section) {
    this.section = section;
    this.url = section.dataset.url + "&minutes=" + encodeURIComponent(section.dataset.minutes);
    this.revision = section.dataset.url + section.dataset.minutes;
    this.runtime = section.querySelector("[data-chart=runtime]");
    this.throughput = section.querySelector("[data-chart=throughput]");
    this.busy = false;
  }

  FunctionChart.prototype.load = function () {
    var self = this;
    if (self.busy) return;
    self.busy = true;
    fetch(self.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (answer) { return self.draw(answer.points || []); })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { self.busy = false; });
  };

  FunctionChart.prototype.draw = function (points) {
    var self = this;
    this.section.querySelector(".history-empty").hidden = points.length > 0;
    return Promise.all([
      Plotly.react(this.runtime, [
        line("Runtime p50 (s)", points, "runtime_p50_seconds", "--accent"),
        line("Runtime p95 (s)", points, "runtime_p95_seconds", "--warn"),
        line("Wait p50 (s)", points, "wait_p50_seconds", "--ok", "dot"),
        line("Wait p95 (s)", points, "wait_p95_seconds", "--muted", "dot")
      ], layout("seconds", this.revision), CONFIG),
      Plotly.react(this.throughput, [
        line("Processed", points, "processed", "--accent"),
        line("Failed", points, "failed", "--bad")
      ], layout("jobs per step", this.revision), CONFIG)
    ]).then(function () { self.section.dataset.pointsCount = String(points.length); });
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-function-chart]").forEach(function (section) {
      var chart = new FunctionChart(section);
      chart.load();
      section.addEventListener("qw:tick", function () { chart.load(); });
    });
  });
})();
