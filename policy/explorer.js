/* The report explorer's page script (policy/explorer.py inlines it into index.html, after
   plotly.js and the runs' JSON). Plain ES2017, no network, no other library.

   Filter syntax (the box, the menus and the address `#filter=...` all write it): terms separated
   by spaces, all of which a run must pass.
     key=a,b   the column equals a or b (its raw value or its cell; `none`: no value)
     key!=a    the column is not a
     key~text  the column's cell contains text
     key>x key>=x key<x key<=x   numeric comparisons (runs without a value fail them)
     word      run, target, backbone or prompt contains word; -word: none of them does
   Keys: the column keys (run target backbone prompt pooling layer z data k seed probe success
   ci norm norm_ci group), or latent / data_size / probe_r2 / normalised. */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("data").textContent);
  const COLS = D.columns;
  const KEYS = COLS.map((c) => c.key);
  const AXES = COLS.filter((c) => c.kind === "axis");
  const ALIAS = { latent: "z", latent_dim: "z", data_size: "data", probe_r2: "probe", normalised: "norm" };
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#c7c7c7", "#dbdb8d", "#9edae5"];
  const BASE_STYLE = { "bc-labelled": ["#555", "dash"], "bc-all": ["#2ca02c", "dash"], control: ["#d62728", "dot"] };
  const T975 = [[1, 12.706], [2, 4.303], [3, 3.182], [4, 2.776], [5, 2.571], [6, 2.447], [7, 2.365], [8, 2.306],
    [9, 2.262], [10, 2.228], [12, 2.179], [15, 2.131], [20, 2.086], [30, 2.042], [60, 2.0], [120, 1.98], [1000, 1.962]];
  const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: "hover" };
  const SMALL_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
  const state = { filter: "", sort: null, desc: false, shown: D.runs.slice() };

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }

  // -- numbers ---------------------------------------------------------------------------------
  function t975(df) {
    let t = NaN;
    for (const [d, v] of T975) if (d <= df) t = v;
    return t;
  }

  function meanInterval(values) {
    const n = values.length;
    const mean = values.reduce((a, b) => a + b, 0) / n;
    if (n < 2) return [mean, mean, mean];
    const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
    const half = (t975(n - 1) * sd) / Math.sqrt(n);
    return [mean, mean - half, mean + half];
  }

  function sortKey(key, v) {
    if (v === null || v === undefined) return null;
    if (key === "data") return /^[0-9.]+$/.test(String(v)) ? Number(v) : Infinity; // "all" after every number
    return v;
  }

  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function distinct(runs, key) {
    const seen = new Map();
    for (const r of runs) if (!seen.has(String(r.v[key]))) seen.set(String(r.v[key]), r);
    return Array.from(seen.values())
      .sort((a, b) => compare(sortKey(key, a.v[key]) ?? "", sortKey(key, b.v[key]) ?? ""))
      .map((r) => [String(r.v[key]), key === "k" ? String(r.v.k) : r.cells[key]]);
  }

  // -- the filter ------------------------------------------------------------------------------
  function parseTerm(term) {
    const m = /^([A-Za-z_]+)(<=|>=|!=|=|<|>|~)(.*)$/.exec(term);
    if (!m) {
      const neg = term.startsWith("-") && term.length > 1;
      const word = (neg ? term.slice(1) : term).toLowerCase();
      const hit = (r) => ["run", "target", "backbone", "prompt"].some((k) => r.cells[k].toLowerCase().includes(word));
      return { test: neg ? (r) => !hit(r) : hit };
    }
    const key = ALIAS[m[1].toLowerCase()] || m[1].toLowerCase();
    if (!KEYS.includes(key)) return { error: `unknown column "${m[1]}" (columns: ${KEYS.join(" ")})` };
    const op = m[2];
    const arg = m[3].toLowerCase();
    if ([">", ">=", "<", "<="].includes(op)) {
      const x = Number(arg);
      if (arg === "" || Number.isNaN(x)) return { error: `"${term}": ${op} needs a number` };
      const ok = { ">": (v) => v > x, ">=": (v) => v >= x, "<": (v) => v < x, "<=": (v) => v <= x }[op];
      return { test: (r) => { const v = sortKey(key, r.v[key]); return typeof v === "number" && ok(v); } };
    }
    if (op === "~") return { test: (r) => r.cells[key].toLowerCase().includes(arg) };
    const wanted = arg.split(",");
    const eq = (r) => wanted.some((w) => (w === "none" ? r.v[key] === null
      : String(r.v[key]).toLowerCase() === w || r.cells[key].toLowerCase() === w));
    return { test: op === "=" ? eq : (r) => !eq(r), key, values: wanted };
  }

  function parseFilter(text) {
    const terms = text.split(/\s+/).filter(Boolean).map(parseTerm);
    return { tests: terms.filter((t) => t.test).map((t) => t.test), errors: terms.filter((t) => t.error).map((t) => t.error), terms };
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    state.filter = params.get("filter") || "";
    const sort = (params.get("sort") || "").split(":");
    state.sort = KEYS.includes(sort[0]) ? sort[0] : null;
    state.desc = sort[1] === "desc";
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.filter) params.set("filter", state.filter);
    if (state.sort) params.set("sort", `${state.sort}:${state.desc ? "desc" : "asc"}`);
    const hash = params.toString() ? "#" + params.toString() : "";
    if (hash !== location.hash) {
      try { history.replaceState(null, "", hash || location.pathname); } catch (e) { /* a browser that refuses it on file:// */ }
    }
  }

  // -- the page's skeleton --------------------------------------------------------------------
  function skeleton() {
    const evaluated = D.runs.filter((r) => r.v.success !== null).length;
    document.body.append(
      el("p", { id: "summary", text: `${D.runs.length} run(s), ${evaluated} evaluated. ${D.header}` }),
      el("p", { class: "note", text: "Probe: ridge regression from latent actions to true actions, R² on held-out "
        + "episodes (\"no actions\": the run's store had none). Success: latent policy + action decoder rolled "
        + "out in Distracting MetaWorld, with its 95% Wilson interval." }),
      el("section", { id: "filters" },
        el("input", { id: "filter", type: "search", size: "60", placeholder: "filter: backbone=molmo2 z>=64 success>0.5 -pixels" }),
        el("span", { id: "count" }),
        el("div", { id: "menus" }),
        el("div", { id: "filter-msg", class: "error" }),
        el("details", {}, el("summary", { text: "filter syntax" }), el("pre", { text: FILTER_HELP }))),
      el("h2", { text: "Runs" }),
      el("div", { class: "table-wrap" }, el("table", { id: "runs" }, el("thead"), el("tbody"))),
      el("h2", { text: "Baselines (same labelled budget, same episode store and eval settings)" }),
      el("div", { id: "baselines" }),
      el("h2", { text: "Probe R² against success" }),
      el("div", { id: "scatter", class: "chart" }), el("p", { id: "scatter-note", class: "note" }),
      el("h2", { text: "Success by each axis" }),
      el("p", { class: "note", text: "Box: the shown runs' success. Diamond: their mean with a 95% t interval across "
        + "runs (a single run: its own 95% interval). Lines: the baselines of the shown runs' eval groups." }),
      el("div", { id: "by-axis", class: "grid" }), el("p", { id: "constant", class: "note" }),
      el("h2", { text: "Per task" }),
      el("div", { class: "controls" }, "rows: ", el("select", { id: "hm-rows" }), " value: ",
        el("select", { id: "hm-value" }, el("option", { value: "success", text: "success" }),
          el("option", { value: "probe", text: "probe R²" }))),
      el("div", { id: "heatmap", class: "chart" }));
  }

  const FILTER_HELP = [
    "Terms separated by spaces; a run must pass every one.",
    "  key=a,b      equals a or b (none: no value)      key!=a   is not a",
    "  key~text     the cell contains text",
    "  key>x  key>=x  key<x  key<=x   numeric (runs without a value fail)",
    "  word         run, target, backbone or prompt contains word; -word: none does",
    "Keys: " + KEYS.join(" ") + "  (also latent, data_size, probe_r2, normalised)",
    "The address keeps the filter: index.html#filter=backbone=molmo2%20z%3E=64",
  ].join("\n");

  function buildTable() {
    const head = el("tr");
    for (const c of COLS) {
      const th = el("th", { "data-key": c.key, title: `sort by ${c.label}` }, c.label);
      th.addEventListener("click", () => {
        state.desc = state.sort === c.key ? !state.desc : false;
        state.sort = c.key;
        apply();
      });
      head.append(th);
    }
    document.querySelector("#runs thead").append(head);
    for (const r of D.runs) {
      r.tr = el("tr");
      for (const c of COLS) {
        const missing = r.v[c.key] === null && ["probe", "success"].includes(c.key);
        r.tr.append(el("td", missing ? { class: "na" } : {}, r.cells[c.key]));
      }
    }
  }

  function buildMenus() {
    const menus = document.getElementById("menus");
    for (const c of AXES) {
      const values = distinct(D.runs, c.key);
      if (values.length < 2) continue;
      const select = el("select", { "data-key": c.key, title: c.label }, el("option", { value: "", text: `${c.label}: all` }));
      for (const [raw, text] of values) select.append(el("option", { value: raw, text: `${c.label}: ${text}` }));
      select.addEventListener("change", () => setTerm(c.key, select.value));
      menus.append(select);
    }
    const rows = document.getElementById("hm-rows");
    rows.append(el("option", { value: "run", text: "each run" }));
    for (const c of AXES) rows.append(el("option", { value: c.key, text: `mean by ${c.label}` }));
    rows.value = D.runs.length > 60 ? "target" : "run";
    for (const id of ["hm-rows", "hm-value"]) document.getElementById(id).addEventListener("change", drawHeatmap);
  }

  function setTerm(key, value) {
    const kept = state.filter.split(/\s+/).filter((t) => t && !t.toLowerCase().startsWith(key + "="));
    if (value !== "") kept.push(`${key}=${value.includes(" ") ? value.replace(/ /g, "") : value}`);
    state.filter = kept.join(" ");
    document.getElementById("filter").value = state.filter;
    apply();
  }

  // -- applying the filter and the sort ---------------------------------------------------------
  function apply() {
    const parsed = parseFilter(state.filter);
    document.getElementById("filter-msg").textContent = parsed.errors.join("; ");
    let shown = D.runs.filter((r) => parsed.tests.every((t) => t(r)));
    if (state.sort) {
      const key = state.sort;
      const sign = state.desc ? -1 : 1;
      const val = (r) => (key === "ci" || key === "norm_ci" ? r.v[key] : sortKey(key, r.v[key]));
      shown = shown.slice().sort((a, b) => {
        const x = val(a), y = val(b);
        if (x === null || y === null) return (x === null) - (y === null); // no value: last either way
        return sign * compare(x, y);
      });
    }
    state.shown = shown;
    document.querySelector("#runs tbody").replaceChildren(...shown.map((r) => r.tr));
    for (const th of document.querySelectorAll("#runs th")) {
      th.classList.toggle("sorted", th.dataset.key === state.sort);
      th.dataset.dir = th.dataset.key === state.sort ? (state.desc ? "▼" : "▲") : "";
    }
    const evaluated = shown.filter((r) => r.v.success !== null).length;
    document.getElementById("count").textContent = `${shown.length} of ${D.runs.length} runs shown (${evaluated} evaluated)`;
    syncMenus(parsed);
    writeHash();
    drawCharts();
  }

  function syncMenus(parsed) {
    for (const select of document.querySelectorAll("#menus select")) {
      const term = parsed.terms.filter((t) => t.key === select.dataset.key && t.values && t.values.length === 1);
      const want = term.length === 1 ? term[0].values[0] : "";
      const match = Array.from(select.options).find((o) => o.value.toLowerCase() === want);
      select.value = match ? match.value : "";
    }
  }

  let timer = null;
  function applySoon() {
    clearTimeout(timer);
    timer = setTimeout(apply, 150);
  }

  // -- charts ------------------------------------------------------------------------------------
  function shownGroups() {
    const groups = new Set(state.shown.map((r) => r.v.group));
    return D.baselines.filter((b) => groups.has(b.group) || D.baselines.length === 1);
  }

  function baselineLines() {
    const shapes = [], annotations = [];
    const several = D.baselines.length > 1;
    for (const g of shownGroups()) {
      for (const m of g.methods) {
        const [colour, dash] = BASE_STYLE[m.method] || ["#555", "dash"];
        const left = m.method === "bc-labelled"; // its label on the left: it often sits near the control's
        shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: m.success, y1: m.success, line: { color: colour, dash, width: 1.5 } });
        annotations.push({ xref: "paper", x: left ? 0 : 1, xanchor: left ? "left" : "right", y: m.success, yanchor: "bottom",
          text: m.label + (several ? ` [${g.group}]` : ""), showarrow: false, font: { size: 9, color: colour } });
      }
    }
    return { shapes, annotations };
  }

  function drawScatter() {
    const pts = state.shown.filter((r) => r.v.probe !== null && r.v.success !== null);
    const bars = pts.length <= 200; // past 200 points the intervals hide the points (the table and hover keep them)
    const targets = Array.from(new Set(pts.map((r) => r.v.target))).sort(compare);
    const traces = targets.map((t, i) => {
      const mine = pts.filter((r) => r.v.target === t);
      return {
        type: "scatter", mode: "markers", name: t,
        x: mine.map((r) => r.v.probe), y: mine.map((r) => r.v.success), text: mine.map((r) => r.v.run),
        error_y: { type: "data", symmetric: false, array: mine.map((r) => r.hi - r.v.success), visible: bars,
          arrayminus: mine.map((r) => r.v.success - r.v.ci), thickness: 0.7, width: 0, color: "rgba(0,0,0,0.25)" },
        marker: { color: COLOURS[i % COLOURS.length], size: bars ? 6 : 5, opacity: 0.75 },
        customdata: mine.map((r) => r.cells.ci),
        hovertemplate: "%{text}<br>probe R² %{x:.3f}<br>success %{y:.2f} (95% CI %{customdata})<extra></extra>",
      };
    });
    const lines = baselineLines();
    Plotly.react("scatter", traces, {
      height: 460, margin: { t: 10, r: 10, b: 50, l: 60 }, hovermode: "closest",
      xaxis: { title: { text: "linear probe R² (held-out episodes)" } },
      yaxis: { title: { text: "success rate (95% CI)" }, range: [-0.02, 1.02] },
      legend: { font: { size: 10 } }, shapes: lines.shapes, annotations: lines.annotations,
    }, PLOT_CONFIG);
    const noProbe = state.shown.filter((r) => r.v.probe === null && r.v.success !== null).length;
    const notEval = state.shown.filter((r) => r.v.success === null).length;
    document.getElementById("scatter-note").textContent = `${pts.length} run(s) plotted${bars ? "" : " (past 200, "
      + "without their intervals: hover a point)"}; not shown: ${noProbe} evaluated without a probe ("no actions" or not `
      + `trained), ${notEval} not evaluated. Lines: the baselines' success.`;
  }

  function drawAxis(div, c, runs) {
    const values = distinct(runs, c.key);
    const xs = runs.map((r) => (c.key === "k" ? String(r.v.k) : r.cells[c.key]));
    const cats = values.map((v) => v[1]);
    const stats = values.map(([raw]) => {
      const mine = runs.filter((r) => String(r.v[c.key]) === raw);
      if (mine.length === 1) return [mine[0].v.success, mine[0].v.ci, mine[0].hi];
      return meanInterval(mine.map((r) => r.v.success));
    });
    const box = {
      type: "box", x: xs, y: runs.map((r) => r.v.success), text: runs.map((r) => r.v.run), name: "runs",
      boxpoints: runs.length <= 300 ? "all" : false, jitter: 0.5, pointpos: 0, marker: { size: 3, opacity: 0.5 },
      line: { width: 1 }, fillcolor: "rgba(31,119,180,0.08)", hovertemplate: "%{text}<br>success %{y:.2f}<extra></extra>",
    };
    const mean = {
      type: "scatter", mode: "markers", x: cats, y: stats.map((s) => s[0]), name: "mean (95% CI)",
      error_y: { type: "data", symmetric: false, array: stats.map((s) => s[2] - s[0]), arrayminus: stats.map((s) => s[0] - s[1]), color: "#d62728" },
      marker: { color: "#d62728", size: 9, symbol: "diamond" },
      hovertemplate: "mean %{y:.2f}<extra></extra>",
    };
    const lines = baselineLines();
    Plotly.react(div, [box, mean], {
      height: 300, margin: { t: 30, r: 10, b: 70, l: 45 }, showlegend: false,
      title: { text: `by ${c.label}`, font: { size: 13 } },
      xaxis: { type: "category", categoryorder: "array", categoryarray: cats, tickfont: { size: 9 } },
      yaxis: { range: [-0.02, 1.02], title: { text: "success" } }, shapes: lines.shapes,
    }, SMALL_CONFIG);
  }

  function drawByAxis() {
    const runs = state.shown.filter((r) => r.v.success !== null);
    const grid = document.getElementById("by-axis");
    const constant = [];
    for (const c of AXES) {
      const id = `axis-${c.key}`;
      let div = document.getElementById(id);
      const values = distinct(runs, c.key);
      if (values.length < 2) {
        if (div) { Plotly.purge(div); div.remove(); }
        if (values.length === 1) constant.push(`${c.label} ${values[0][1]}`);
        continue;
      }
      if (!div) {
        div = el("div", { id, class: "small-chart" });
        const after = AXES.slice(AXES.indexOf(c) + 1).map((a) => document.getElementById(`axis-${a.key}`)).find(Boolean);
        grid.insertBefore(div, after || null);
      }
      drawAxis(div, c, runs);
    }
    document.getElementById("constant").textContent = (runs.length ? "" : "No shown run is evaluated. ")
      + (constant.length ? `The same for every shown evaluated run: ${constant.join(", ")}.` : "");
  }

  function heatRows(key, value) {
    const runs = value === "success" ? state.shown.filter((r) => r.task_success) : state.shown;
    const of = (r) => (value === "success" ? r.task_success : r.task_probe);
    if (key === "run") return runs.map((r) => [r.v.run, of(r)]);
    const label = AXES.find((c) => c.key === key).label;
    return distinct(runs, key).map(([raw, text]) => {
      const mine = runs.filter((r) => String(r.v[key]) === raw);
      const means = D.tasks.map((_, j) => {
        const vs = mine.map((r) => of(r)[j]).filter((v) => v !== null);
        return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : null;
      });
      return [`${label} ${text} (${mine.length})`, means];
    });
  }

  function drawHeatmap() {
    const key = document.getElementById("hm-rows").value;
    const value = document.getElementById("hm-value").value;
    const rows = heatRows(key, value);
    if (value === "success") {
      const several = D.baselines.length > 1;
      for (const g of shownGroups()) {
        for (const m of g.methods) rows.push([m.label + (several ? ` [${g.group}]` : ""), m.per_task]);
      }
    }
    const n = rows.length;
    Plotly.react("heatmap", [{
      type: "heatmap", x: D.tasks, y: rows.map((r) => r[0]), z: rows.map((r) => r[1]),
      zmin: value === "success" ? 0 : Math.min(0, ...rows.flatMap((r) => r[1]).filter((v) => v !== null)), zmax: 1,
      colorscale: "Viridis", colorbar: { title: { text: value === "success" ? "success" : "probe R²" } },
      texttemplate: n <= 40 ? "%{z:.2f}" : "", hovertemplate: "%{y}<br>%{x}: %{z:.2f}<extra></extra>", xgap: 1, ygap: n <= 80 ? 1 : 0,
    }], {
      height: Math.max(260, Math.min(1000, 120 + 18 * n)), margin: { t: 10, r: 10, b: 90, l: n <= 80 ? 300 : 40 },
      yaxis: { autorange: "reversed", type: "category", showticklabels: n <= 80, tickfont: { size: 9 } },
      xaxis: { tickangle: -30 },
    }, PLOT_CONFIG);
  }

  function drawBaselines() {
    const div = document.getElementById("baselines");
    if (!D.baselines.length) {
      div.replaceChildren(el("p", { class: "note", text: "No evaluated run has baselines." }));
      return;
    }
    const table = el("table", {}, el("tr", {}, ...["eval group", "runs", "method", "success", "95% CI", "normalised"].map((h) => el("th", { text: h }))));
    for (const g of D.baselines) {
      for (const m of g.methods) {
        const cells = [g.group, String(g.runs), m.label, m.success.toFixed(2), `${m.lo.toFixed(2)}-${m.hi.toFixed(2)}`,
          m.norm === null ? "-" : m.norm.toFixed(2)];
        table.append(el("tr", {}, ...cells.map((c) => el("td", { text: c }))));
      }
    }
    div.replaceChildren(table);
  }

  const timings = {};
  function timed(name, fn) {
    const t0 = performance.now();
    fn();
    timings[name] = Math.round((timings[name] || 0) + performance.now() - t0);
  }

  function drawCharts() {
    timed("by_axis", drawByAxis);
    timed("scatter", drawScatter);
    timed("heatmap", drawHeatmap);
  }

  // -- start --------------------------------------------------------------------------------------
  timings.script_start = Math.round(performance.now());
  timed("table", () => { skeleton(); buildTable(); buildMenus(); drawBaselines(); });
  readHash();
  const box = document.getElementById("filter");
  box.value = state.filter;
  box.addEventListener("input", () => { state.filter = box.value; applySoon(); });
  window.addEventListener("hashchange", () => { readHash(); box.value = state.filter; apply(); });
  timed("apply", apply);
  // when the page was ready (ms since navigation began) and where the time went: bench/report.py reads them
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.timings = JSON.stringify(timings);
})();
