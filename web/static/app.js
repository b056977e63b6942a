/* cctally stats page. Polls the JSON API (same origin, read-only) and draws everything with the DOM and
   plain SVG: no libraries, no inline styles or scripts (the CSP forbids them), no text from transcripts. */
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = Math.max(500, parseInt(document.body.dataset.pollMs, 10) || 3000);
  const HIDDEN_POLL_MS = 20000;
  const RANGE_MIN_MS = 10000;
  const PALETTE = ["#d97757", "#4f7cff", "#2fb58b", "#b26be0", "#e0b43a", "#3fb8d6", "#e05a7a"];
  const OTHER_COLOR = "#8a94a6";
  const MAX_CHART_MODELS = 6;
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  const state = {
    range: "30", sort: "last_ms", order: "desc", sessionLimit: 15, sig: null, recentSig: null, rangeAt: 0, dirty: true,
    stats: null, daily: null, models: null, offsetMs: 0,
    hostsShown: false, processSampling: null, healthAt: 0, colors: new Map(), timer: null, busy: false,
  };

  // ---------------------------------------------------------------- helpers
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === "text") node.textContent = v;
        else if (k === "className") node.className = v;
        else if (k === "dataset") Object.assign(node.dataset, v);
        else node.setAttribute(k, v);
      }
    }
    for (const c of children || []) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function svg(tag, attrs, children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children || []) node.append(c);
    return node;
  }

  function swatch(color) {
    const s = el("span", { className: "swatch" });
    s.style.background = color;          // CSSOM, allowed by the CSP (no inline style attribute)
    return s;
  }

  async function getJSON(url) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 15000);
    try {
      const res = await fetch(url, { signal: ctrl.signal, cache: "no-store", credentials: "same-origin" });
      if (!res.ok) throw new Error(url + " -> " + res.status);
      return await res.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- formatting (en-US, fixed)
  const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const fmtInt = (n) => group(String(Math.round(n)));
  function fmtCost(v) {
    const [i, f] = Number(v).toFixed(2).split(".");
    return "$" + group(i) + "." + f;
  }
  function fmtCostShort(v) {
    if (v >= 1000) return "$" + (v / 1000).toFixed(1) + "K";
    if (v >= 100) return "$" + Math.round(v);
    return fmtCost(v);
  }
  function fmtTokens(n) {
    if (n < 10000) return fmtInt(n);
    if (n < 999950) return (n / 1e3).toFixed(1) + "K";
    if (n < 999950000) return (n / 1e6).toFixed(1) + "M";
    if (n < 999950000000) return (n / 1e9).toFixed(1) + "B";
    return (n / 1e12).toFixed(1) + "T";
  }
  function fmtBytes(b) {
    if (b >= 1 << 30) return (b / (1 << 30)).toFixed(1) + " GB";
    if (b >= 1 << 20) return Math.round(b / (1 << 20)) + " MB";
    return Math.round(b / 1024) + " KB";
  }
  function fmtDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + String(m % 60).padStart(2, "0") + " m";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function fmtLatency(ms) {
    return ms >= 10000 ? (ms / 1000).toFixed(0) + " s" : ms >= 1000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms) + " ms";
  }
  const nowMs = () => Date.now() + state.offsetMs;
  function fmtAgo(ms) {
    const s = (nowMs() - ms) / 1000;
    if (s < 45) return "just now";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 36 * 3600) return Math.round(s / 3600) + " h ago";
    if (s < 60 * 86400) return Math.round(s / 86400) + " d ago";
    return fmtDate(new Date(ms).toISOString().slice(0, 10), true);
  }
  function fmtDate(iso, withYear) {           // "2026-09-03" -> "Sep 3" (", 2026")
    const [y, m, d] = iso.split("-").map(Number);
    return MONTHS[m - 1] + " " + d + (withYear ? ", " + y : "");
  }
  function timeFmt(seconds) {
    const tz = state.stats && state.stats.tz;
    const opts = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (seconds) opts.second = "2-digit";
    try {
      return new Intl.DateTimeFormat("en-GB", Object.assign({ timeZone: tz || undefined }, opts));
    } catch (e) {
      return new Intl.DateTimeFormat("en-GB", opts);
    }
  }
  function addDays(iso, n) {
    const t = Date.UTC(+iso.slice(0, 4), +iso.slice(5, 7) - 1, +iso.slice(8, 10)) + n * 86400000;
    return new Date(t).toISOString().slice(0, 10);
  }
  function shortModel(name) {
    return name.replace(/^claude-/, "").replace(/-\d{8}$/, "");
  }
  function shortProject(path) {
    const parts = String(path || "").split(/[\\/]/).filter(Boolean);
    return parts.length ? parts[parts.length - 1] : (path || "—");
  }
  function colorOf(model) {
    if (!state.colors.has(model)) state.colors.set(model, PALETTE[state.colors.size % PALETTE.length]);
    return state.colors.get(model);
  }

  // ---------------------------------------------------------------- cards, note, status
  function setCard(id, value, text, sub) {
    const card = document.getElementById(id);
    const v = $(".value", card);
    v.dataset.value = String(value);
    v.textContent = text;
    const s = $(".sub", card);
    s.replaceChildren(...sub);
  }

  function subParts(pairs) {
    const out = [];
    pairs.forEach(([label, value], i) => {
      if (i) out.push(" · ");
      out.push(label + " ", el("b", { text: value }));
    });
    return out;
  }

  function renderStats(s) {
    const t = s.totals;
    setCard("card-cost", t.cost_usd, fmtCost(t.cost_usd),
      subParts([["today", fmtCost(s.today.cost_usd)], ["this month", fmtCost(s.this_month.cost_usd)]]));
    setCard("card-tokens", t.total_tokens, fmtTokens(t.total_tokens),
      subParts([["in", fmtTokens(t.input_tokens)], ["out", fmtTokens(t.output_tokens)],
        ["cache", fmtTokens(t.cache_creation_tokens + t.cache_read_tokens)]]));
    setCard("card-requests", t.requests, fmtInt(t.requests),
      subParts([["today", fmtInt(s.today.requests)], ["this month", fmtInt(s.this_month.requests)]]));
    setCard("card-sessions", s.sessions, fmtInt(s.sessions),
      s.last_request_ms ? subParts([["last request", fmtAgo(s.last_request_ms)]]) : ["no requests yet"]);

    const note = document.getElementById("history-note");
    if (s.days_beyond_cleanup > 0 && s.history_since) {
      note.replaceChildren("History kept since ", el("strong", { text: fmtDate(s.history_since.slice(0, 10), true) }),
        " — " + fmtInt(s.days_beyond_cleanup) + " days beyond Claude Code's 30-day cleanup.");
      note.hidden = false;
    } else {
      note.hidden = true;
    }
    const unpriced = s.unpriced_models || [];
    $("#card-cost").title = unpriced.length ? "Not priced (counted at $0): " + unpriced.join(", ") : "";
    $("#tz").textContent = "days cut in " + s.tz;
    renderBlock(s.active_block);
  }

  function setStatus(ok, detail) {
    const pill = document.getElementById("status");
    pill.className = "pill " + (ok ? "pill-live" : "pill-down");
    pill.textContent = ok ? "live" : "offline — retrying";
    pill.title = detail || "";
    const ingest = document.getElementById("ingest");
    const s = state.stats;
    ingest.textContent = ok && s && s.last_ingest_at ? "ingested " + fmtAgo(Date.parse(s.last_ingest_at)) : "";
  }

  // ---------------------------------------------------------------- active 5-hour block
  function renderBlock(b) {
    const box = document.getElementById("block");
    const win = document.getElementById("block-window");
    if (!b) {
      win.textContent = "";
      box.replaceChildren(el("p", { className: "empty", text: "No active block — the next request starts one." }));
      return;
    }
    const tf = timeFmt();
    const start = b.start_ms, end = b.end_ms;
    const frac = Math.min(1, Math.max(0, (nowMs() - start) / (end - start)));
    win.textContent = tf.format(new Date(start)) + " – " + tf.format(new Date(end));
    const fill = el("div", { className: "fill" });
    fill.style.width = (frac * 100).toFixed(1) + "%";
    const rows = [
      ["Tokens", fmtTokens(b.total_tokens)],
      ["Requests", fmtInt(b.requests)],
    ];
    if (b.burn_rate) {
      rows.push(["Burn rate", fmtCost(b.burn_rate.cost_per_hour) + "/h · " + fmtTokens(b.burn_rate.tokens_per_minute) + " tok/min"]);
    }
    if (b.projection) {
      rows.push(["Projected at " + tf.format(new Date(end)), fmtCost(b.projection.cost_usd) + " · " + fmtTokens(b.projection.total_tokens) + " tok"]);
    }
    const left = b.projection ? b.projection.remaining_minutes * 60 : (end - nowMs()) / 1000;
    const dl = el("dl", { className: "kv" });
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    box.replaceChildren(
      el("div", { className: "headline" }, [el("span", { className: "big", text: fmtCost(b.cost_usd) }),
        el("span", { className: "muted", text: "so far" })]),
      el("div", { className: "progress", title: Math.round(frac * 100) + "% of the 5-hour window" }, [fill]),
      el("div", { className: "progress-labels" }, [el("span", { text: tf.format(new Date(start)) }),
        el("span", { text: fmtDuration(left) + " left" }), el("span", { text: tf.format(new Date(end)) })]),
      dl);
  }

  // ---------------------------------------------------------------- daily chart
  function chartModels(models) {
    const names = (models || []).filter((m) => m.cost_usd > 0 || m.total_tokens > 0).map((m) => m.model);
    const top = names.slice(0, MAX_CHART_MODELS);
    top.forEach(colorOf);
    return { top, hasOther: names.length > top.length };
  }

  function niceMax(v) {                      // 4 gridlines at round steps
    if (v <= 0) return 1;
    const raw = v / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (raw <= m * p + 1e-12) return 4 * m * p;
    return 40 * p;
  }

  function renderChart() {
    const box = document.getElementById("chart");
    const daily = state.daily, stats = state.stats;
    if (!daily || !stats) return;
    const W = Math.max(280, box.clientWidth || 640), H = Math.max(160, box.clientHeight || 250);
    const pad = { l: 46, r: 6, t: 8, b: 22 };
    const today = stats.today.date;
    let first = state.range === "all" ? (daily.daily[0] ? daily.daily[0].date : today) : addDays(today, -(parseInt(state.range, 10) - 1));
    if (first > today) first = today;
    const days = [];
    for (let d = first; d <= today && days.length < 3700; d = addDays(d, 1)) days.push(d);
    const byDay = new Map(daily.daily.map((r) => [r.date, r]));
    const { top, hasOther } = chartModels(state.models && state.models.models);
    const series = top.concat(hasOther ? ["other"] : []);
    const color = (m) => (m === "other" ? OTHER_COLOR : colorOf(m));
    const maxCost = Math.max(0, ...days.map((d) => (byDay.get(d) || { cost_usd: 0 }).cost_usd));
    const ymax = niceMax(maxCost);
    const plotW = W - pad.l - pad.r, plotH = H - pad.t - pad.b;
    const step = plotW / days.length;
    const gap = step > 8 ? Math.min(6, step * 0.22) : step > 3 ? 1 : 0;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + plotH - (plotH * i) / 4;
      root.append(svg("line", { class: "gridline", x1: pad.l, x2: W - pad.r, y1: y, y2: y }));
      const label = svg("text", { class: "axis", x: pad.l - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = fmtCostShort((ymax * i) / 4).replace(/\.00$/, "");
      root.append(label);
    }
    const labelEvery = Math.max(1, Math.ceil(days.length / Math.max(2, Math.floor(plotW / 64))));
    days.forEach((d, i) => {
      const row = byDay.get(d);
      const x = pad.l + i * step;
      const g = svg("g", { class: "day" });
      g.append(svg("rect", { class: "hit", x: x, y: pad.t, width: Math.max(step, 1), height: plotH }));
      const tip = [fmtDate(d, true) + " — " + (row ? fmtCost(row.cost_usd) + ", " + fmtInt(row.requests) + " requests" : "no usage")];
      if (row) {
        const parts = new Map();
        for (const mb of row.model_breakdowns) {
          const key = top.includes(mb.model) ? mb.model : "other";
          parts.set(key, (parts.get(key) || 0) + mb.cost_usd);
        }
        let y = pad.t + plotH;
        for (const m of series) {
          const v = parts.get(m) || 0;
          if (v <= 0) continue;
          const h = (v / ymax) * plotH;
          y -= h;
          g.append(svg("rect", { class: "bar", x: (x + gap / 2).toFixed(2), y: y.toFixed(2),
            width: Math.max(0.6, step - gap).toFixed(2), height: Math.max(0.5, h).toFixed(2), fill: color(m) }));
          tip.push((m === "other" ? "other" : shortModel(m)) + ": " + fmtCost(v));
        }
      }
      const title = svg("title");
      title.textContent = tip.join("\n");
      g.append(title);
      root.append(g);
      if ((days.length - 1 - i) % labelEvery === 0) {
        const t = svg("text", { class: "axis", x: x + step / 2, y: H - 6, "text-anchor": "middle" });
        t.textContent = fmtDate(d);
        root.append(t);
      }
    });
    if (maxCost <= 0) {
      const t = svg("text", { class: "empty-text", x: pad.l + plotW / 2, y: pad.t + plotH / 2, "text-anchor": "middle" });
      t.textContent = "No usage in this range";
      root.append(t);
    }
    box.replaceChildren(root);
    const legend = document.getElementById("legend");
    legend.replaceChildren(...series.map((m) => el("li", { title: m }, [swatch(color(m)), m === "other" ? "other" : shortModel(m)])));
    const total = daily.totals;
    document.getElementById("range-total").textContent =
      fmtCost(total.cost_usd) + " · " + fmtTokens(total.total_tokens) + " tokens";
  }

  // ---------------------------------------------------------------- breakdown tables
  function shareBar(frac, color) {
    const bar = el("span");
    if (color) bar.style.background = color;
    bar.style.width = (Math.max(0, Math.min(1, frac)) * 100).toFixed(1) + "%";
    return el("div", { className: "sharebar", title: (frac * 100).toFixed(1) + "%" }, [bar]);
  }

  function emptyRow(tbody, cols, text) {
    tbody.replaceChildren(el("tr", null, [el("td", { colspan: String(cols), className: "empty", text: text })]));
  }

  function renderModels(data) {
    const tbody = $("#models tbody");
    const rows = data.models;
    if (!rows.length) return emptyRow(tbody, 5, "No requests in this range.");
    const total = data.totals.cost_usd || 1;
    tbody.replaceChildren(...rows.map((m) => el("tr", null, [
      el("td", { className: "name", title: m.model }, [swatch(colorOf(m.model)), shortModel(m.model),
        m.priced ? null : el("span", { className: "badge", text: "unpriced", title: "unknown to the price table; counted at $0" })]),
      el("td", { className: "num", text: fmtInt(m.requests) }),
      el("td", { className: "num", text: fmtTokens(m.total_tokens) }),
      el("td", { className: "num", text: fmtCost(m.cost_usd) }),
      el("td", { className: "share" }, [shareBar(m.cost_usd / total, colorOf(m.model))]),
    ])));
  }

  function renderProjects(data) {
    const tbody = $("#projects tbody");
    const rows = data.projects;
    if (!rows.length) return emptyRow(tbody, 5, "No requests in this range.");
    const total = data.totals.cost_usd || 1;
    tbody.replaceChildren(...rows.slice(0, 15).map((p) => el("tr", null, [
      el("td", { className: "name", title: p.project + " — last active " + fmtAgo(p.last_ms), text: shortProject(p.project) }),
      el("td", { className: "num", text: fmtInt(p.sessions) }),
      el("td", { className: "num", text: fmtTokens(p.total_tokens) }),
      el("td", { className: "num", text: fmtCost(p.cost_usd) }),
      el("td", { className: "share" }, [shareBar(p.cost_usd / total)]),
    ])));
  }

  // Machines: only a team ledger (two or more hosts) shows it; one host would repeat the totals.
  function renderHosts(data) {
    const panel = document.getElementById("hosts-panel");
    if (!data) {
      panel.hidden = true;
      return;
    }
    const tbody = $("#hosts tbody");
    const rows = data.hosts;
    const known = state.stats ? state.stats.hosts : rows.length;
    const range = state.range === "all" ? "all time" : "last " + state.range + " days";
    document.getElementById("hosts-count").textContent =
      (rows.length < known ? rows.length + " of " + fmtInt(known) : fmtInt(known)) + " machines · " + range;
    if (!rows.length) emptyRow(tbody, 8, "No requests from any machine in this range.");
    else {
      const total = data.totals.cost_usd || 1;
      tbody.replaceChildren(...rows.map((h) => el("tr", { dataset: { host: h.host } }, [
        el("td", { title: h.host + (h.first_at ? " — first request " + h.first_at : "") },
          [el("span", { className: "host-name", text: h.host })]),
        el("td", { className: "name hide-sm", title: h.os_users.join(", "), text: h.os_users.join(", ") || "—" }),
        el("td", { className: "num hide-sm", text: fmtInt(h.sessions) }),
        el("td", { className: "num hide-sm", text: fmtInt(h.requests) }),
        el("td", { className: "num hide-sm", text: fmtTokens(h.total_tokens) }),
        el("td", { className: "num", text: fmtCost(h.cost_usd) }),
        el("td", { className: "share" }, [shareBar(h.cost_usd / total)]),
        el("td", { className: "num", title: h.last_at, text: h.last_at ? fmtAgo(Date.parse(h.last_at)) : "—" }),
      ])));
    }
    panel.hidden = false;
  }

  function renderRecent(data) {
    const tbody = $("#recent tbody");
    if (!data.events.length) return emptyRow(tbody, 5, "No requests yet.");
    const tf = timeFmt(true);
    tbody.replaceChildren(...data.events.map((e) => el("tr", { title: shortProject(e.project) + " · session " + e.session_id }, [
      el("td", { text: Date.now() + state.offsetMs - e.ts_ms < 86400000 ? tf.format(new Date(e.ts_ms)) : fmtDate(e.ts.slice(0, 10)) }),
      el("td", null, [el("span", { className: "chip", title: e.model }, [swatch(colorOf(e.model)), shortModel(e.model)]),
        e.agent_id ? el("span", { className: "badge", text: "agent", title: "subagent " + e.agent_id }) : null]),
      el("td", { className: "num", text: fmtTokens(e.total_tokens) }),
      el("td", { className: "num", text: fmtCost(e.cost_usd) }),
      latencyCell(e.latency_ms, "num"),
    ])));
  }

  // latency is a number (one request) or {"median": ms, "p95": ms} (a group); null when unknown
  function latencyCell(v, cls) {
    const median = v == null ? null : typeof v === "number" ? v : v.median;
    const td = el("td", { className: cls, text: median == null ? "—" : fmtLatency(median) });
    if (v && typeof v === "object" && v.p95 != null) td.title = "median " + fmtLatency(v.median) + " · p95 " + fmtLatency(v.p95);
    return td;
  }

  // ---------------------------------------------------------------- sessions
  function sessionColumns(rows) {
    const cols = [
      { key: "last_ms", label: "Last active", cell: (r) => el("td", { title: r.last_at }, [
        r.running ? el("span", { className: "dot", title: "a Claude process is running this session" }) : null, fmtAgo(r.last_ms)]) },
      { key: "project", label: "Project", asc: true,
        cell: (r) => el("td", { className: "name", title: r.project + "\nsession " + r.session_id, text: shortProject(r.project) }) },
      { key: null, label: "Models", cls: "hide-sm",
        cell: (r) => el("td", { className: "hide-sm" }, r.models.map((m) => el("span", { className: "chip", title: m }, [swatch(colorOf(m)), shortModel(m)]))) },
      { key: "duration_s", label: "Duration", num: true, cls: "hide-sm", cell: (r) => el("td", { className: "num hide-sm", text: fmtDuration(r.duration_s) }) },
      { key: "requests", label: "Requests", num: true, cls: "hide-sm", cell: (r) => el("td", { className: "num hide-sm", text: fmtInt(r.requests) }) },
      { key: "total_tokens", label: "Tokens", num: true, cell: (r) => el("td", { className: "num", text: fmtTokens(r.total_tokens) }) },
      { key: "cost_usd", label: "Cost", num: true, cell: (r) => el("td", { className: "num", text: fmtCost(r.cost_usd) }) },
    ];
    if (rows.some((r) => "latency_ms" in r)) {
      cols.push({ key: "latency_ms", label: "Latency", num: true, cls: "hide-sm", cell: (r) => latencyCell(r.latency_ms, "num hide-sm") });
    }
    return cols;
  }

  function renderSessions(data) {
    document.getElementById("sessions-more").addEventListener("click", () => {
      state.sessionLimit += 50;
      loadSessions().catch(() => setStatus(false));
    });
    const table = document.getElementById("sessions");
    const rows = data.sessions;
    const cols = sessionColumns(rows);
    const head = el("tr", null, cols.map((c) => {
      const th = el("th", { className: [c.num ? "num" : "", c.cls || "", c.key ? "can-sort" : "",
        c.key === state.sort ? "sorted" + (state.order === "asc" ? " asc" : "") : ""].join(" ").trim(), text: c.label });
      if (c.key) {
        th.dataset.sort = c.key;
        th.tabIndex = 0;
        th.setAttribute("aria-sort", c.key === state.sort ? (state.order === "asc" ? "ascending" : "descending") : "none");
        if (c.asc) th.dataset.asc = "1";
      }
      return th;
    }));
    table.tHead.replaceChildren(head);
    const tbody = table.tBodies[0];
    if (!rows.length) emptyRow(tbody, cols.length, "No sessions in this range.");
    else tbody.replaceChildren(...rows.map((r) => el("tr", { dataset: { session: r.session_id } }, cols.map((c) => c.cell(r)))));
    document.querySelector(".more").hidden = !(data.count > rows.length);
    document.getElementById("sessions-count").textContent =
      data.count > rows.length ? rows.length + " of " + fmtInt(data.count) : fmtInt(data.count) + " in range";
  }

  function onSortClick(ev) {
    const th = ev.target.closest("th[data-sort]");
    if (!th) return;
    const key = th.dataset.sort;
    if (key === state.sort) state.order = state.order === "desc" ? "asc" : "desc";
    else { state.sort = key; state.order = th.dataset.asc ? "asc" : "desc"; }
    loadSessions().catch(() => setStatus(false));
  }

  // ---------------------------------------------------------------- processes
  function sparkline(series, field, cls) {
    const W = 96, H = 22;
    const root = svg("svg", { class: "spark " + cls, viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    if (!series || series.length < 2) return root;
    const t0 = series[0].t, t1 = series[series.length - 1].t || t0 + 1;
    const vals = series.map((p) => p[field] || 0);
    const max = Math.max(...vals) || 1;
    const pts = series.map((p, i) => [((p.t - t0) / Math.max(1, t1 - t0)) * W, H - 1 - (vals[i] / max) * (H - 2)]);
    const line = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    root.append(svg("polygon", { class: "area", points: `0,${H} ${line} ${W},${H}` }));
    root.append(svg("polyline", { class: "line", points: line }));
    return root;
  }

  function renderProcesses(data) {
    const box = document.getElementById("processes");
    const note = document.getElementById("proc-note");
    if (!data) {
      note.textContent = "";
      box.replaceChildren(el("p", { className: "empty", text: "no process data" }));
      return;
    }
    note.textContent = data.sampled_at ? "sampled " + fmtAgo(data.sampled_at) + " · every " + data.interval_s + " s" : "";
    if (!data.live.length) {
      box.replaceChildren(el("p", { className: "empty", text: data.sampled_at ? "No Claude process running." : "no process data" }));
      return;
    }
    const head = el("tr", null, ["Process", "Project", "CPU", "Memory", "Threads", "Up"].map((h, i) =>
      el("th", { className: i >= 2 ? (i >= 4 ? "num hide-sm" : "num") : "", text: h })));
    const rows = data.live.map((p) => el("tr", null, [
      el("td", { className: "mono", text: (p.name || "claude") + " " + p.pid, title: p.session_id ? "session " + p.session_id : "" }),
      el("td", { className: "name", title: p.cwd || p.project || "", text: shortProject(p.project || p.cwd) }),
      el("td", { className: "num" }, [(p.cpu_percent || 0).toFixed(1) + "%", sparkline(p.series, "cpu_percent", "cpu")]),
      el("td", { className: "num" }, [fmtBytes(p.rss_bytes || 0), sparkline(p.series, "rss_bytes", "mem")]),
      el("td", { className: "num hide-sm", text: String(p.threads == null ? "—" : p.threads) }),
      el("td", { className: "num hide-sm", text: p.started_at ? fmtDuration((nowMs() - Date.parse(p.started_at)) / 1000) : "—" }),
    ]));
    box.replaceChildren(el("div", { className: "table-wrap" }, [el("table", { className: "grid-table" },
      [el("thead", null, [head]), el("tbody", null, rows)])]));
  }

  // ---------------------------------------------------------------- loading
  function rangeQuery() {
    if (state.range === "all" || !state.stats) return "";
    return "since=" + addDays(state.stats.today.date, -(parseInt(state.range, 10) - 1));
  }

  function fetchSessions() {
    const q = rangeQuery();
    return getJSON("/api/usage/sessions?limit=" + state.sessionLimit + "&sort=" + encodeURIComponent(state.sort) +
      "&order=" + state.order + (q ? "&" + q : ""));
  }

  async function loadSessions() {
    renderSessions(await fetchSessions());
  }

  async function loadRange() {
    const q = rangeQuery();
    const suffix = q ? "?" + q : "";
    const showHosts = state.hostsShown;
    const [daily, models, projects, recent, sessions, hosts] = await Promise.all([
      getJSON("/api/usage/daily" + suffix), getJSON("/api/usage/models" + suffix),
      getJSON("/api/usage/projects" + suffix), getJSON("/api/usage/events?limit=8"), fetchSessions(),
      showHosts ? getJSON("/api/usage/hosts" + suffix) : null]);
    state.daily = daily;
    state.models = models;
    models.models.forEach((m) => colorOf(m.model));     // colors follow cost order, the same in every panel
    renderModels(models);
    renderChart();
    renderProjects(projects);
    renderSessions(sessions);
    renderRecent(recent);
    renderHosts(hosts);
    const label = state.range === "all" ? "all time" : "last " + state.range + " days";
    document.querySelectorAll(".range-label").forEach((n) => { n.textContent = label; });
  }

  async function loadProcesses() {
    if (state.processSampling === null || Date.now() - state.healthAt > 30000) {
      const health = await getJSON("/api/health");
      state.processSampling = !!health.process_sampling;
      state.healthAt = Date.now();
    }
    renderProcesses(state.processSampling ? await getJSON("/api/processes") : null);
  }

  async function tick() {
    if (state.busy) return;
    state.busy = true;
    try {
      const stats = await getJSON("/api/usage/stats");
      state.stats = stats;
      state.offsetMs = stats.now_ms - Date.now();
      renderStats(stats);
      const showHosts = stats.hosts > 1;
      if (showHosts !== state.hostsShown) {      // a second machine appeared (or the ledger changed): redraw now
        state.hostsShown = showHosts;
        state.dirty = true;
      }
      const sig = [stats.totals.requests, stats.totals.cost_usd, stats.totals.total_tokens, stats.last_request_ms, stats.today.date].join("|");
      // Cards, block and latest requests follow every poll; the heavier range panels (chart, breakdowns,
      // sessions) reload at most every RANGE_MIN_MS while requests keep arriving.
      if (state.dirty || (sig !== state.sig && Date.now() - state.rangeAt >= RANGE_MIN_MS)) {
        state.dirty = false;
        await loadRange();
        state.sig = state.recentSig = sig;
        state.rangeAt = Date.now();
      } else if (sig !== state.recentSig) {
        renderRecent(await getJSON("/api/usage/events?limit=8"));
        state.recentSig = sig;
      }
      await loadProcesses();
      setStatus(true, "updated " + new Date().toLocaleTimeString());
    } catch (err) {
      setStatus(false, String(err && err.message || err));
    } finally {
      state.busy = false;
      clearTimeout(state.timer);
      state.timer = setTimeout(tick, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  function init() {
    document.querySelectorAll(".seg button[data-range]").forEach((b) => b.addEventListener("click", () => {
      document.querySelectorAll(".seg button[data-range]").forEach((o) => o.classList.toggle("on", o === b));
      state.range = b.dataset.range;
      state.dirty = true;
      clearTimeout(state.timer);
      tick();
    }));
    document.getElementById("sessions-more").addEventListener("click", () => {
      state.sessionLimit += 50;
      loadSessions().catch(() => setStatus(false));
    });
    const table = document.getElementById("sessions");
    table.addEventListener("click", onSortClick);
    table.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSortClick(ev); } });
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(renderChart);
    }).observe(document.getElementById("chart"));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) { clearTimeout(state.timer); tick(); }
    });
    tick();
  }

  init();
})();
