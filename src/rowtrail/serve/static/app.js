/* rowtrail explorer: a small single-page app over the read-only API (/api/...).
 *
 * Safety rule: every value from the store is inserted as text (textContent, SVG text nodes,
 * attribute values set with setAttribute) and never parsed as HTML. There is no innerHTML of
 * data anywhere in this file, no eval, no inline script; the page is served with a strict CSP. */
"use strict";

(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const main = () => document.getElementById("main");

  // -- DOM helpers --------------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "on") { for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn); }
      else if (k === "class") el.setAttribute("class", v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function render(...kids) { const m = clear(main()); append(m, kids); return m; }
  const short = (id, n) => (id ? String(id).slice(0, n || 12) : "");
  const fmt = (x) => (typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString("en") : x.toLocaleString("en", { maximumFractionDigits: 4 })) : x === null || x === undefined ? "" : String(x));
  const pct = (x) => (typeof x === "number" ? (100 * x).toFixed(1) + " %" : "");
  const enc = encodeURIComponent;
  const vlabel = (v) => v.tag || short(v.version_id);

  // -- API ------------------------------------------------------------------------------------------
  class ApiError extends Error {}
  async function api(path) {
    const r = await fetch("/api" + path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new ApiError((body && (body.message || (typeof body.detail === "string" ? body.detail : null) || body.error)) || r.status + " " + r.statusText);
    return body;
  }
  function errorBox(err) { return h("div", { class: "error", role: "alert" }, String(err.message || err)); }

  // -- small widgets ---------------------------------------------------------------------------------
  function kv(pairs) {
    const dl = h("dl", { class: "kv" });
    for (const [k, v] of pairs) { dl.appendChild(h("dt", {}, k)); dl.appendChild(h("dd", {}, v === null || v === undefined ? "—" : v)); }
    return dl;
  }
  function table(columns, rows, opts) {
    opts = opts || {};
    const t = h("table", { class: opts.class || "", id: opts.id || null });
    const trh = h("tr");
    columns.forEach((c) => trh.appendChild(h("th", { class: c.num ? "num" : null, "data-key": c.key }, c.label || c.key)));
    t.appendChild(h("thead", {}, trh));
    const tb = h("tbody");
    for (const r of rows) {
      const tr = h("tr");
      for (const c of columns) {
        const v = c.render ? c.render(r) : fmt(r[c.key]);
        tr.appendChild(h("td", { class: (c.num ? "num " : "") + (c.clip ? "cell-clip" : ""), title: c.clip ? textOf(r[c.key]) : null }, v));
      }
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    return t;
  }
  function textOf(v) { return v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v); }
  function rowLink(id, text) { return h("a", { href: "#/row/" + id, class: "mono row-link" }, text || short(id, 16)); }
  function verLink(ref, text) { return h("a", { href: "#/version/" + enc(ref) }, text || ref); }
  function signerText(v) {
    if (!v.signed) return h("span", { class: "badge bad" }, "unsigned");
    const keys = (v.signer && v.signer.keys) || [];
    return keys.map((k) => h("span", { class: "badge " + (k.trusted ? "ok" : "warn"), title: k.keyid }, (k.trusted ? "signed by trusted key " : "signed by untrusted key ") + short(k.keyid)));
  }
  function pager(total, offset, limit, go) {
    const last = Math.max(0, total - 1);
    return h("div", { class: "pager" },
      h("button", { class: "secondary", disabled: offset <= 0, on: { click: () => go(Math.max(0, offset - limit)) } }, "‹ prev"),
      h("span", { class: "muted" }, total ? `${fmt(offset + 1)}–${fmt(Math.min(offset + limit, total))} of ${fmt(total)}` : "none"),
      h("button", { class: "secondary", disabled: offset + limit > last, on: { click: () => go(offset + limit) } }, "next ›"));
  }
  function download(name, text, type) {
    const blob = new Blob([text], { type: type || "text/plain" });
    const a = h("a", { href: URL.createObjectURL(blob), download: name });
    document.body.appendChild(a); a.click(); a.remove();
  }

  // -- verify badge ----------------------------------------------------------------------------------
  let verifyState = null;
  const onTimeline = () => (location.hash.replace(/^#/, "") || "/").split("?")[0].replace(/^\/?$/, "/") === "/";
  async function refreshVerify() {
    const badge = document.getElementById("verify-badge");
    try {
      const st = await api("/verify");
      verifyState = st;
      badge.className = "badge " + (st.state === "done" ? (st.ok ? "ok" : "bad") : st.state === "failed" ? "bad" : "running");
      badge.textContent = st.state === "done" ? (st.ok ? "verify: OK" : `verify: FAILED (${st.report.problems.length})`) : st.state === "failed" ? "verify: error" : "verify: running…";
      badge.title = st.state === "done" ? `${st.sample ? st.sample + " rows per version recomputed" : "every row recomputed"}; finished ${st.finished_at} in ${st.seconds} s` : "";
      if (st.state === "running" || st.state === "idle") setTimeout(refreshVerify, 1000);
      else if (onTimeline()) route(); // show each version's verify result
    } catch (e) { badge.textContent = "verify: ?"; }
  }

  // -- pages -----------------------------------------------------------------------------------------
  async function timeline(params) {
    const corpus = (params && params.get("corpus")) || "main";
    const [info, versions] = await Promise.all([api("/store"), api("/versions?corpus=" + enc(corpus))]);
    const corpora = Object.keys(info.corpora);
    const corpusPick = corpora.length > 1 ? h("label", {}, "corpus ", h("select", { id: "corpus-pick", on: { change: (ev) => { location.hash = "#/?corpus=" + enc(ev.target.value); } } }, corpora.map((c) => h("option", { value: c, selected: c === corpus }, c)))) : null;
    const picked = [];
    const compare = h("button", { id: "compare", disabled: true, on: { click: () => { const [x, y] = orderPair(picked, versions); location.hash = `#/diff/${enc(x)}/${enc(y)}`; } } }, "Diff selected");
    const list = h("ol", { class: "timeline", id: "timeline" });
    for (const v of versions) {
      const ref = v.tag || v.version_id;
      const box = h("input", { type: "checkbox", class: "pick", "data-ref": ref, "aria-label": "select " + ref, on: { change: (ev) => {
        if (ev.target.checked) picked.push(ref); else picked.splice(picked.indexOf(ref), 1);
        while (picked.length > 2) { const old = picked.shift(); const el = list.querySelector(`input[data-ref="${CSS.escape(old)}"]`); if (el) el.checked = false; }
        compare.disabled = picked.length !== 2;
      } } });
      const problems = versionProblems(v.version_id);
      list.appendChild(h("li", { "data-version": v.version_id },
        h("div", { class: "head" },
          h("a", { class: "tag", href: "#/version/" + enc(ref) }, vlabel(v)),
          h("span", { class: "mono muted" }, short(v.version_id, 16)),
          signerText(v),
          problems === null ? null : problems.length ? h("span", { class: "badge bad" }, `verify: ${problems.length} problem(s)`) : h("span", { class: "badge ok" }, "verified"),
          box),
        h("div", { class: "msg" }, v.message),
        h("div", { class: "meta" },
          h("span", {}, v.created_at.slice(0, 19).replace("T", " ") + " UTC"),
          h("span", {}, "by " + (v.author || "?")),
          h("span", {}, fmt(v.row_count) + " rows"),
          h("span", {}, v.sources + " sources"),
          h("span", {}, v.pipeline_steps + " pipeline steps"),
          v.parent ? h("a", { href: `#/diff/${enc(v.parent)}/${enc(ref)}`, class: "diff-parent" }, "diff with parent") : h("span", {}, "first version"),
          h("a", { href: "#/rows/" + enc(ref) }, "rows"),
          h("a", { href: "#/transparency/" + enc(ref) }, "transparency"))));
    }
    render(
      h("h1", {}, "Version timeline"),
      h("p", { class: "muted" }, `Store ${info.path} · ${info.versions} versions · ${info.sources} sources · ${info.runs} runs · ${info.journal_entries} journal entries`),
      h("div", { class: "toolbar" }, corpusPick, compare, h("span", { class: "muted" }, "select two versions to compare")),
      versions.length ? list : h("p", {}, "No versions yet."));
  }
  function orderPair(picked, versions) {
    const idx = (r) => versions.findIndex((v) => (v.tag || v.version_id) === r);
    return idx(picked[0]) > idx(picked[1]) ? [picked[0], picked[1]] : [picked[1], picked[0]]; // older first (the list is newest first)
  }
  function versionProblems(vid) {
    if (!verifyState || verifyState.state !== "done" || !verifyState.report) return null;
    return verifyState.report.problems.filter((p) => String(p.object).includes(vid) || String(p.object).includes(vid.slice(0, 12)));
  }

  async function versionPage(ref) {
    const v = await api("/versions/" + enc(ref));
    const r = v.record;
    const c = r.content;
    const srcRows = Object.entries(v.per_source).map(([k, x]) => ({ source_id: k, rows: x.rows, weight: x.weight }));
    render(
      h("h1", {}, "Version " + vlabel(v)),
      h("div", { class: "toolbar" },
        h("a", { class: "button", href: "#/rows/" + enc(ref) }, "Rows"),
        v.parent ? h("a", { class: "button secondary", href: `#/diff/${enc(v.parent)}/${enc(ref)}` }, "Diff with parent") : null,
        h("a", { class: "button secondary", href: "#/transparency/" + enc(ref) }, "Transparency"),
        h("a", { class: "button secondary", href: "#/monitor/" + enc(ref) }, "Monitoring"),
        h("a", { class: "button secondary", href: "#/drops/" + enc(ref) }, "Drops"),
        v.signed ? h("a", { class: "button secondary", href: `/api/versions/${enc(v.version_id)}/attestation`, download: `attestation-${vlabel(v)}.json` }, "Attestation") : null,
        h("a", { class: "button secondary", href: `/api/versions/${enc(v.version_id)}/manifest`, download: `manifest-${vlabel(v)}.json` }, "Manifest")),
      h("div", { class: "card" }, kv([
        ["version_id", h("span", { class: "mono" }, v.version_id)], ["corpus", v.corpus], ["tag", v.tag], ["message", v.message],
        ["author", v.author], ["created_at", v.created_at], ["parent", v.parent ? verLink(v.parent, short(v.parent, 16)) : null],
        ["signature", signerText(v)], ["content_id", h("span", { class: "mono" }, v.content_id)], ["rows", fmt(c.row_count)],
        ["weight_total", fmt(c.weight_total)], ["merkle_root", h("span", { class: "mono" }, c.merkle_root)],
        ["content_root", h("span", { class: "mono" }, c.content_root)], ["inputs_root", h("span", { class: "mono" }, c.inputs_root)],
        ["policy", c.policy]])),
      h("h2", {}, "Sources"),
      table([{ key: "source_id", render: (x) => h("a", { href: `#/rows/${enc(ref)}?source=${enc(x.source_id)}` }, x.source_id) }, { key: "rows", num: true }, { key: "weight", num: true }], srcRows),
      h("h2", {}, "Pipeline"),
      v.steps.length ? table([{ key: "#", render: (x) => String(v.steps.indexOf(x) + 1) }, { key: "name" }, { key: "use" }, { key: "version" }, { key: "step_id", render: (x) => h("span", { class: "mono" }, short(x.step_id, 16)) }, { key: "params", clip: true, render: (x) => textOf(x.params) }], v.steps) : h("p", { class: "muted" }, "No pipeline steps: the version is its input set."),
      v.admission ? [h("h2", {}, "Admission policy"), h("pre", {}, JSON.stringify(v.admission, null, 2))] : null);
  }

  async function diffPage(a, b) {
    const d = await api(`/diff?a=${enc(a)}&b=${enc(b)}`);
    const per = Object.entries(d.per_source).map(([k, x]) => ({ source_id: k, ...x }));
    const labelA = d.before_tag || short(d.before), labelB = d.after_tag || short(d.after);
    const rowsBox = h("div", { id: "diff-rows" });
    const state = { kind: d.rows_added ? "added" : "removed", offset: 0 };
    async function loadRows() {
      const page = await api(`/diff/rows?a=${enc(a)}&b=${enc(b)}&kind=${state.kind}&offset=${state.offset}&limit=50`);
      clear(rowsBox);
      append(rowsBox, [
        h("div", { class: "toolbar" },
          h("button", { class: state.kind === "added" ? "" : "secondary", id: "show-added", on: { click: () => { state.kind = "added"; state.offset = 0; loadRows(); } } }, `Rows added (${fmt(d.rows_added)})`),
          h("button", { class: state.kind === "removed" ? "" : "secondary", id: "show-removed", on: { click: () => { state.kind = "removed"; state.offset = 0; loadRows(); } } }, `Rows removed (${fmt(d.rows_removed)})`)),
        table([{ key: "row_id", render: (x) => rowLink(x.row_id, x.row_id) }, { key: "source_id" }, { key: "weight", num: true }], page.rows, { id: "diff-row-table" }),
        pager(page.total, page.offset, page.limit, (o) => { state.offset = o; loadRows(); })]);
    }
    render(
      h("h1", {}, `Diff ${labelA} → ${labelB}`),
      h("p", {}, h("span", { class: "pill add" }, `+${fmt(d.rows_added)} rows`), h("span", { class: "pill rem" }, `−${fmt(d.rows_removed)} rows`),
        h("span", { class: "muted" }, ` ${d.chunks_shared} row chunk(s) shared, skipped unread`)),
      h("div", { class: "card", id: "diff-sources" },
        h("div", {}, h("b", {}, "Sources added: "), d.sources_added.length ? d.sources_added.map((x) => h("span", { class: "pill add" }, x)) : "none"),
        h("div", {}, h("b", {}, "Sources dropped: "), d.sources_dropped.length ? d.sources_dropped.map((x) => h("span", { class: "pill rem" }, x)) : "none"),
        h("div", {}, h("b", {}, "Sources with a new snapshot: "), d.sources_changed.length ? d.sources_changed.map((x) => h("span", { class: "pill chg" }, x)) : "none")),
      h("h2", {}, "Rows added and removed per source"),
      h("div", { class: "chart card" }, diffBars(per)),
      table([{ key: "source_id" }, { key: "before", num: true }, { key: "after", num: true }, { key: "added", num: true, render: (x) => "+" + fmt(x.added) }, { key: "removed", num: true, render: (x) => "−" + fmt(x.removed) }], per),
      h("h2", {}, "Rows"), rowsBox);
    await loadRows();
  }
  function diffBars(per) {
    const rows = per.filter((x) => x.added || x.removed);
    const max = Math.max(1, ...rows.map((x) => Math.max(x.added, x.removed)));
    const lw = 170, half = 260, rh = 24, W = lw + 2 * half + 20, H = 30 + rh * rows.length;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "rows added and removed per source", id: "diff-bars" });
    const mid = lw + half;
    svg.appendChild(s("text", { x: mid - 6, y: 14, "text-anchor": "end", "font-size": 12, fill: "#a4244e" }, "removed"));
    svg.appendChild(s("text", { x: mid + 6, y: 14, "font-size": 12, fill: "#1f6e32" }, "added"));
    rows.forEach((x, i) => {
      const y = 22 + i * rh;
      svg.appendChild(s("text", { x: lw - 8, y: y + 14, "text-anchor": "end", "font-size": 12 }, x.source_id));
      const wr = (half - 50) * x.removed / max, wa = (half - 50) * x.added / max;
      svg.appendChild(s("rect", { x: mid - wr, y: y + 3, width: Math.max(wr, x.removed ? 1 : 0), height: rh - 8, fill: "#d6336c", class: "bar-removed" }, s("title", {}, `${x.source_id}: −${x.removed}`)));
      svg.appendChild(s("rect", { x: mid, y: y + 3, width: Math.max(wa, x.added ? 1 : 0), height: rh - 8, fill: "#2f9e44", class: "bar-added" }, s("title", {}, `${x.source_id}: +${x.added}`)));
      if (x.removed) svg.appendChild(s("text", { x: mid - wr - 4, y: y + 14, "text-anchor": "end", "font-size": 11, fill: "#5d6875" }, "−" + fmt(x.removed)));
      if (x.added) svg.appendChild(s("text", { x: mid + wa + 4, y: y + 14, "font-size": 11, fill: "#5d6875" }, "+" + fmt(x.added)));
    });
    svg.appendChild(s("line", { x1: mid, y1: 18, x2: mid, y2: H, stroke: "#8996a6" }));
    if (!rows.length) return h("p", { class: "muted" }, "No rows changed.");
    return svg;
  }

  async function rowsPage(ref, params) {
    const source = params.get("source");
    const offset = Number(params.get("offset") || 0);
    const sources = await api("/sources");
    const q = `?offset=${offset}&limit=50` + (source ? `&source=${enc(source)}` : "");
    const page = await api(`/versions/${enc(ref)}/rows${q}`);
    const go = (o, src) => { const p = new URLSearchParams(); if (src) p.set("source", src); if (o) p.set("offset", o); location.hash = `#/rows/${enc(ref)}` + (p.toString() ? "?" + p : ""); };
    const pick = h("select", { id: "rows-source", on: { change: (ev) => go(0, ev.target.value) } }, h("option", { value: "" }, "all sources"), sources.map((x) => h("option", { value: x.source_id, selected: x.source_id === source }, x.source_id)));
    const cols = [{ key: "row_id", render: (r) => rowLink(r.row_id) }, { key: "source_id" }, { key: "source_key", clip: true }]
      .concat(page.content_columns.map((c) => ({ key: c, clip: true, render: (r) => (r.content ? textOf(r.content[c]) : "(erased)") })))
      .concat([{ key: "weight", num: true }]);
    render(h("h1", {}, `Rows of ${page.tag || short(page.version_id)}` + (source ? ` from ${source}` : "")),
      h("div", { class: "toolbar" }, h("label", {}, "source ", pick)),
      pager(page.total, page.offset, page.limit, (o) => go(o, source)),
      table(cols, page.rows, { id: "rows-table" }),
      pager(page.total, page.offset, page.limit, (o) => go(o, source)));
  }

  const NODE_FILL = { source: "#dbe9ff", ingest: "#eef1f5", row: "#ffffff", focus: "#ffe9a8", drop: "#fde2e1", version: "#dff3e4", run: "#efe3ff" };
  function lineageSvg(g) {
    const layers = {};
    for (const n of g.nodes) (layers[n.layer] = layers[n.layer] || []).push(n);
    const keys = Object.keys(layers).map(Number).sort((x, y) => x - y);
    const NW = 168, NH = 34, GX = 120, GY = 26, PAD = 24;
    const maxRows = Math.max(...keys.map((k) => layers[k].length));
    const W = PAD * 2 + keys.length * NW + (keys.length - 1) * GX, H = PAD * 4 + maxRows * NH + (maxRows - 1) * GY + 10;
    const pos = {};
    keys.forEach((k, ci) => {
      const col = layers[k];
      const off = (H - (col.length * NH + (col.length - 1) * GY)) / 2;
      col.forEach((n, ri) => { pos[n.id] = { x: PAD + ci * (NW + GX), y: off + ri * (NH + GY) }; });
    });
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "lineage-graph", role: "img", "aria-label": "lineage graph" },
      s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8996a6" }))));
    for (const e of g.edges) {
      const a = pos[e.source], b = pos[e.target];
      if (!a || !b) continue;
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
      const back = x2 <= x1;
      const skip = !back && x2 - x1 > GX + 1 && Math.abs(y2 - y1) < 1; // a straight edge across a column would run under its nodes
      const arc = 6; // a skipping edge arcs over the whole graph, so it never looks like it starts at a node it passes
      const d = skip ? `M ${x1} ${y1} C ${x1 + GX} ${arc}, ${x2 - GX} ${arc}, ${x2} ${y2}` : back ? `M ${a.x + NW / 2} ${a.y + NH} C ${a.x + NW / 2} ${a.y + NH + 40}, ${b.x + NW / 2} ${b.y + NH + 40}, ${b.x + NW / 2} ${b.y + NH}` : `M ${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}`;
      svg.appendChild(s("path", { d, fill: "none", stroke: "#8996a6", "stroke-width": 1.4, "marker-end": "url(#arrow)", class: "edge" }, s("title", {}, e.label)));
      const ly = skip ? (y1 + y2) / 8 + 0.75 * arc + 12 : (y1 + y2) / 2 - 5, lx = skip ? (x1 + x2) / 2 : x1 + GX / 2;
      if (e.label) svg.appendChild(s("text", { x: lx, y: ly, "text-anchor": "middle", "font-size": 10, fill: "#5d6875" }, e.label.length > 20 ? e.label.slice(0, 19) + "…" : e.label));
    }
    for (const n of g.nodes) {
      const p = pos[n.id];
      const body = s("g", { class: "node " + n.kind, "data-kind": n.kind, "data-id": n.id },
        s("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 5, fill: NODE_FILL[n.kind] || "#fff" }),
        s("text", { x: p.x + 8, y: p.y + 14, "font-size": 10, fill: "#5d6875" }, n.kind),
        s("text", { x: p.x + 8, y: p.y + 27, "font-size": 12 }, n.label.length > 24 ? n.label.slice(0, 23) + "…" : n.label),
        s("title", {}, [n.label, n.license ? "licence " + n.license : "", n.legal_basis ? "legal basis " + n.legal_basis : "", n.admitted_by ? "admitted by " + n.admitted_by : ""].filter(Boolean).join("\n")));
      const href = n.kind === "row" ? "#/row/" + n.row_id : n.kind === "version" ? "#/version/" + enc(n.version_id) : n.kind === "run" ? "#/run/" + enc(n.run_id) : null;
      svg.appendChild(href ? s("a", { href }, body) : body);
    }
    return svg;
  }

  async function rowPage(id) {
    const [t, g] = await Promise.all([api("/rows/" + id), api(`/rows/${id}/graph`)]);
    const prov = t.provenance;
    const whyBox = h("div", { id: "why" });
    const holders = t.versions;
    const versions = await allVersions();
    const proofPick = h("select", { id: "proof-version" }, versions.map((v) => h("option", { value: v.version_id, selected: holders.length && holders[0].version_id === v.version_id }, vlabel(v) + (v.corpus !== "main" ? ` (${v.corpus})` : "") + (holders.some((x) => x.version_id === v.version_id) ? " (holds it)" : " (does not)"))));
    const proofLink = h("a", { class: "button", id: "download-proof", download: "" }, "Download proof");
    const proofNote = h("span", { class: "muted", id: "proof-kind" });
    function updateProof() {
      const vid = proofPick.value;
      const held = holders.some((x) => x.version_id === vid);
      proofLink.setAttribute("href", `/api/rows/${id}/proof?version=${enc(vid)}&download=true` + (held ? "" : "&absent=true"));
      proofNote.textContent = held ? "inclusion proof against the version's signed Merkle root" : "exclusion proof: the row is not in this version";
      whyFor(vid);
    }
    async function whyFor(vid) {
      try { const w = await api(`/rows/${id}/why?version=${enc(vid)}`); clear(whyBox); append(whyBox, [h("p", {}, w.explanation)]); }
      catch (e) { clear(whyBox); whyBox.appendChild(errorBox(e)); }
    }
    proofPick.addEventListener("change", updateProof);
    const provPairs = Object.entries(prov).map(([k, v]) => [k, h("span", { class: "mono" }, textOf(v))]);
    const src = t.source;
    render(
      h("h1", {}, "Row ", h("span", { class: "mono", id: "row-id" }, t.row_id)),
      h("div", { class: "grid2" },
        h("div", {},
          h("h2", {}, "Content"),
          t.content === null ? h("p", { class: "muted" }, "Erased by a purge; its provenance stays.") :
            Object.entries(t.content).map(([k, v]) => [h("div", { class: "muted" }, k), h("pre", { class: "content-field", "data-field": k }, typeof v === "string" ? v : JSON.stringify(v, null, 2))])),
        h("div", {},
          h("h2", {}, "Source"),
          h("div", { class: "card" }, kv([["source", h("a", { href: "#/sources" }, src.source_id)], ["kind", src.kind], ["licence", src.license], ["legal basis", src.legal_basis], ["collected", src.collected], ["refreshed", src.refreshed_at], ["owner", src.owner], ["generator", src.generator], ["uri", src.uri]])),
          h("h2", {}, "Proof"),
          h("div", { class: "card" }, h("div", { class: "toolbar" }, h("label", {}, "version ", proofPick), proofLink), proofNote,
            h("p", { class: "muted" }, "Check it offline with: rowtrail check-proof FILE")))),
      h("h2", {}, "Lineage"),
      h("div", { class: "legend" }, Object.keys(NODE_FILL).map((k) => h("span", { class: "k-" + k }, k))),
      h("div", { class: "graph" }, lineageSvg(g)),
      h("h2", {}, "Why"), whyBox,
      h("h2", {}, "In versions"),
      holders.length ? table([{ key: "version", render: (v) => verLink(v.version_id, v.tag || short(v.version_id)) }, { key: "corpus" }, { key: "created_at" }, { key: "weight", num: true },
        { key: "admission rule", render: (v) => (v.admission ? `${v.admission.rule || v.admission.decision || ""} (policy ${short(v.admission.policy)})` : "no admission policy") }], holders, { id: "row-versions" })
        : h("p", { class: "muted" }, "In no committed version."),
      t.steps.length ? [h("h2", {}, "Pipeline steps"), table([{ key: "position", num: true }, { key: "step" }, { key: "use" }, { key: "event" }, { key: "detail", render: (e) => (e.child ? rowLink(e.child) : e.parent ? rowLink(e.parent) : e.reason ? `${e.reason_code}: ${e.reason}` : e.after !== undefined ? `weight ${e.before} → ${e.after}` : e.values ? JSON.stringify(e.values) : "") }], t.steps)] : null,
      t.drops.length ? [h("h2", {}, "Drops"), table([{ key: "reason_code" }, { key: "reason" }, { key: "by" }, { key: "effective_in", render: (d) => (d.effective_in ? verLink(d.effective_in, short(d.effective_in)) : "staged") }], t.drops)] : null,
      h("h2", {}, "Runs that trained on it"),
      t.runs.length ? table([{ key: "run_id", render: (r) => h("a", { href: "#/run/" + enc(r.run_id) }, r.run_id) }, { key: "version_id", render: (r) => verLink(r.version_id, short(r.version_id)) }, { key: "rows", num: true }, { key: "step_count", num: true }], t.runs) : h("p", { class: "muted" }, "None recorded."),
      h("h2", {}, "Provenance columns"), h("div", { class: "card" }, kv(provPairs)));
    updateProof();
  }

  async function sourcesPage() {
    const list = await api("/sources");
    render(h("h1", {}, "Sources"), sortableTable(list, ["source_id", "kind", "license", "legal_basis", "collected", "refreshed_at", "owner", "generator", "snapshot", "uri"], [], "sources-table"));
  }

  function sortableTable(rows, columns, numeric, id) {
    const state = { key: null, dir: 1, filter: "" };
    const wrap = h("div", {});
    const input = h("input", { type: "search", placeholder: "filter rows…", id: id + "-filter", on: { input: (ev) => { state.filter = ev.target.value.toLowerCase(); draw(); } } });
    const box = h("div", {});
    function draw() {
      let shown = rows.filter((r) => !state.filter || columns.some((c) => textOf(r[c]).toLowerCase().includes(state.filter)));
      if (state.key) {
        const k = state.key;
        shown = shown.slice().sort((a, b) => {
          const x = a[k], y = b[k];
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * state.dir;
        });
      }
      const t = table(columns.map((c) => ({ key: c, num: numeric.includes(c), render: c.endsWith("_share") ? (r) => pct(r[c]) : c === "snapshots" ? (r) => (r[c] || []).join(", ") : null })), shown, { id });
      t.querySelectorAll("th").forEach((th) => {
        const key = th.getAttribute("data-key");
        th.classList.add("sortable");
        if (key === state.key) th.classList.add(state.dir > 0 ? "sorted-asc" : "sorted-desc");
        th.addEventListener("click", () => { state.dir = state.key === key ? -state.dir : 1; state.key = key; draw(); });
      });
      clear(box); box.appendChild(t);
    }
    draw();
    append(wrap, [h("div", { class: "toolbar" }, input, h("span", { class: "muted" }, "click a column to sort")), box]);
    return wrap;
  }

  async function allVersions() {
    const info = await api("/store");
    const lists = await Promise.all(Object.keys(info.corpora).map((c) => api("/versions?corpus=" + enc(c))));
    return lists.flat();
  }
  async function versionPicker(ref, route) {
    const versions = await allVersions();
    return h("label", {}, "version ", h("select", { id: "version-pick", on: { change: (ev) => { location.hash = `#/${route}/${enc(ev.target.value)}`; } } },
      h("option", { value: "HEAD", selected: ref === "HEAD" }, "HEAD"), versions.map((v) => h("option", { value: v.tag || v.version_id, selected: (v.tag || v.version_id) === ref }, vlabel(v) + (v.corpus !== "main" ? ` (${v.corpus})` : "")))));
  }

  async function transparencyPage(ref) {
    const [doc, picker] = await Promise.all([api(`/versions/${enc(ref)}/transparency`), versionPicker(ref, "transparency")]);
    const cols = ["source_id", "rows", "row_share", "weight", "weight_share", "license", "legal_basis", "kind", "generator", "collected", "refreshed_at", "snapshots", "owner"];
    const t = doc.totals;
    render(h("h1", {}, `Transparency table: ${doc.version.corpus}@${doc.version.tag || short(doc.version.version_id)}`),
      h("div", { class: "toolbar" }, picker, h("a", { class: "button", id: "transparency-csv", href: `/api/versions/${enc(ref)}/transparency.csv`, download: "" }, "Download CSV"),
        h("a", { class: "button secondary", href: "#/eu-ai-act/" + enc(ref) }, "EU AI Act summary")),
      h("p", { class: "muted" }, `${fmt(t.sources)} sources · ${fmt(t.rows)} rows · weight ${fmt(t.weight)} · ${fmt(t.bytes)} content bytes (≈ ${fmt(t.estimated_tokens)} tokens, ${t.token_rule}) · ${t.machine_generated_sources} machine-generated sources`),
      sortableTable(doc.sources, cols, ["rows", "row_share", "weight", "weight_share"], "transparency-table"),
      Object.entries(doc.breakdowns).map(([attr, rows]) => [h("h2", {}, "By " + attr), sortableTable(rows, ["value", "rows", "row_share", "weight", "weight_share", "sources"], ["rows", "row_share", "weight", "weight_share", "sources"], "breakdown-" + attr)]));
  }

  async function euPage(ref) {
    const [doc, picker] = await Promise.all([api(`/versions/${enc(ref)}/eu-ai-act`), versionPicker(ref, "eu-ai-act")]);
    render(h("h1", {}, "EU AI Act: public summary of training content"),
      h("div", { class: "toolbar" }, picker, h("button", { on: { click: () => download("eu-ai-act-summary.md", doc.markdown, "text/markdown") } }, "Download Markdown"),
        h("button", { class: "secondary", on: { click: () => download("eu-ai-act-summary.json", JSON.stringify(doc.summary, null, 2), "application/json") } }, "Download JSON")),
      h("pre", { id: "eu-ai-act" }, doc.markdown));
  }

  async function monitorPage(ref) {
    const [m, picker] = await Promise.all([api(`/versions/${enc(ref)}/monitor`), versionPicker(ref, "monitor")]);
    const steps = m.steps;
    const parts = [h("h1", {}, `Per-step monitoring: ${m.tag || short(m.version_id)}`), h("div", { class: "toolbar" }, picker, h("a", { href: "#/drops/" + enc(ref) }, "drops by step and reason"))];
    if (!steps.length) { parts.push(h("p", { class: "muted" }, "This version has no pipeline run to monitor.")); render(parts); return; }
    parts.push(h("h2", {}, "Rows through the pipeline"), h("div", { class: "chart card" }, countsChart(steps)));
    const sources = [...new Set(steps.flatMap((x) => Object.keys(x.per_source || {})))].sort();
    parts.push(h("h2", {}, "Rows per source after each step"), table([{ key: "source" }, { key: "in", num: true }].concat(steps.map((x, i) => ({ key: `#${i + 1} ${x.name}`, num: true }))),
      sources.map((src) => Object.assign({ source: src, in: fmt(((steps[0].per_source || {})[src] || {}).rows_in || 0) }, ...steps.map((x, i) => ({ [`#${i + 1} ${x.name}`]: fmt(((x.per_source || {})[src] || {}).rows_out || 0) }))))));
    const attrs = [...new Set(steps.flatMap((x) => Object.keys(x.drift || {})))];
    for (const a of attrs) {
      parts.push(h("h2", {}, "Drift of " + a));
      const first = steps.find((x) => x.drift && x.drift[a]);
      if (first.drift[a].kind === "categorical") parts.push(h("div", { class: "chart card" }, proportionsChart(steps, a)));
      parts.push(table([{ key: "step" }, { key: "psi", num: true }, { key: "kl", num: true }, { key: "ks", num: true }, { key: "max change", num: true }, { key: "n before", num: true }, { key: "n after", num: true }],
        steps.filter((x) => x.drift && x.drift[a]).map((x) => { const d = x.drift[a]; return { step: x.name, psi: d.psi, kl: d.kl, ks: d.ks, "max change": d.max_change, "n before": d.n_before, "n after": d.n_after }; })));
    }
    const alerts = steps.flatMap((x) => (x.alerts || []).map((al) => ({ step: x.name, ...al })));
    parts.push(h("h2", {}, "Alerts"), alerts.length ? table(Object.keys(alerts[0]).map((k) => ({ key: k })), alerts) : h("p", { class: "muted" }, "No monitoring threshold crossed."));
    render(parts);
  }
  function countsChart(steps) {
    const pts = [{ name: "input", rows: steps[0].rows_in, weight: steps[0].weight_in }].concat(steps.map((x, i) => ({ name: `#${i + 1} ${x.name}`, rows: x.rows_out, weight: x.weight_out })));
    const max = Math.max(1, ...pts.map((p) => Math.max(p.rows, p.weight)));
    const bw = 34, gap = 46, H = 230, base = 190, W = 60 + pts.length * (2 * bw + gap);
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "counts-chart", role: "img", "aria-label": "rows and weight after each step" });
    pts.forEach((p, i) => {
      const x = 40 + i * (2 * bw + gap);
      const hr = 160 * p.rows / max, hw = 160 * p.weight / max;
      svg.appendChild(s("rect", { x, y: base - hr, width: bw, height: hr, fill: "#4c7cc4" }, s("title", {}, `${p.name}: ${p.rows} rows`)));
      svg.appendChild(s("rect", { x: x + bw, y: base - hw, width: bw, height: hw, fill: "#9bbbe8" }, s("title", {}, `${p.name}: weight ${p.weight}`)));
      svg.appendChild(s("text", { x: x + bw / 2, y: base - hr - 4, "text-anchor": "middle", "font-size": 10 }, fmt(p.rows)));
      svg.appendChild(s("text", { x: x + bw * 1.5, y: base - hw - 4, "text-anchor": "middle", "font-size": 10, fill: "#5d6875" }, fmt(p.weight)));
      svg.appendChild(s("text", { x: x + bw, y: base + 16, "text-anchor": "middle", "font-size": 11 }, p.name.length > 18 ? p.name.slice(0, 17) + "…" : p.name));
    });
    svg.appendChild(s("line", { x1: 30, y1: base, x2: W - 10, y2: base, stroke: "#8996a6" }));
    svg.appendChild(s("rect", { x: 40, y: H - 18, width: 10, height: 10, fill: "#4c7cc4" })); svg.appendChild(s("text", { x: 54, y: H - 9, "font-size": 11 }, "rows"));
    svg.appendChild(s("rect", { x: 100, y: H - 18, width: 10, height: 10, fill: "#9bbbe8" })); svg.appendChild(s("text", { x: 114, y: H - 9, "font-size": 11 }, "weight"));
    return svg;
  }
  const PALETTE = ["#4c7cc4", "#e8983e", "#4aa564", "#c9514c", "#8a6cc1", "#8c6d4f", "#d977b5", "#7f8c8d", "#b5b843", "#42b4c4"];
  function proportionsChart(steps, attr) {
    const cols = [{ name: "input", p: steps.find((x) => x.drift && x.drift[attr]).drift[attr].proportions_before }].concat(steps.filter((x) => x.drift && x.drift[attr]).map((x, i) => ({ name: `#${i + 1} ${x.name}`, p: x.drift[attr].proportions_after })));
    const cats = [...new Set(cols.flatMap((c) => Object.keys(c.p || {})))].sort();
    const bw = 54, gap = 40, H = 250, top = 20, ch = 180, W = 60 + cols.length * (bw + gap) + 160;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "proportions-chart", role: "img", "aria-label": "proportions of " + attr + " after each step" });
    cols.forEach((c, i) => {
      const x = 40 + i * (bw + gap);
      let y = top + ch;
      cats.forEach((k, j) => {
        const v = (c.p || {})[k] || 0, hh = ch * v;
        y -= hh;
        svg.appendChild(s("rect", { x, y, width: bw, height: hh, fill: PALETTE[j % PALETTE.length] }, s("title", {}, `${c.name}: ${k} ${pct(v)}`)));
      });
      svg.appendChild(s("text", { x: x + bw / 2, y: top + ch + 16, "text-anchor": "middle", "font-size": 11 }, c.name.length > 14 ? c.name.slice(0, 13) + "…" : c.name));
    });
    cats.forEach((k, j) => {
      const lx = 60 + cols.length * (bw + gap), ly = top + j * 18;
      svg.appendChild(s("rect", { x: lx, y: ly, width: 11, height: 11, fill: PALETTE[j % PALETTE.length] }));
      svg.appendChild(s("text", { x: lx + 16, y: ly + 10, "font-size": 11 }, k));
    });
    return svg;
  }

  async function dropsPage(ref) {
    const [d, picker] = await Promise.all([api(`/versions/${enc(ref)}/drops?rows=200`), versionPicker(ref, "drops")]);
    const steps = d.steps.map((x) => ({ ...x, reasons: Object.entries(x.by_reason).map(([k, v]) => `${k} ${v}`).join(", "), sources: Object.entries(x.by_source).map(([k, v]) => `${k} ${v}`).join(", ") }));
    render(h("h1", {}, `Drops of ${d.tag || short(d.version_id)}'s pipeline`), h("div", { class: "toolbar" }, picker),
      d.run ? [h("p", {}, `${fmt(d.total)} rows dropped in total`), table([{ key: "step" }, { key: "dropped", num: true }, { key: "reasons" }, { key: "sources" }], steps),
        h("h2", {}, "Dropped rows (first 200)"), table([{ key: "row_id", render: (r) => rowLink(r.row_id) }, { key: "step" }, { key: "reason_code" }, { key: "reason" }, { key: "source_id" }], d.rows)]
        : h("p", { class: "muted" }, "This version has no pipeline run."));
  }

  async function runsPage() {
    const runs = await api("/runs");
    render(h("h1", {}, "Training runs"), runs.length ? table([{ key: "run_id", render: (r) => h("a", { href: "#/run/" + enc(r.run_id) }, r.run_id) }, { key: "version_id", render: (r) => verLink(r.version_id, short(r.version_id)) }, { key: "source" }, { key: "finished_at" }, { key: "steps", num: true }, { key: "rows_consumed", num: true }, { key: "distinct_rows", num: true }], runs, { id: "runs-table" }) : h("p", { class: "muted" }, "No training runs recorded in this store."));
  }

  async function runPage(id, params) {
    const r = await api("/runs/" + enc(id));
    const group = params.get("group") || r.groups[0];
    const by = params.get("by") || "row";
    const parts = [h("h1", {}, "Run " + r.run_id), h("div", { class: "card" }, kv([["version", verLink(r.version_id, short(r.version_id, 16))], ["corpus", r.corpus], ["source", r.source], ["started", r.started_at], ["finished", r.finished_at], ["optimizer steps", fmt(r.steps)], ["rows consumed", fmt(r.rows_consumed)], ["distinct rows", fmt(r.distinct_rows)], ["rows outside the version", fmt(r.rows_outside_version)], ["config", h("pre", {}, JSON.stringify(r.config, null, 2))]]))];
    if (!r.groups.length) parts.push(h("p", { class: "muted" }, "This run recorded no per-group contributions (a run registered from outside records only the rows it consumed)."));
    else {
      const pick = h("select", { id: "group-pick", on: { change: (ev) => { location.hash = `#/run/${enc(id)}?group=${enc(ev.target.value)}&by=${by}`; } } }, r.groups.map((g) => h("option", { value: g, selected: g === group }, g)));
      const byPick = h("select", { on: { change: (ev) => { location.hash = `#/run/${enc(id)}?group=${enc(group)}&by=${ev.target.value}`; } } }, ["row", "source"].map((b) => h("option", { value: b, selected: b === by }, "by " + b)));
      const a = await api(`/runs/${enc(id)}/attribution?group=${enc(group)}&by=${by}&top=50`);
      parts.push(h("h2", {}, `What shaped parameter group ${group}`), h("div", { class: "toolbar" }, pick, byPick),
        h("p", { class: "muted" }, `contribution = −lr·⟨g_i, Δθ_G⟩ summed over the steps; total ${fmt(a.total)}, Σ‖Δθ‖² ${fmt(a.update_sq)}`),
        by === "source" ? table([{ key: "source_id" }, { key: "contribution", num: true }], a.top)
          : table([{ key: "row_id", render: (x) => rowLink(x.row_id) }, { key: "contribution", num: true }, { key: "source_id" }, { key: "license" }, { key: "legal_basis" }, { key: "admitted_by", render: (x) => x.admitted_by || "no admission policy" }], a.top, { id: "attribution-table" }));
    }
    parts.push(h("p", { class: "muted" }, "Test-example attribution runs the model, so it stays on the command line: rowtrail attribute RUN --model F.py:fn --test T.npz"));
    render(parts);
  }

  async function searchPage(params) {
    const q = params.get("q") || "";
    document.getElementById("search-input").value = q;
    if (!q) { render(h("h1", {}, "Search"), h("p", { class: "muted" }, "Search by row id, source key or content hash.")); return; }
    const res = await api(`/search?q=${enc(q)}&limit=50`);
    if (res.hits.length === 1 && res.hits[0].matched === "row_id") { location.replace("#/row/" + res.hits[0].row_id); return; }
    render(h("h1", {}, "Search: ", h("span", { class: "mono" }, q)),
      res.hits.length ? table([{ key: "row_id", render: (x) => rowLink(x.row_id, x.row_id) }, { key: "source_id" }, { key: "source_key", clip: true }, { key: "matched" }], res.hits, { id: "search-table" }) : h("p", {}, "No row matches this row id, source key or content hash."));
  }


  async function agreementPage(ref, params) {
    const by = params.get("by") || "week";
    const [rep, picker] = await Promise.all([api(`/versions/${enc(ref)}/agreement?by=${by}`), versionPicker(ref, "agreement")]);
    const byPick = h("select", { id: "agreement-by", on: { change: (ev) => { location.hash = `#/agreement/${enc(ref)}?by=${ev.target.value}`; } } },
      ["week", "guideline", "annotator", "batch"].map((b) => h("option", { value: b, selected: b === by }, "by " + b)));
    const parts = [h("h1", {}, `Annotator agreement: ${rep.tag || short(rep.version_id)}`), h("div", { class: "toolbar" }, picker, byPick)];
    if (!rep.tasks.length) { parts.push(h("p", { class: "muted" }, "This version holds no annotations (rowtrail annotations import).")); render(parts); return; }
    parts.push(h("p", { class: "muted" }, `${fmt(rep.judgements)} judgements · drift test: ${rep.drift_method.test}, α = ${rep.drift_method.alpha}, ${rep.drift_method.permutations} permutations`));
    for (const t of rep.tasks) {
      const o = t.overall;
      parts.push(h("h2", {}, `Task ${t.task} (${t.kind}, ${t.level})`),
        h("div", { class: "card" }, kv([["Krippendorff's alpha", fmt(o.alpha)], ["Fleiss' kappa", fmt(o.fleiss_kappa)], ["mean Cohen's kappa", fmt(o.cohen_kappa_mean)], ["judgements", fmt(o.judgements)], ["annotators", fmt(o.annotators)], ["items", fmt(o.units)]])),
        h("h2", {}, `Agreement by ${t.by}`), h("div", { class: "chart card" }, lineChart(t.groups.map((g) => g.group), [["alpha", t.groups.map((g) => g.alpha)], ["mean Cohen's kappa", t.groups.map((g) => g.cohen_kappa_mean)], ["Fleiss' kappa", t.groups.map((g) => g.fleiss_kappa)]], "agreement-chart")),
        table([{ key: "group" }, { key: "alpha", num: true }, { key: "fleiss_kappa", num: true }, { key: "cohen_kappa_mean", num: true }, { key: "judgements", num: true }, { key: "annotators", num: true }], t.groups),
        h("h2", {}, "Annotators against the pool"),
        table([{ key: "annotator" }, { key: "judgements", num: true }, { key: "kappa_vs_pool", num: true }, { key: "agreement", num: true }, { key: "bias", num: true },
          { key: "drift", render: (a) => (a.drift ? h("span", { class: "badge bad" }, "drift since " + String(a.change_at || "").slice(0, 10)) : h("span", { class: "badge ok" }, "stable")) },
          { key: "before → after", render: (a) => { const x = a.tests && a.tests.agreement; return x ? `${fmt(x.before)} → ${fmt(x.after)} (p ${fmt(x.p)})` : ""; } }], t.annotators, { id: "annotators-table" }));
      const withTimeline = t.annotators.filter((a) => Array.isArray(a.timeline) && a.timeline.length);
      if (withTimeline.length) {
        const weeks = [...new Set(withTimeline.flatMap((a) => a.timeline.map((p) => p.week)))].sort();
        parts.push(h("h2", {}, "Each annotator's agreement with the pool, week by week"),
          h("div", { class: "chart card" }, lineChart(weeks, withTimeline.map((a) => [a.annotator + (a.drift ? " (drift)" : ""), weeks.map((w) => { const p = a.timeline.find((x) => x.week === w); return p ? p.agreement : null; })]), "annotator-chart")));
      }
      if (t.reference_shift) parts.push(h("p", { class: "muted" }, `Pool label shift: ${t.reference_shift.shift ? "yes" : "no"} (total variation ${fmt(t.reference_shift.total_variation)}, p ${fmt(t.reference_shift.p)})`));
    }
    render(parts);
  }
  function lineChart(labels, series, id) {
    const W = Math.max(360, 70 + labels.length * 70), H = 230, top = 16, ch = 160, left = 44;
    const svg = s("svg", { width: W + 170, height: H, viewBox: `0 0 ${W + 170} ${H}`, id, role: "img", "aria-label": "agreement over groups" });
    const vals = series.flatMap(([, v]) => v).filter((x) => typeof x === "number");
    const lo = Math.min(0, ...vals), hi = Math.max(1, ...vals);
    const y = (v) => top + ch - ch * (v - lo) / (hi - lo || 1);
    const x = (i) => left + 20 + i * ((W - left - 40) / Math.max(1, labels.length - 1));
    for (const t of [lo, (lo + hi) / 2, hi]) {
      svg.appendChild(s("line", { x1: left, x2: W, y1: y(t), y2: y(t), stroke: "#e3e7ec" }));
      svg.appendChild(s("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end", "font-size": 10, fill: "#5d6875" }, t.toFixed(2)));
    }
    labels.forEach((l, i) => svg.appendChild(s("text", { x: x(i), y: top + ch + 16, "text-anchor": "middle", "font-size": 10 }, String(l).length > 10 ? String(l).slice(0, 9) + "…" : l)));
    series.forEach(([name, v], j) => {
      const pts = v.map((val, i) => (typeof val === "number" ? `${x(i)},${y(val)}` : null)).filter(Boolean);
      if (pts.length) svg.appendChild(s("polyline", { points: pts.join(" "), fill: "none", stroke: PALETTE[j % PALETTE.length], "stroke-width": 2, class: "series" }));
      v.forEach((val, i) => { if (typeof val === "number") svg.appendChild(s("circle", { cx: x(i), cy: y(val), r: 3, fill: PALETTE[j % PALETTE.length] }, s("title", {}, `${name} ${labels[i]}: ${fmt(val)}`))); });
      svg.appendChild(s("rect", { x: W + 14, y: top + j * 18, width: 11, height: 11, fill: PALETTE[j % PALETTE.length] }));
      svg.appendChild(s("text", { x: W + 30, y: top + j * 18 + 10, "font-size": 11 }, name));
    });
    return svg;
  }

  async function outputSearchPage(params) {
    const versions = await allVersions();
    const ref = params.get("version") || (versions[0] ? versions[0].tag || versions[0].version_id : "HEAD");
    const indexed = await api(`/versions/${enc(ref)}/indexes`).catch(() => []);
    const pick = h("select", { id: "output-version", on: { change: (ev) => { location.hash = "#/output-search?version=" + enc(ev.target.value); } } },
      versions.map((v) => h("option", { value: v.tag || v.version_id, selected: (v.tag || v.version_id) === ref }, vlabel(v))));
    const area = h("textarea", { id: "output-text", rows: 8, cols: 100, placeholder: "paste a model output here", "aria-label": "model output" });
    const out = h("div", { id: "output-results" });
    async function go() {
      clear(out); out.appendChild(h("p", { class: "muted" }, "searching…"));
      try {
        const r = await fetch("/api/search-output", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify({ text: area.value, version: ref, k: 10 }) });
        const body = await r.json();
        if (!r.ok) throw new ApiError(body.message || (typeof body.detail === "string" ? body.detail : body.error));
        clear(out); append(out, outputResults(body));
      } catch (e) { clear(out); out.appendChild(errorBox(e)); }
    }
    render(h("h1", {}, "Output search"),
      h("p", { class: "muted" }, "Paste a model output: its longest verbatim spans found in the version's rows (longest first), then the most similar rows, each with its provenance."),
      h("div", { class: "toolbar" }, h("label", {}, "version ", pick), h("span", { class: "muted" }, indexed.length ? "indexes: " + indexed.map((i) => i.kind).join(", ") : "no index for this version: build one with rowtrail index " + ref)),
      area, h("div", { class: "toolbar" }, h("button", { id: "output-go", on: { click: go } }, "Trace this output")), out);
  }
  function outputResults(r) {
    const spanRows = r.spans.map((sp, i) => ({ i: i + 1, text: sp.text, tokens: sp.end - sp.start, rows: sp.rows_containing, sources: Object.entries(sp.sources).map(([k, v]) => `${k} ${v}`).join(", "), first: sp.rows[0] }));
    const sim = Array.isArray(r.similar) ? r.similar : (r.similar && (r.similar.lexical || r.similar.rows || r.similar.embedding)) || [];
    return [
      h("p", {}, r.summary || `${r.tokens_in_spans} of ${r.output_tokens} output tokens are in verbatim spans found in ${r.tag || short(r.version_id)}.`),
      h("h2", {}, "Verbatim spans"),
      spanRows.length ? table([{ key: "i", num: true, label: "#" }, { key: "text", render: (x) => h("span", { class: "mono" }, x.text) }, { key: "tokens", num: true }, { key: "rows", num: true, label: "rows holding it" }, { key: "sources" },
        { key: "first row", render: (x) => (x.first ? [rowLink(x.first.row_id), " ", x.first.source_id, x.first.provenance ? ` (${x.first.provenance.source.license || "licence unknown"}, ${x.first.provenance.source.legal_basis || "legal basis unknown"})` : ""] : "") }], spanRows, { id: "spans-table" })
        : h("p", { class: "muted" }, "No verbatim span of the minimum length."),
      h("h2", {}, "By source"),
      table([{ key: "source_id" }, { key: "output_tokens_covered", num: true, label: "output tokens covered" }, { key: "share", num: true, render: (g) => pct(g.share) }, { key: "rows", num: true }], r.by_source.map((g) => ({ ...g, rows: g.rows ? g.rows.length || g.rows : g.hits }))),
      h("h2", {}, "Most similar rows"),
      sim.length ? table([{ key: "row_id", render: (x) => rowLink(x.row_id) }, { key: "source_id" }, { key: "score", num: true, render: (x) => fmt(x.score !== undefined ? x.score : x.bm25 !== undefined ? x.bm25 : x.cosine) }, { key: "licence", render: (x) => (x.provenance ? x.provenance.source.license : "") }], sim, { id: "similar-table" })
        : h("p", { class: "muted" }, "None (the version has no lexical or embedding index)."),
    ];
  }

  // -- router ----------------------------------------------------------------------------------------
  const routes = [
    [/^\/?$/, (m, p) => timeline(p), "timeline"],
    [/^\/version\/([^/]+)$/, (m) => versionPage(decodeURIComponent(m[1])), "timeline"],
    [/^\/diff\/([^/]+)\/([^/]+)$/, (m) => diffPage(decodeURIComponent(m[1]), decodeURIComponent(m[2])), "timeline"],
    [/^\/rows\/([^/]+)$/, (m, p) => rowsPage(decodeURIComponent(m[1]), p), "timeline"],
    [/^\/row\/([0-9a-fA-F]{64})$/, (m) => rowPage(m[1].toLowerCase()), null],
    [/^\/sources$/, () => sourcesPage(), "sources"],
    [/^\/transparency\/([^/]+)$/, (m) => transparencyPage(decodeURIComponent(m[1])), "transparency"],
    [/^\/eu-ai-act\/([^/]+)$/, (m) => euPage(decodeURIComponent(m[1])), "eu-ai-act"],
    [/^\/monitor\/([^/]+)$/, (m) => monitorPage(decodeURIComponent(m[1])), "monitor"],
    [/^\/drops\/([^/]+)$/, (m) => dropsPage(decodeURIComponent(m[1])), "monitor"],
    [/^\/runs$/, () => runsPage(), "runs"],
    [/^\/run\/([^/]+)$/, (m, p) => runPage(decodeURIComponent(m[1]), p), "runs"],
    [/^\/search$/, (m, p) => searchPage(p), null],
    [/^\/agreement\/([^/]+)$/, (m, p) => agreementPage(decodeURIComponent(m[1]), p), "agreement"],
    [/^\/agreement$/, (m, p) => agreementPage("HEAD", p), "agreement"],
    [/^\/output-search$/, (m, p) => outputSearchPage(p), "output-search"],
  ];
  const extraRoutes = [];
  let routeGen = 0; // the newest route; an older one still loading must not mark the page ready
  async function route() {
    const gen = ++routeGen;
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    document.body.removeAttribute("data-ready");
    for (const [re, fn, nav] of routes.concat(extraRoutes)) {
      const m = path.match(re);
      if (!m) continue;
      document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("data-nav") === nav));
      render(h("p", { class: "muted" }, "loading…"));
      try { await fn(m, params); } catch (e) { if (gen === routeGen) render(errorBox(e)); }
      if (gen === routeGen) document.body.setAttribute("data-ready", path);
      return;
    }
    render(errorBox(new Error("no such page: " + path)));
    document.body.setAttribute("data-ready", path);
  }

  window.rowtrail = { h, s, api, render, table, rowLink, clear, append, errorBox, extraRoutes };
  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = document.getElementById("search-input").value.trim();
      if (q) location.hash = "#/search?q=" + enc(q);
    });
    window.addEventListener("hashchange", route);
    api("/store").then((info) => {
      document.querySelectorAll("nav a.optional").forEach((a) => { if (info.features[a.getAttribute("data-nav").replace("-", "_")]) a.hidden = false; });
    }).catch(() => {});
    route().then(refreshVerify);
  });
})();
