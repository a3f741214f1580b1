// The interactive part of report.html (waferscale/report/html.py): the mesh drawn to scale, its
// tooltips, the selected kernel's routes, the link-load layer and the sortable kernel table.
// Plain DOM and SVG, no library; everything comes from the JSON island #data.
// Data from the JSON never becomes markup: it goes into text nodes (`node` below) and into attributes
// by setAttribute, styles only take numbers and colours made here, classes only known names. There
// is no innerHTML, so a doctored placement.json cannot run a script (tests/test_report_hostile.py).
"use strict";
(function () {
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("data").textContent);
  const K = D.kernels, R = D.mesh.rows, C = D.mesh.cols;
  const SVG = "http://www.w3.org/2000/svg";  // the SVG namespace name; nothing is fetched
  const $ = (id) => document.getElementById(id);
  const S = { colour: "util", group: D.shown_group, sel: -1, heat: false, key: "cycles", desc: true,
              filter: "", limit: D.top_n, mark: null };

  // ---- formatting ---------------------------------------------------------------------------
  function node(tag, props, ...kids) {  // an HTML element: props are attributes ("style": an object), kids text or nodes
    const e = document.createElement(tag);
    for (const [a, v] of Object.entries(props || {})) {
      if (v === undefined) continue;
      if (a === "style") Object.assign(e.style, v); else e.setAttribute(a, v);
    }
    for (const c of kids.flat(Infinity)) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function fill(parent, nodes) {  // parent's children become nodes (a loop: thousands of rows are too many arguments)
    const f = document.createDocumentFragment();
    for (const n of nodes) f.appendChild(n);
    parent.replaceChildren(f);
  }
  const int = (n) => Math.round(n).toLocaleString("en-US");
  function bytes(n) {
    for (const [s, u] of [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]]) if (n >= s) return (n / s).toFixed(1) + " " + u;
    return (n > 0 && n < 10 && !Number.isInteger(n) ? n.toPrecision(2) : Math.round(n)) + " B";  // 0.3 B per link
  }
  const pct = (x) => (100 * x).toFixed(x < 0.001 ? 3 : 1) + "%";
  const us = (cycles) => (1e6 * cycles / D.clock_hz).toFixed(1) + " us";
  const rectText = (k) => `rows ${k.rect[0]}..${k.rect[0] + k.rect[2] - 1}, cols ${k.rect[1]}..${k.rect[1] + k.rect[3] - 1}`
    + ` (${k.rect[2]} x ${k.rect[3]})`;
  for (const k of K) { k.layerName = D.layers[k.layer]; k.rectText = `${k.rect[0]},${k.rect[1]} ${k.rect[2]}x${k.rect[3]}`; }

  // ---- colours ------------------------------------------------------------------------------
  const RAMPS = {  // matplotlib's viridis, magma and inferno at ten stops
    viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
    magma: ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d", "#fd9668", "#feca8d", "#fcfdbf"],
    inferno: ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4"],
  };
  const rgbOf = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
  const RGB = Object.fromEntries(Object.entries(RAMPS).map(([k, v]) => [k, v.map(rgbOf)]));
  function ramp(name, x) {
    const st = RGB[name], t = Math.min(Math.max(isFinite(x) ? x : 0, 0), 1) * (st.length - 1);
    const i = Math.min(Math.floor(t), st.length - 2), f = t - i;
    return st[i].map((a, j) => Math.round(a + f * (st[i + 1][j] - a)));
  }
  const css = (rgb) => `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
  const BOUND = { compute: "#4e79a7", sram: "#59a14f", fabric: "#f28e2b", stream: "#e15759" };
  const known = (b) => Object.prototype.hasOwnProperty.call(BOUND, b);  // not "constructor", "__proto__"
  const boundColour = (b) => (known(b) ? BOUND[b] : "#999");
  const boundSpan = (b) => node("span", { class: known(b) ? "bound-" + b : undefined }, b);
  const layerColour = (i) => `hsl(${Math.round(300 * i / Math.max(D.layers.length - 1, 1))},62%,52%)`;
  const umax = Math.max(...K.map((k) => k.util), 1e-9);
  const COLOUR = {
    util: (k) => css(ramp("viridis", k.util / umax)),
    bound: (k) => boundColour(k.bound),
    sram: (k) => css(ramp("magma", k.sram_fraction)),
    layer: (k) => layerColour(k.layer),
  };
  const ramp_ = (stops) => node("span", { class: "ramp", style: { background: `linear-gradient(to right,${stops.join(",")})` } });
  const grad = (name) => ramp_(RAMPS[name]);
  function legend() {
    let parts;
    if (S.heat) parts = ["link load ", grad("inferno"), " ", node("span", {}, `${bytes(heatRange[0])} .. ${bytes(heatRange[1])} per sample per link (log)`)];
    else if (S.colour === "util") parts = ["FLOP utilization ", grad("viridis"), " ", node("span", {}, `0 .. ${pct(umax)}`)];
    else if (S.colour === "sram") parts = ["SRAM per core ", grad("magma"), " ", node("span", {}, `0 .. 100% of ${bytes(D.mesh.sram_bytes)}`)];
    else if (S.colour === "bound") {
      const seen = [...new Set(K.map((k) => String(k.bound)))].sort();
      parts = seen.map((b) => node("span", {}, node("span", { class: "sw", style: { background: boundColour(b) } }), b));
    } else {
      const n = D.layers.length;
      parts = ["layer ", ramp_([0, .25, .5, .75, 1].map((f) => layerColour(f * (n - 1)))),
               node("span", {}, `${D.layers[0]} .. ${D.layers[n - 1]} (${n})`)];
    }
    $("legend").replaceChildren(...parts);
  }

  // ---- the mesh -----------------------------------------------------------------------------
  const el = (tag, attrs, parent) => {
    const e = document.createElementNS(SVG, tag);
    for (const a in attrs) e.setAttribute(a, attrs[a]);
    if (parent) parent.appendChild(e);
    return e;
  };
  const height = Math.min(720, Math.max(360, R)), width = Math.round(height * C / R);
  const scale = Math.min(1, 560 / width);
  const svg = el("svg", { id: "mesh", viewBox: `0 0 ${C} ${R}`, width: Math.round(width * scale),
                          height: Math.round(height * scale), preserveAspectRatio: "none" });
  $("mesh-box").appendChild(svg);
  $("mesh-panel").style.width = Math.max(Math.round(width * scale) + 2, 360) + "px";
  const heatImg = el("image", { id: "heat-img", x: 0, y: 0, width: C, height: R, preserveAspectRatio: "none",
                                visibility: "hidden" }, svg);
  const gK = el("g", { id: "kernels" }, svg);  // above the heat layer: in its mode only their outlines show
  const gRoutes = el("g", { id: "routes" }, svg), gMarks = el("g", { id: "marks" }, svg);
  const defs = el("defs", {}, svg);
  for (const [id, colour] of [["in", "var(--in)"], ["out", "var(--out)"]]) {
    const m = el("marker", { id: "arrow-" + id, viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 5,
                             markerHeight: 5, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: colour }, m);
  }
  const rects = K.map((k) => el("rect", { class: "k", "data-k": k.id, x: k.rect[1], y: k.rect[0], width: k.rect[3],
                                         height: k.rect[2] }, gK));

  function paint() {
    const f = COLOUR[S.colour];
    K.forEach((k, i) => rects[i].setAttribute("fill", f(k)));
    legend();
  }
  const inGroup = (k) => S.group < 0 || k.group === S.group;
  function showGroup(g) {
    S.group = g;
    K.forEach((k, i) => rects[i].setAttribute("visibility", inGroup(k) ? "visible" : "hidden"));
    if (D.groups.length) {
      $("group").value = String(g);
      $("mesh-what").textContent = `: layer ${D.groups[g].name}, ${D.groups[g].kernels.length} kernels, one of ${D.groups.length}`
        + " groups (in weight streaming each has the whole wafer in turn)";
      document.querySelectorAll("#layers tr.layer").forEach((tr) => tr.classList.toggle("shown", +tr.dataset.group === g));
    } else {
      $("mesh-what").textContent = `: ${D.target}, ${R} x ${C} cores, ${K.length} kernels`;
    }
    if (S.heat) drawHeat();
    drawRoutes();
  }

  // ---- routes: XY, along the source's row to the destination's column, then along it (route.py)
  const visibleFlows = () => D.flows.filter((f) => S.group < 0 || K[f[1]].group === S.group);
  function drawRoutes() {
    gRoutes.replaceChildren();
    if (S.sel < 0 || !inGroup(K[S.sel])) return;
    for (const f of visibleFlows()) {
      const [src, dst, r0, c0, r1, c1, lanes] = f;
      if (src !== S.sel && dst !== S.sel) continue;
      const dir = dst === S.sel ? "in" : "out";
      const pts = `${c0 + 0.5},${r0 + 0.5} ${c1 + 0.5},${r0 + 0.5} ${c1 + 0.5},${r1 + 0.5}`;
      el("polyline", { class: "band", points: pts, stroke: `var(--${dir})`, "stroke-width": lanes }, gRoutes);
      el("polyline", { class: "route " + dir, points: pts, stroke: `var(--${dir})`, "marker-end": `url(#arrow-${dir})` }, gRoutes);
    }
  }

  // ---- link load: per core, the bytes per sample of every bundle crossing it (as mesh.png) ----
  // Each route's two legs are rectangles of cores (a leg's links times its lanes), added with a
  // 2D difference array and summed once, so the cost is the mesh's cores, not the links.
  let heatRange = [1, 1], heatTotal = 0;
  const heatCache = new Map();
  function heatImage(group) {
    const W = C + 1, d = new Float64Array((R + 1) * W);
    const add = (ra, rb, ca, cb, v) => {  // rows ra..rb, cols ca..cb inclusive
      if (rb < ra || cb < ca) return;
      d[ra * W + ca] += v; d[ra * W + cb + 1] -= v; d[(rb + 1) * W + ca] -= v; d[(rb + 1) * W + cb + 1] += v;
    };
    const clampLo = (x, lanes, n) => Math.min(Math.max(x - Math.floor(lanes / 2), 0), Math.max(n - lanes, 0));
    for (const f of D.flows) {
      if (group >= 0 && K[f[1]].group !== group) continue;
      const [, , r0, c0, r1, c1, lanes, b] = f, v = b / lanes;
      const lo = clampLo(r0, lanes, R), hi = Math.min(lo + lanes, R) - 1;
      if (c1 > c0) { if (c0 < 0) add(lo, hi, 0, 0, v); add(lo, hi, Math.max(c0, 0), c1 - 1, v); }
      else if (c1 < c0) add(lo, hi, c1 + 1, c0, v);
      const clo = clampLo(c1, lanes, C), chi = Math.min(clo + lanes, C) - 1;
      if (r1 > r0) add(r0, r1 - 1, clo, chi, v);
      else if (r1 < r0) add(r1 + 1, r0, clo, chi, v);
    }
    for (let r = 0; r <= R; r++) for (let c = 0; c <= C; c++) {
      const i = r * W + c;
      d[i] += (r ? d[i - W] : 0) + (c ? d[i - 1] : 0) - (r && c ? d[i - W - 1] : 0);
    }
    const step = Math.ceil(Math.max(R, C) / 600), h = Math.ceil(R / step), w = Math.ceil(C / step);
    const pooled = new Float64Array(h * w);
    let lo = Infinity, hi = 0, total = 0;
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
      const v = d[r * W + c];
      if (v > 1e-9) {
        const p = Math.floor(r / step) * w + Math.floor(c / step);
        if (v > pooled[p]) pooled[p] = v;
        lo = Math.min(lo, v); hi = Math.max(hi, v); total += v;
      }
    }
    if (!(hi > 0)) { lo = 1; hi = 1; }
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h), span = Math.log(hi / lo) || 1;
    for (let p = 0; p < h * w; p++) {
      if (!(pooled[p] > 0)) continue;
      const rgb = ramp("inferno", Math.log(pooled[p] / lo) / span);
      img.data.set([rgb[0], rgb[1], rgb[2], 235], 4 * p);
    }
    ctx.putImageData(img, 0, 0);
    return { url: canvas.toDataURL("image/png"), range: [lo, hi], total };
  }
  function drawHeat() {
    if (!heatCache.has(S.group)) heatCache.set(S.group, heatImage(S.group));
    const h = heatCache.get(S.group);
    heatRange = h.range; heatTotal = h.total;
    heatImg.setAttribute("href", h.url);
  }
  function setHeat(on) {
    S.heat = on;
    $("heat").checked = on;
    if (on) drawHeat();
    heatImg.setAttribute("visibility", on ? "visible" : "hidden");
    svg.classList.toggle("heat", on);
    legend();
  }
  function markLink(name) {
    gMarks.replaceChildren();
    const m = /\((-?\d+),(-?\d+)\)->([NSEW])/.exec(name || "");
    if (!m) return;
    const r = +m[1] + 0.5, c = Math.max(+m[2], 0) + 0.5, step = { N: [-1, 0], S: [1, 0], E: [0, 1], W: [0, -1] }[m[3]];
    const rad = Math.max(R, C) / 60;
    el("circle", { class: "mark", cx: c, cy: r, r: rad }, gMarks);
    el("line", { class: "mark", x1: c, y1: r, x2: c + 2 * rad * step[1], y2: r + 2 * rad * step[0] }, gMarks);
    S.mark = name;
  }

  // ---- tooltip and details ------------------------------------------------------------------
  function facts(k) {  // the kernel's name and facts, as nodes
    const sram = Object.entries(k.sram).map(([b, n]) => `${b.replace(/_/g, " ")} ${bytes(n)}`).join(", ");
    const rows = [
      ["computes", `${k.computes} (${k.op})`], ["module", k.loc || "(none)"],
      ["layer", k.layerName], ["rectangle", rectText(k)], ["cores", int(k.cores)],
      ["SRAM/core", `${bytes(k.sram_total)} (${pct(k.sram_fraction)} of ${bytes(D.mesh.sram_bytes)}): ${sram}`],
      ["cycles", `${int(k.cycles)} busy (${us(k.cycles)}), ${int(k.stage)} per sample`],
      ["utilization", pct(k.util)], ["bound", boundSpan(k.bound)],
      ["split", k.decomposition],
    ];
    if (k.sparse) rows.push(["sparse", `density ${k.sparse.density.toFixed(3)}, ${bytes(k.sparse.bytes)} of weights `
      + `with indices (${bytes(k.sparse.dense_bytes)} dense), ${k.sparse.speedup.toFixed(2)}x dense's speed`]);
    return [node("div", { class: "kname" }, k.name),
            node("div", { class: "kv" }, rows.map(([a, b]) => [node("span", { class: "k" }, a), b instanceof Node ? b : node("span", {}, b)]))];
  }
  const tip = $("tooltip");
  function hover(kid, ev) {
    rects.forEach((r) => r.classList.remove("hover"));
    document.querySelectorAll("#table tr.hover").forEach((tr) => tr.classList.remove("hover"));
    if (kid < 0) { tip.hidden = true; return; }
    rects[kid].classList.add("hover");
    if (!ev) return;
    tip.replaceChildren(...facts(K[kid]));
    tip.hidden = false;
    const x = ev.clientX + 14, y = ev.clientY + 14, tw = tip.offsetWidth, th = tip.offsetHeight;
    tip.style.left = Math.min(x, window.innerWidth - tw - 8) + "px";
    tip.style.top = (y + th > window.innerHeight - 8 ? Math.max(8, ev.clientY - th - 10) : y) + "px";
  }
  gK.addEventListener("mousemove", (ev) => { const k = ev.target.dataset && ev.target.dataset.k; hover(k === undefined ? -1 : +k, ev); });
  gK.addEventListener("mouseleave", () => hover(-1));
  gK.addEventListener("click", (ev) => { const k = ev.target.dataset && ev.target.dataset.k; if (k !== undefined) select(+k, "mesh"); });

  function details(k) {
    const name = (id) => (id < 0 ? "io (graph input)" : K[id].name);
    const mine = visibleFlows().filter((f) => f[0] === k.id || f[1] === k.id);
    const hidden = D.flows.length && S.group >= 0 ? " (this layer's)" : "";
    const items = mine.map((f) => {
      const into = f[1] === k.id, other = into ? f[0] : f[1];
      return node("li", { "data-k": other }, node("span", { class: "key " + (into ? "in" : "out") }),
               `${into ? "from" : "to"} ${name(other)}: ${bytes(f[7])}/sample, ${f[8]} hops, ${f[6]} lanes`);
    });
    $("details").replaceChildren(...facts(k), node("div", { class: "hint" }, `flows${hidden}: ${mine.length}`),
                                 node("ul", { class: "flows" }, items));
  }
  $("details").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-k]");
    if (li && +li.dataset.k >= 0) select(+li.dataset.k, "details");
  });

  // ---- the kernel table ---------------------------------------------------------------------
  const COLS = [
    ["id", "id", true, (k) => k.id], ["name", "kernel", false, (k) => k.name],
    ["computes", "computes", false, (k) => k.computes], ["layerName", "layer", false, (k) => k.layerName],
    ["rectText", "rect (row,col rows x cols)", false, (k) => k.rectText], ["cores", "cores", true, (k) => int(k.cores)],
    ["sram_total", "SRAM/core", true, (k) => bytes(k.sram_total)],
    ["cycles", "cycles", true, (k) => [int(k.cycles), node("span", { class: "cyc", style: { width: barPx(k.cycles) } })]],
    ["stage", "cycles/sample", true, (k) => int(k.stage)], ["util", "util", true, (k) => pct(k.util)],
    ["bound", "bound", false, (k) => boundSpan(k.bound)],
  ];
  const cmax = Math.max(...K.map((k) => k.cycles), 1);
  const barPx = (cycles) => { const w = Math.round(40 * cycles / cmax); return (w > 0 ? Math.min(w, 40) : 0) + "px"; };
  const thead = $("table").tHead, tbody = $("table").tBodies[0];
  thead.replaceChildren(node("tr", {}, COLS.map(([key, label, num]) => node("th", { "data-key": key, class: num ? "num" : "" }, label))));
  function rowsShown() {
    const q = S.filter.toLowerCase();
    const col = COLS.find((c) => c[0] === S.key), num = col[2];
    const rows = K.filter((k) => !q || k.name.toLowerCase().includes(q) || (k.loc || "").toLowerCase().includes(q));
    rows.sort((a, b) => {
      const x = a[S.key], y = b[S.key];
      const o = num ? x - y : String(x).localeCompare(String(y));
      return (S.desc ? -o : o) || a.id - b.id;
    });
    return [rows.slice(0, S.limit), rows.length];
  }
  function table() {
    const [rows, n] = rowsShown();
    fill(tbody, rows.map((k) => node("tr", { "data-k": k.id, class: k.id === S.sel ? "sel" : undefined },
      COLS.map(([key, , num, f]) => node("td", { class: num ? "num" : key === "name" ? "name" : "" }, f(k))))));
    thead.querySelectorAll("th").forEach((th) => {
      const on = th.dataset.key === S.key;
      th.classList.toggle("sorted", on);
      th.textContent = COLS.find((c) => c[0] === th.dataset.key)[1] + (on ? (S.desc ? " \u25bc" : " \u25b2") : "");
    });
    $("count").textContent = `${rows.length} of ${n} kernel(s)${n < K.length ? ` matching (${K.length} in all)` : ""}`;
  }
  thead.addEventListener("click", (ev) => {
    const th = ev.target.closest("th");
    if (!th) return;
    const key = th.dataset.key, num = COLS.find((c) => c[0] === key)[2];
    if (S.key === key) S.desc = !S.desc; else { S.key = key; S.desc = num && key !== "id"; }  // biggest first
    table();
  });
  tbody.addEventListener("click", (ev) => { const tr = ev.target.closest("tr[data-k]"); if (tr) select(+tr.dataset.k, "table"); });
  tbody.addEventListener("mouseover", (ev) => { const tr = ev.target.closest("tr[data-k]"); if (tr) hover(+tr.dataset.k); });
  tbody.addEventListener("mouseleave", () => hover(-1));
  $("filter").addEventListener("input", (ev) => { S.filter = ev.target.value; table(); });
  $("limit").addEventListener("change", (ev) => { S.limit = ev.target.value === "all" ? Infinity : +ev.target.value; table(); });

  // ---- selection, both ways -----------------------------------------------------------------
  function select(kid, from) {
    S.sel = kid;
    const k = K[kid];
    if (!inGroup(k)) showGroup(k.group);
    rects.forEach((r, i) => r.classList.toggle("sel", i === kid));
    svg.classList.toggle("has-sel", kid >= 0);
    if (from !== "table") {  // make its row visible: past the row limit or the filter, show them all
      const shown = rowsShown()[0];
      if (!shown.includes(k)) {
        S.limit = Infinity; $("limit").value = "all";
        if (!rowsShown()[0].includes(k)) { S.filter = ""; $("filter").value = ""; }
      }
    }
    table();
    const tr = tbody.querySelector(`tr[data-k="${kid}"]`);
    if (tr && from !== "table") tr.scrollIntoView({ block: "nearest" });
    details(k);
    drawRoutes();
  }

  // ---- controls -----------------------------------------------------------------------------
  $("colour").addEventListener("change", (ev) => { S.colour = ev.target.value; if (S.heat) setHeat(false); paint(); });
  $("heat").addEventListener("change", (ev) => setHeat(ev.target.checked));
  if (D.groups.length) {
    fill($("group"), D.groups.map((g, i) => node("option", { value: String(i) }, g.name)));
    $("group").addEventListener("change", (ev) => showGroup(+ev.target.value));
    document.querySelectorAll("#layers tr.layer").forEach((tr) => tr.addEventListener("click", () => {
      if (+tr.dataset.group >= 0) { showGroup(+tr.dataset.group); $("mesh-panel").scrollIntoView({ block: "nearest" }); }
    }));
  }
  document.querySelectorAll("#busiest tr.link").forEach((tr) => tr.addEventListener("click", () => {
    markLink(tr.dataset.link); if (!S.heat) setHeat(true);
  }));

  // ---- scaling: efficiency vs systems (a training compile) ------------------------------------
  function scalingPlot() {
    const pts = (D.scaling || []).map(([n, e]) => [Number(n), Number(e)])
      .filter(([n, e]) => isFinite(n) && n >= 1 && isFinite(e));
    const box = $("scaling");
    if (!box || !pts.length) return;
    const W = 360, H = 200, L = 44, B = 30, T = 10, Rm = 12;
    const nmax = Math.max(...pts.map((p) => p[0]), 2), lo = Math.min(0.5, ...pts.map((p) => p[1]));
    const x = (n) => L + (W - L - Rm) * Math.log2(n) / Math.log2(nmax);
    const y = (e) => T + (H - T - B) * (1.05 - Math.min(Math.max(e, lo), 1.05)) / (1.05 - lo);
    const svg = el("svg", { id: "scaling-plot", viewBox: `0 0 ${W} ${H}`, width: W, height: H });
    el("line", { x1: L, y1: y(1), x2: W - Rm, y2: y(1), class: "ideal" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
    el("line", { x1: L, y1: H - B, x2: W - Rm, y2: H - B, class: "axis" }, svg);
    const label = (tx, ty, text, anchor) => { el("text", { x: tx, y: ty, "text-anchor": anchor }, svg).textContent = text; };
    for (const e of [lo, (lo + 1) / 2, 1]) label(L - 4, y(e) + 4, pct(e), "end");
    for (const [n] of pts) label(x(n), H - B + 14, String(n), "middle");
    label((L + W) / 2, H - 2, "systems (log scale)", "middle");
    el("polyline", { points: pts.map(([n, e]) => `${x(n).toFixed(1)},${y(e).toFixed(1)}`).join(" "), class: "eff" }, svg);
    for (const [n, e] of pts) {
      const c = el("circle", { cx: x(n).toFixed(1), cy: y(e).toFixed(1), r: 3.5, class: "eff" }, svg);
      el("title", {}, c).textContent = `${n} system(s): ${pct(e)} of linear`;
    }
    box.replaceChildren(svg);
  }

  $("limit").value = String(D.top_n);
  scalingPlot();
  paint();
  showGroup(S.group);
  table();
  window.waferReport = { kernels: K.length, initMs: performance.now() - t0, select, state: S,
                         heat: () => [...heatRange, heatTotal] };  // for the tests: the link-load layer's scale and sum
  document.body.dataset.ready = "1";
})();
