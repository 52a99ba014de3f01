// queuewatch's charts: history from the JSON API, drawn with the vendored
// plotly (no inline script: the Content-Security-Policy allows none).
//
// Queue page: counts and rates over a chosen range. Overview: a sparkline per
// queue of the page shown, loaded and drawn only once its row is on screen.
// Both extend their traces on queuewatch.js's `qw:tick` (which pauses while
// the tab is hidden), keep the operator's zoom (uirevision), and follow the
// OS's light or dark theme. Each chart says how many points it drew in
// data-points-count, which the browser tests read.
(function () {
  "use strict";
  if (!window.Plotly) return;
  var Plotly = window.Plotly;
  var dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function css(name) {
    return getComputedStyle(document.body).getPropertyValue(name).trim();
  }

  function colors() {
    return {
      text: css("--text"), muted: css("--muted"), line: css("--line"), accent: css("--accent"),
      ok: css("--ok"), bad: css("--bad"), warn: css("--warn")
    };
  }

  function alpha(color, a) {
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    if (!m) return color;
    return "rgba(" + parseInt(m[1], 16) + "," + parseInt(m[2], 16) + "," + parseInt(m[3], 16) + "," + a + ")";
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(url + " answered " + r.status);
      return r.json();
    });
  }

  function withParams(url, params) {
    var query = Object.keys(params).filter(function (k) { return params[k] != null; })
      .map(function (k) { return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]); }).join("&");
    return url + (url.indexOf("?") < 0 ? "?" : "&") + query;
  }

  // Plotly draws Date objects in the browser's local time, as an operator reads a clock.
  function when(point) { return new Date(point.t); }
  function value(point, name) { var v = point[name]; return v === undefined ? null : v; }
  function range(point, which, name) { return point[which] && point[which][name] !== undefined ? point[which][name] : value(point, name); }

  // -- the queue page ---------------------------------------------------------

  var COUNT_TRACES = [
    // The band between each downsampled point's min and max keeps spikes in sight.
    { name: "waiting (max)", get: function (p) { return range(p, "max", "depth"); }, band: "top" },
    { name: "waiting (min)", get: function (p) { return range(p, "min", "depth"); }, band: "bottom" },
    { name: "Waiting", get: function (p) { return value(p, "depth"); }, color: "accent", width: 2 },
    { name: "In progress", get: function (p) { return value(p, "in_progress"); }, color: "ok" },
    { name: "Failed", get: function (p) { return value(p, "failed"); }, color: "bad" },
    { name: "Oldest waiting (s)", get: function (p) { return value(p, "oldest_age_seconds"); }, color: "warn", dash: "dot", axis: "y2" }
  ];
  var RATE_TRACES = [
    { name: "Processed / min", get: function (p) { return value(p, "processed_per_minute"); }, color: "accent", width: 2 },
    { name: "Failed / min", get: function (p) { return value(p, "failed_per_minute"); }, color: "bad" }
  ];

  // A rate that is only an estimate (worker counters split across queues, failed-list growth)
  // is drawn dashed and says so in its name; an exact one is solid.
  function rateSpec(rates) {
    return RATE_TRACES.map(function (s, i) {
      var r = rates && rates[i === 0 ? "processed" : "failed"];
      if (!r || !r.estimate) return s;
      return Object.assign({}, s, { name: s.name + " (estimate)", dash: "dash" });
    });
  }

  function traces(spec, points, c) {
    var x = points.map(when);
    return spec.map(function (s) {
      var trace = { type: "scatter", mode: "lines", name: s.name, x: x.slice(), y: points.map(s.get), connectgaps: false,
                    hovertemplate: "%{y:,}<extra>" + s.name + "</extra>" };
      if (s.band) {
        trace.line = { width: 0 };
        trace.showlegend = false;
        trace.hoverinfo = "skip";
        trace.hovertemplate = null;
        if (s.band === "bottom") { trace.fill = "tonexty"; trace.fillcolor = alpha(c.accent, 0.15); }
      } else {
        trace.line = { color: c[s.color], width: s.width || 1.5, dash: s.dash || "solid" };
      }
      if (s.axis) trace.yaxis = s.axis;
      return trace;
    });
  }

  function layout(c, revision, extra) {
    var axis = { gridcolor: c.line, linecolor: c.line, zerolinecolor: c.line, tickfont: { color: c.muted } };
    var base = {
      uirevision: revision,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: c.text, family: "system-ui, sans-serif", size: 12 },
      margin: { t: 30, r: 56, b: 36, l: 56 },
      hovermode: "x unified",
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { color: c.text } },
      xaxis: Object.assign({ type: "date" }, axis),
      yaxis: Object.assign({ rangemode: "tozero", title: { text: "jobs", font: { color: c.muted } } }, axis)
    };
    return Object.assign(base, extra || {});
  }

  function QueueHistory(section) {
    this.section = section;
    this.url = section.dataset.historyUrl;
    this.minutes = parseFloat(section.dataset.rangeMinutes || "60");
    this.counts = section.querySelector("[data-chart=counts]");
    this.rates = section.querySelector("[data-chart=rates]");
    this.times = [];
    this.last = null;
    this.loading = false;
    this.ticking = false;
    this.generation = 0;  // a tick's answer for a range no longer shown is dropped
  }

  QueueHistory.prototype.load = function () {
    var self = this;
    var generation = ++self.generation;
    self.loading = true;
    self.section.setAttribute("aria-busy", "true");
    return getJSON(withParams(self.url, { minutes: self.minutes })).then(function (answer) {
      if (generation === self.generation) return self.draw(answer);  // else another range was chosen meanwhile
    }).catch(function (error) {
      self.section.dataset.state = "error";
      self.note(String(error.message || error));
    }).then(function () {
      if (generation !== self.generation) return;
      self.loading = false;
      self.section.removeAttribute("aria-busy");
    });
  };

  QueueHistory.prototype.layouts = function () {
    var c = colors();
    var revision = "range-" + this.minutes;  // a new range resets the zoom; ticks keep it
    return {
      c: c,
      counts: layout(c, revision, Object.assign({
        yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, tickfont: { color: c.muted },
                  title: { text: "oldest (s)", font: { color: c.muted } } }
      }, this.thresholdLayout(c))),
      rates: layout(c, revision, { yaxis: { rangemode: "tozero", gridcolor: c.line, tickfont: { color: c.muted },
                                            title: { text: "jobs / min", font: { color: c.muted } } } })
    };
  };

  // The queue's alert threshold (data-alert-threshold, from its rule) as a dashed line
  // across the chart; plotly counts shapes in the autorange, so the line is always in view.
  QueueHistory.prototype.thresholdLayout = function (c) {
    var threshold = parseFloat(this.section.dataset.alertThreshold);
    if (!isFinite(threshold)) return { shapes: [], annotations: [] };
    return {
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: threshold, y1: threshold,
                 line: { color: c.bad, width: 1.5, dash: "dash" } }],
      annotations: [{ xref: "paper", x: 1, xanchor: "right", yref: "y", y: threshold, yanchor: "bottom", showarrow: false,
                      text: "alert above " + threshold.toLocaleString(), font: { color: c.bad, size: 11 } }]
    };
  };

  QueueHistory.prototype.draw = function (answer) {
    var points = answer.points || [];
    var l = this.layouts();
    // Nothing that leaves the dashboard: no cloud upload, no "edit in Chart Studio", no plotly link;
    // only the zoom, pan, reset and download buttons an operator uses.
    var config = {
      responsive: true, displaylogo: false, showLink: false, showSendToCloud: false, showEditInChartStudio: false,
      plotlyServerURL: "", linkText: "",
      modeBarButtons: [["zoom2d", "pan2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "resetScale2d"], ["toImage"]]
    };
    this.times = points.map(function (p) { return Date.parse(p.t); });
    this.last = points.length ? points[points.length - 1].t : null;
    this.section.dataset.tier = answer.tier;
    this.section.dataset.state = points.length ? "ready" : "empty";
    this.section.querySelector(".history-empty").hidden = points.length > 0;
    this.describeRates(answer.rates);
    var self = this;
    return Promise.all([
      Plotly.react(this.counts, traces(COUNT_TRACES, points, l.c), l.counts, config),
      Plotly.react(this.rates, traces(rateSpec(answer.rates), points, l.c), l.rates, config)
    ]).then(function () {
      self.markEstimates(answer.rates);
      self.counted();
      if (!self.counts.dataset.listening) {
        // Say on the element whether the operator has zoomed (tests read it; ticks must keep it).
        self.counts.dataset.listening = "1";
        self.counts.on("plotly_relayout", function () {
          var axis = self.counts.layout.xaxis;
          self.counts.dataset.zoomed = axis.autorange ? "false" : "true";
        });
      }
      self.counts.dataset.zoomed = "false";
    });
  };

  QueueHistory.prototype.counted = function () {
    var waiting = this.counts.data ? this.counts.data[2] : null;
    var count = waiting ? waiting.x.length : 0;
    this.counts.dataset.pointsCount = String(count);
    this.counts.dataset.lastValue = count ? String(waiting.y[count - 1]) : "";
    this.counts.dataset.lastT = this.last || "";
    this.rates.dataset.pointsCount = String(this.rates.data ? this.rates.data[0].x.length : 0);
    var shapes = (this.counts.layout && this.counts.layout.shapes) || [];
    this.counts.dataset.threshold = shapes.length ? String(shapes[0].y0) : "";
    this.section.dataset.pointsCount = String(count);
  };

  QueueHistory.prototype.describeRates = function (rates) {
    if (!rates) return;
    var parts = ["processed", "failed"].map(function (name) {
      var r = rates[name];
      return name[0].toUpperCase() + name.slice(1) + " per minute: " + r.description + (r.estimate ? " (estimate)" : "") + ".";
    });
    this.note(parts.join(" "));
  };

  // Says on the chart which rates are estimates (tests read it) and restyles when that changes.
  QueueHistory.prototype.markEstimates = function (rates) {
    var spec = rateSpec(rates);
    var key = spec.map(function (s) { return s.dash === "dash" ? "estimate" : "exact"; }).join(",");
    if (this.rates.dataset.rateKinds === key) return;
    if (this.rates.dataset.rateKinds !== undefined && this.rates.data) {
      Plotly.restyle(this.rates, { name: spec.map(function (s) { return s.name; }),
                                   "line.dash": spec.map(function (s) { return s.dash || "solid"; }) }, [0, 1]);
    }
    this.rates.dataset.rateKinds = key;
  };

  QueueHistory.prototype.note = function (text) {
    var el = this.section.querySelector("[data-rates-note]");
    if (el) el.textContent = text;
  };

  // A tick appends what is new and drops what fell out of the range, without
  // redrawing: the zoom and hidden legend entries stay as the operator left them.
  QueueHistory.prototype.tick = function () {
    var self = this;
    if (self.loading || self.ticking) return null;
    if (!self.last) return self.load();
    var generation = self.generation;
    self.ticking = true;
    return getJSON(withParams(self.url, { minutes: self.minutes, since: self.last })).then(function (answer) {
      var points = answer.points || [];
      if (!points.length || generation !== self.generation) return;
      self.last = points[points.length - 1].t;
      self.describeRates(answer.rates);
      self.markEstimates(answer.rates);
      points.forEach(function (p) { self.times.push(Date.parse(p.t)); });
      var oldest = Date.parse(self.last) - self.minutes * 60000;
      var keep = self.times.length;
      while (keep > 0 && self.times[self.times.length - keep] <= oldest) keep--;
      self.times = self.times.slice(self.times.length - keep);
      var extend = function (gd, spec) {
        var x = spec.map(function () { return points.map(when); });
        var y = spec.map(function (s) { return points.map(s.get); });
        return Plotly.extendTraces(gd, { x: x, y: y }, spec.map(function (_, i) { return i; }), keep);
      };
      return Promise.all([extend(self.counts, COUNT_TRACES), extend(self.rates, RATE_TRACES)]).then(function () {
        self.section.dataset.state = "ready";
        self.section.querySelector(".history-empty").hidden = true;
        self.counted();
      });
    }).catch(function () { /* the next tick tries again */ }).then(function () { self.ticking = false; });
  };

  QueueHistory.prototype.choose = function (button) {
    this.section.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", b === button ? "true" : "false");
    });
    this.minutes = parseFloat(button.dataset.range);
    this.section.dataset.rangeMinutes = String(this.minutes);
    return this.load();
  };

  QueueHistory.prototype.retheme = function () {
    var l = this.layouts();
    var restyle = function (gd, spec) {
      if (!gd.data) return;
      spec.forEach(function (s, i) {
        var update = s.band ? { fillcolor: alpha(l.c.accent, 0.15) } : { "line.color": l.c[s.color] };
        Plotly.restyle(gd, update, [i]);
      });
    };
    restyle(this.counts, COUNT_TRACES);
    restyle(this.rates, RATE_TRACES);
    Plotly.relayout(this.counts, l.counts);
    Plotly.relayout(this.rates, l.rates);
  };

  // -- the overview's sparklines ------------------------------------------------

  // Only the queues of the page shown have a sparkline cell, and a cell asks for
  // its queue's history once it is on screen, then on each tick only for points
  // newer than its last: the page never asks for the other 900 queues' history.
  function Sparklines(controller) {
    this.controller = controller;
    this.minutes = parseFloat(controller.dataset.rangeMinutes || "60");
    this.points = parseInt(controller.dataset.points || "60", 10);
    this.series = {};  // "backend/system/queue" -> {x: [Date], y: [depth], last: "t"}
    this.historyBase = controller.dataset.historyUrl;  // /api/v1/history
    this.wanted = new Set();  // keys to ask for when the request in flight is back
    this.running = false;
    this.visible = new Set();
    this.observer = "IntersectionObserver" in window ? new IntersectionObserver(this.onVisible.bind(this)) : null;
  }

  // One request per page and tick for all the rows on screen (what every viewer of
  // the same page asks, so the dashboard answers it once for all of them):
  // /api/v1/history?series=b/s/q,b/s/q&since=…  A key is "backend/system/queue";
  // a queue name may itself hold slashes.
  Sparklines.prototype.historyUrl = function (keys, since) {
    var series = keys.map(function (key) {
      var a = key.indexOf("/"), b = key.indexOf("/", a + 1);
      return [key.slice(0, a), key.slice(a + 1, b), key.slice(b + 1)].map(encodeURIComponent).join("/");
    });
    return withParams(this.historyBase, { series: series.join(","), fields: "depth", minutes: this.minutes,
                                          points: this.points, since: since });
  };

  Sparklines.prototype.absorb = function (key, points) {
    var s = this.series[key] || (this.series[key] = { x: [], y: [], last: null });
    points.forEach(function (p) {
      if (s.last && p.t <= s.last) return;
      s.x.push(when(p));
      s.y.push(value(p, "depth"));
      s.last = p.t;
    });
    var oldest = Date.now() - this.minutes * 60000;
    while (s.x.length && s.x[0].getTime() < oldest) { s.x.shift(); s.y.shift(); }
  };

  // Ask for the history of ``keys``: those never loaded in full, the others only
  // for points newer than the oldest "last" among them. One request at a time.
  Sparklines.prototype.ask = function (keys) {
    var self = this;
    keys.forEach(function (key) { self.wanted.add(key); });
    // Rows that come on screen together (a page load, a scroll) go in one request.
    if (!self.scheduled) { self.scheduled = true; setTimeout(function () { self.scheduled = false; self.flush(); }, 0); }
  };

  Sparklines.prototype.flush = function () {
    var self = this;
    if (self.running) return;  // asked again when the request in flight is back
    var fresh = [], known = [], since = null;
    self.wanted.forEach(function (key) {
      var s = self.series[key];
      if (s && s.last) { known.push(key); if (since === null || s.last < since) since = s.last; } else { fresh.push(key); }
    });
    self.wanted.clear();
    var batches = [];
    if (fresh.length) batches.push([fresh, null]);
    if (known.length) batches.push([known, since]);
    if (!batches.length) return;
    self.running = true;
    Promise.all(batches.map(function (batch) {
      return getJSON(self.historyUrl(batch[0], batch[1])).then(function (answer) {
        (answer.queues || []).forEach(function (q) { self.absorb(q.backend + "/" + q.system + "/" + q.name, q.points || []); });
        batch[0].forEach(function (key) { if (!self.series[key]) self.series[key] = { x: [], y: [], last: null, empty: true }; });
        self.controller.dataset.state = "ready";
      }).catch(function () {
        if (!known.length) self.controller.dataset.state = "error";  // a failed tick: the next one tries again
      });
    })).then(function () {
      self.running = false;
      self.visible.forEach(function (el) { self.draw(el); });
      if (self.wanted.size) self.flush();
    });
  };

  Sparklines.prototype.load = function () { this.watch(); };

  // Each tick, the rows on screen ask for what is new.
  Sparklines.prototype.tick = function () {
    var keys = [];
    this.visible.forEach(function (el) { keys.push(el.dataset.series); });
    this.ask(keys);
  };

  // Rows come and go as the overview refreshes and as the operator searches or
  // pages; sparkline cells are preserved across refreshes (hx-preserve), new ones
  // are watched for visibility, and those gone from the page are forgotten.
  Sparklines.prototype.watch = function () {
    var self = this;
    self.visible.forEach(function (el) {
      if (!el.isConnected) { self.visible.delete(el); if (self.observer) self.observer.unobserve(el); }
    });
    document.querySelectorAll(".sparkline").forEach(function (el) {
      if (el.dataset.watched) return;
      el.dataset.watched = "1";
      if (self.observer) self.observer.observe(el); else self.show(el);
    });
  };

  Sparklines.prototype.show = function (el) {
    this.visible.add(el);
    this.draw(el);
    this.ask([el.dataset.series]);
  };

  Sparklines.prototype.onVisible = function (entries) {
    var self = this;
    entries.forEach(function (entry) {
      if (entry.isIntersecting) self.show(entry.target);
      else self.visible.delete(entry.target);
    });
  };

  Sparklines.prototype.draw = function (el) {
    var s = this.series[el.dataset.series];
    if (!s) { el.dataset.pointsCount = "0"; return; }
    // Redraw only what changed: a visible row whose points or theme did.
    var signature = s.x.length + "@" + (s.x.length ? s.x[s.x.length - 1].getTime() : 0) + (dark && dark.matches ? "d" : "l");
    if (el.dataset.drawn === signature) return;
    var c = colors();
    var trace = { type: "scatter", mode: "lines", x: s.x.slice(), y: s.y.slice(), line: { color: c.accent, width: 1.5 },
                  fill: "tozeroy", fillcolor: alpha(c.accent, 0.12), hoverinfo: "skip" };
    var size = { width: el.clientWidth || 120, height: el.clientHeight || 28 };
    var look = { margin: { t: 2, r: 0, b: 2, l: 0 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", showlegend: false,
                 xaxis: { visible: false, fixedrange: true }, yaxis: { visible: false, fixedrange: true, rangemode: "tozero" } };
    Plotly.react(el, [trace], Object.assign(look, size), { staticPlot: true, displayModeBar: false });
    el.dataset.drawn = signature;
    el.dataset.pointsCount = String(s.x.length);
    var newest = s.y.length ? s.y[s.y.length - 1] : null;
    el.title = s.x.length + " points over the last " + this.minutes + " min; waiting now " + (newest == null ? "unknown" : newest);
  };

  Sparklines.prototype.retheme = function () {
    var self = this;
    self.visible.forEach(function (el) { self.draw(el); });
  };

  // -- wiring ---------------------------------------------------------------------

  var charts = [];
  document.querySelectorAll("[data-queue-history]").forEach(function (section) {
    var chart = new QueueHistory(section);
    charts.push(chart);
    section.addEventListener("qw:tick", function () { chart.tick(); });
    section.addEventListener("click", function (event) {
      var button = event.target.closest("[data-range]");
      if (button) chart.choose(button);
    });
    chart.load();
  });
  document.querySelectorAll("[data-sparklines]").forEach(function (controller) {
    var sparks = new Sparklines(controller);
    charts.push(sparks);
    controller.addEventListener("qw:tick", function () { sparks.tick(); });
    document.addEventListener("htmx:afterSwap", function () { sparks.watch(); });
    sparks.load();
  });
  if (dark && dark.addEventListener) {
    dark.addEventListener("change", function () { charts.forEach(function (chart) { chart.retheme(); }); });
  }
})();
