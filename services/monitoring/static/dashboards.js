// Draws a dashboard page's charts with uPlot from the figures the page embeds as JSON (id "figures"): the same
// numbers the API answers. Each chart is kept in window.modelyardCharts by name (tests read its data there).
(function () {
  "use strict";
  var source = document.getElementById("figures");
  window.modelyardCharts = {};
  if (!source || typeof uPlot === "undefined") { return; }
  var figures = JSON.parse(source.textContent);
  var WIDTH = 900, HEIGHT = 260;
  var seconds = function (iso) { return Date.parse(iso) / 1000; };
  var value = function (v) { return v === undefined ? null : v; };

  function draw(name, element, options, data) {
    var chart = new uPlot(Object.assign({width: WIDTH, height: HEIGHT}, options), data, element);
    window.modelyardCharts[name] = chart;
    return chart;
  }

  // The x axis spans the whole window asked for, however few of its hours had predictions.
  function window_of(since, until) {
    return since && until ? [seconds(since), seconds(until)] : undefined;
  }

  function points(stroke) { return {show: true, size: 9, stroke: stroke, fill: stroke}; }

  var draws = {
    // Per hour: the score that fits the model's type (accuracy, else rmse) and the error rate.
    performance: function (element) {
      var series = figures.performance.series;
      var metric = figures.performance.type === "classification" ? "accuracy" : "rmse";
      draw("performance", element, {
        scales: {x: {range: window_of(figures.performance.since, figures.performance.until)}},
        series: [{}, {label: metric, stroke: "#2b6cb0", spanGaps: false},
                 {label: "error rate", stroke: "#c53030", scale: "rate"}],
        axes: [{}, {label: metric}, {side: 1, scale: "rate", label: "error rate"}],
      }, [series.map(function (b) { return seconds(b.start); }),
          series.map(function (b) { return value(b[metric]); }),
          series.map(function (b) { return value(b.error_rate); })]);
    },
    // Latency p95 per whole hour as anomalies.py judged it, with its expected value and the anomalous hours.
    latency: function (element) {
      var judged = figures.anomalies.metrics.latency_p95_ms;
      var flagged = {};
      judged.points.forEach(function (p) { flagged[p.start] = p.value; });
      draw("latency", element, {
        scales: {x: {range: window_of(figures.anomalies.since, figures.anomalies.until)}},
        series: [{}, {label: "latency p95 (ms)", stroke: "#2b6cb0"},
                 {label: "expected", stroke: "#a0aec0", dash: [4, 4]},
                 {label: "anomaly", stroke: "#c53030", width: 0, points: points("#c53030")}],
      }, [judged.series.map(function (b) { return seconds(b.start); }),
          judged.series.map(function (b) { return b.value; }),
          judged.series.map(function (b) { return b.expected; }),
          judged.series.map(function (b) { return flagged.hasOwnProperty(b.start) ? flagged[b.start] : null; })]);
    },
    // One chart per feature: the reference's and the current window's share per bin, side by side.
    drift: function (element) {
      var report = figures.report;
      if (!report) { return; }
      report.features.forEach(function (feature) {
        var histogram = feature.histogram;
        if (!histogram) { return; }
        var numeric = histogram.bins.length === histogram.reference.length + 1;
        var labels = numeric ? histogram.reference.map(function (_, i) {
          return Number(histogram.bins[i]).toPrecision(3) + "–" + Number(histogram.bins[i + 1]).toPrecision(3);
        }) : histogram.bins.map(String);
        var figure = document.createElement("figure");
        var caption = document.createElement("figcaption");
        caption.textContent = feature.name + (feature.drifted ? " (drifted)" : "");
        figure.appendChild(caption);
        element.appendChild(figure);
        var bars = uPlot.paths.bars({size: [0.4, 40]});
        draw("drift:" + feature.name, figure, {
          width: 440, height: 220,
          scales: {x: {time: false}},
          axes: [{values: function (_, ticks) { return ticks.map(function (t) { return labels[t] || ""; }); }}, {}],
          series: [{label: "bin", value: function (_, i) { return i === null ? "" : labels[i]; }},
                   {label: "reference", stroke: "#2b6cb0", fill: "rgba(43,108,176,.35)", paths: bars},
                   {label: "current", stroke: "#dd6b20", fill: "rgba(221,107,32,.35)", paths: bars}],
        }, [labels.map(function (_, i) { return i; }), histogram.reference, histogram.current]);
      });
    },
    // Every transition of the model's deployments, at its time, by the version deployed; rollbacks and
    // failures in red.
    timeline: function (element) {
      var events = [];
      figures.timeline.forEach(function (deployment) {
        deployment.transitions.forEach(function (step) {
          events.push({at: seconds(step.at), version: deployment.version, to: step.to_status});
        });
      });
      events.sort(function (a, b) { return a.at - b.at; });
      var bad = function (to) { return to === "rolled_back" || to === "failed"; };
      draw("timeline", element, {
        series: [{}, {label: "transition", stroke: "#2b6cb0", width: 0, points: points("#2b6cb0")},
                 {label: "live", stroke: "#2f855a", width: 0, points: points("#2f855a")},
                 {label: "rollback or failure", stroke: "#c53030", width: 0, points: points("#c53030")}],
        axes: [{}, {label: "version"}],
      }, [events.map(function (e) { return e.at; }),
          events.map(function (e) { return e.to !== "live" && !bad(e.to) ? e.version : null; }),
          events.map(function (e) { return e.to === "live" ? e.version : null; }),
          events.map(function (e) { return bad(e.to) ? e.version : null; })]);
    },
    // Each metric's B − A with its fixed-horizon and always-valid intervals.
    intervals: function (element) {
      var metrics = figures.results.metrics;
      var names = metrics.map(function (m) { return m.role + ":" + m.name; });
      var at = function (field, side) {
        return metrics.map(function (m) { return m[field] ? m[field][side] : null; });
      };
      draw("intervals", element, {
        scales: {x: {time: false, range: [-0.5, metrics.length - 0.5]}},
        axes: [{values: function (_, ticks) { return ticks.map(function (t) { return names[t] || ""; }); }}, {}],
        series: [{label: "metric", value: function (_, i) { return i === null ? "" : names[i]; }},
                 {label: "B − A", stroke: "#1d2430", width: 0, points: points("#1d2430")},
                 {label: "95% low", stroke: "#2b6cb0", width: 0, points: points("#2b6cb0")},
                 {label: "95% high", stroke: "#2b6cb0", width: 0, points: points("#2b6cb0")},
                 {label: "always-valid low", stroke: "#dd6b20", width: 0, points: points("#dd6b20")},
                 {label: "always-valid high", stroke: "#dd6b20", width: 0, points: points("#dd6b20")}],
      }, [metrics.map(function (_, i) { return i; }), metrics.map(function (m) { return m.difference; }),
          at("ci", 0), at("ci", 1), at("ci_sequential", 0), at("ci_sequential", 1)]);
    },
    // Each metric's always-valid p-value at every look, and alpha.
    p_path: function (element) {
      var path = figures.path, names = {};
      path.forEach(function (look) { Object.keys(look.p_values).forEach(function (n) { names[n] = true; }); });
      var keys = Object.keys(names).sort();
      var colours = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#d53f8c"];
      var alpha = figures.test.significance_level;
      var looks = path.map(function (look) { return seconds(look.looked_at); });
      draw("p_path", element, {
        // From the test's first traffic to its latest look, however few looks there were.
        scales: {x: {range: window_of(figures.results.window.start || path[0].looked_at,
                                      path[path.length - 1].looked_at)},
                 y: {range: [0, 1]}},
        series: [{}].concat(keys.map(function (n, i) { return {label: n, stroke: colours[i % colours.length]}; }),
                            [{label: "alpha", stroke: "#c53030", dash: [4, 4]}]),
      }, [looks].concat(
          keys.map(function (n) { return path.map(function (look) { return value(look.p_values[n]); }); }),
          [path.map(function () { return alpha; })]));
    },
  };

  document.querySelectorAll("[data-chart]").forEach(function (element) {
    draws[element.getAttribute("data-chart")](element);
  });
})();
