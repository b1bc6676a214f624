/// The status page served at the admin listener's `GET /`: one self-contained HTML document.
///
/// No external asset of any kind (no CDN, font, image or script URL): the admin listener is often reachable only
/// through an SSH tunnel or from a locked-down network, and the page must work there. It polls `status` (relative,
/// so it also works behind a path-prefixing proxy) every 2.5 s and draws, with inline SVG, one small chart per rule
/// of the requests per second by decision; then the most limited keys (hashed), storage and upstream health and the
/// last reload. Every value is set with `textContent`, never parsed as HTML, so nothing in a rule name or an error
/// message can inject markup.
enum StatusPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Sluice status</title>
        <style>
          :root {
            --ink: #1d2430; --muted: #5b6575; --line: #dde2ea; --card: #ffffff; --page: #f3f5f8;
            --admitted: #3b73c4; --limited: #d1453b; --shadow_limited: #e09a2b; --exempt: #8b94a3;
            --ok: #23824a; --warn: #b76e00; --bad: #c0342b;
          }
          * { box-sizing: border-box; }
          body { margin: 0; background: var(--page); color: var(--ink);
                 font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
          header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; background: var(--card);
                   border-bottom: 1px solid var(--line); }
          header h1 { margin: 0; font-size: 18px; font-weight: 650; letter-spacing: .2px; }
          header .meta { color: var(--muted); font-size: 13px; }
          header .spacer { flex: 1; }
          main { padding: 18px 24px 28px; max-width: 1280px; }
          h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); font-weight: 600;
               margin: 22px 0 10px; }
          .grid { display: grid; gap: 14px; }
          .health { grid-template-columns: repeat(3, minmax(0, 1fr)); }
          .rules { grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); }
          .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
          .card h3 { margin: 0 0 8px; font-size: 15px; display: flex; align-items: center; gap: 8px; }
          .card h3 .sub { color: var(--muted); font-weight: 400; font-size: 12.5px; }
          dl { display: grid; grid-template-columns: auto 1fr; gap: 3px 14px; margin: 0; }
          dt { color: var(--muted); }
          dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
          .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
                   color: #fff; background: var(--muted); }
          .badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); } .badge.bad { background: var(--bad); }
          .legend { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 6px; margin-top: 4px; }
          .legend div { font-size: 12px; color: var(--muted); white-space: nowrap; }
          .legend b { display: block; color: var(--ink); font-size: 16px; font-variant-numeric: tabular-nums; }
          .legend .now { display: block; font-variant-numeric: tabular-nums; }
          .caption { font-size: 11.5px; color: var(--muted); margin-top: 6px; }
          .swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 5px; }
          svg { display: block; width: 100%; height: 150px; }
          svg text { font-size: 11px; fill: var(--muted); font-variant-numeric: tabular-nums; }
          table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line);
                  border-radius: 8px; overflow: hidden; }
          th, td { text-align: left; padding: 7px 12px; border-bottom: 1px solid var(--line); }
          th { font-size: 12px; color: var(--muted); font-weight: 600; background: #fafbfc; }
          td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
          td.hash { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
          tr:last-child td { border-bottom: 0; }
          .empty { color: var(--muted); font-style: italic; }
          .error { color: var(--bad); white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace;
                   font-size: 12px; }
          #banner { display: none; margin: 12px 24px 0; padding: 10px 14px; border-radius: 8px;
                    background: #fdecea; color: var(--bad); border: 1px solid #f3c2bd; }
          footer { color: var(--muted); font-size: 12px; margin-top: 18px; }
        </style>
        </head>
        <body>
        <header>
          <h1>Sluice status</h1>
          <span id="ready" class="badge">loading</span>
          <span class="spacer"></span>
          <span class="meta" id="updated">waiting for the first update</span>
        </header>
        <div id="banner"></div>
        <svg id="svg-namespace" width="0" height="0" aria-hidden="true" style="position: absolute"></svg>
        <main>
          <h2>Health</h2>
          <section class="grid health">
            <div class="card" id="storage-card">
              <h3>Storage <span id="storage-status" class="badge">…</span></h3>
              <dl id="storage"></dl>
            </div>
            <div class="card" id="upstream-card">
              <h3>Upstream <span id="upstream-status" class="badge">…</span>
                <span class="sub">last minute</span></h3>
              <dl id="upstream"></dl>
            </div>
            <div class="card" id="reload-card">
              <h3>Configuration <span id="reload-status" class="badge">…</span></h3>
              <dl id="reload"></dl>
            </div>
          </section>

          <h2>Requests per rule <span id="window-note"></span></h2>
          <section class="grid rules" id="rules"></section>

          <h2>Most limited keys <span id="keys-note"></span></h2>
          <table>
            <thead><tr><th>Key hash</th><th>Rule</th><th>Decision</th><th class="num">Requests</th>
              <th class="num">Last seen</th></tr></thead>
            <tbody id="keys"><tr><td colspan="5" class="empty">no data yet</td></tr></tbody>
          </table>
          <footer>
            Keys are shown as the first 12 hex digits of their digest, never as their values; the access log carries
            the same value as <code>key_hash</code>. Rates are sampled every <span id="interval">2</span> s; the charts
            span the last 5 minutes. Refreshed every 2.5 s.
          </footer>
        </main>
        <script>
        "use strict";
        const DECISIONS = ["admitted", "limited", "shadow_limited", "exempt"];
        const LABELS = { admitted: "admitted", limited: "limited", shadow_limited: "shadow", exempt: "exempt" };
        const SPAN_MS = 5 * 60 * 1000;
        // The SVG namespace, read from an inline element so that the page holds no URL at all.
        const SVG_NS = document.getElementById("svg-namespace").namespaceURI;

        function el(tag, attrs, text) {
          const node = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
          if (text !== undefined) node.textContent = String(text);
          return node;
        }
        function svg(tag, attrs, text) {
          const node = document.createElementNS(SVG_NS, tag);
          for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
          if (text !== undefined) node.textContent = String(text);
          return node;
        }
        function rate(perSecond) {
          if (perSecond >= 1000) return (perSecond / 1000).toFixed(perSecond >= 10000 ? 0 : 1) + "k req/s";
          if (perSecond >= 10 || perSecond === 0) return Math.round(perSecond) + " req/s";
          return perSecond.toFixed(1) + " req/s";
        }
        function count(n) { return n.toLocaleString("en-US"); }
        function ago(ms, now) {
          const s = Math.max(0, Math.round((now - ms) / 1000));
          if (s < 60) return s + " s ago";
          if (s < 3600) return Math.floor(s / 60) + " min ago";
          return Math.floor(s / 3600) + " h ago";
        }
        function clock(ms) { return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC"; }
        function badge(node, text, level) { node.textContent = text; node.className = "badge " + level; }
        function fill(dl, rows) {
          dl.replaceChildren();
          for (const [term, value, cls] of rows) {
            dl.append(el("dt", {}, term));
            const dd = el("dd", cls ? { class: cls } : {}, value);
            dl.append(dd);
          }
        }

        function niceStep(max) {
          const raw = max / 4, power = Math.pow(10, Math.floor(Math.log10(raw)));
          return [1, 2, 5, 10].map(m => m * power).find(step => step >= raw);
        }
        function axisLabel(v) { return v >= 1000 ? (v / 1000) + "k" : String(Math.round(v * 100) / 100); }

        // Drawn in the card's own pixel width, so text in the chart keeps its size.
        function drawChart(rule, status, width) {
          const W = Math.max(300, Math.round(width)), H = 150, L = 40, R = 6, T = 22, B = 20;
          const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
                                    "aria-label": `requests per second of rule ${rule.name}` });
          const start = status.now_ms - SPAN_MS;
          const ends = status.samples.end_ms, durations = status.samples.duration_ms;
          const points = [];
          for (let i = 0; i < ends.length; i++) {
            if (ends[i] <= start) continue;
            const seconds = Math.max(durations[i], 1) / 1000;
            points.push({ end: ends[i], begin: ends[i] - durations[i],
                          rates: DECISIONS.map(d => rule.series[d][i] / seconds) });
          }
          let max = 0;
          for (const p of points) max = Math.max(max, p.rates.reduce((a, b) => a + b, 0));
          const step = max > 0 ? niceStep(max) : 0.25;
          const niceMax = max > 0 ? step * Math.ceil(max / step) : 1;
          const x = t => L + (W - L - R) * Math.min(1, Math.max(0, (t - start) / SPAN_MS));
          const y = v => T + (H - T - B) * (1 - v / niceMax);
          for (let v = 0; v <= niceMax + step / 2; v += step) {
            root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e6e9ef" }));
            root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, axisLabel(v)));
          }
          root.append(svg("text", { x: L, y: 11 }, "requests per second"));
          for (let m = 0; m <= 5; m++) {
            const t = start + m * 60000;
            root.append(svg("text", { x: x(t), y: H - 5, "text-anchor": m === 0 ? "start" : m === 5 ? "end" : "middle" },
                            m === 5 ? "now" : `-${5 - m} min`));
          }
          // Stacked steps: each sample is a flat segment over the interval it covers.
          const base = points.map(() => 0);
          DECISIONS.forEach((decision, d) => {
            if (!points.some(p => p.rates[d] > 0)) return;
            let top = "", bottom = [];
            points.forEach((p, i) => {
              const lo = base[i], hi = base[i] + p.rates[d];
              top += `${top ? "L" : "M"}${x(p.begin).toFixed(1)},${y(hi).toFixed(1)}L${x(p.end).toFixed(1)},${y(hi).toFixed(1)}`;
              bottom.unshift(`L${x(p.end).toFixed(1)},${y(lo).toFixed(1)}L${x(p.begin).toFixed(1)},${y(lo).toFixed(1)}`);
              base[i] = hi;
            });
            root.append(svg("path", { d: top + bottom.join("") + "Z", class: `area ${decision}`,
                                      style: `fill: var(--${decision}); fill-opacity: .85; stroke: var(--${decision}); stroke-width: .6` }));
          });
          root.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#aab2bf" }));
          if (points.length === 0) {
            root.append(svg("text", { x: (L + W) / 2, y: H / 2, "text-anchor": "middle" }, "collecting samples…"));
          }
          return root;
        }

        // A concurrency rule's requests in flight (solid) and queued (dashed) at each sample, under its max.
        function drawConcurrency(rule, status, width) {
          const W = Math.max(300, Math.round(width)), H = 110, L = 40, R = 6, T = 22, B = 20;
          const c = rule.concurrency;
          const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "concurrency-chart",
                                    "aria-label": `requests in flight and queued of rule ${rule.name}` });
          const start = status.now_ms - SPAN_MS;
          const ends = status.samples.end_ms;
          const points = [];
          for (let i = 0; i < ends.length; i++) {
            if (ends[i] <= start) continue;
            points.push({ end: ends[i], inFlight: c.in_flight[i], queued: c.queued[i] });
          }
          let max = c.max;
          for (const p of points) max = Math.max(max, p.inFlight, p.queued);
          const step = niceStep(Math.max(max, 1));
          const niceMax = step * Math.ceil(Math.max(max, 1) / step);
          const x = t => L + (W - L - R) * Math.min(1, Math.max(0, (t - start) / SPAN_MS));
          const y = v => T + (H - T - B) * (1 - v / niceMax);
          for (let v = 0; v <= niceMax + step / 2; v += step) {
            root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e6e9ef" }));
            root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, axisLabel(v)));
          }
          root.append(svg("text", { x: L, y: 11 }, `in flight and queued (all keys) · max ${c.max} per key`));
          root.append(svg("line", { x1: L, x2: W - R, y1: y(c.max), y2: y(c.max), stroke: "var(--limited)",
                                    "stroke-dasharray": "2 3", class: "max" }));
          for (const [field, cls, dash] of [["inFlight", "in-flight", ""], ["queued", "queued", "5 3"]]) {
            if (points.length === 0) break;
            const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.end).toFixed(1)},${y(p[field]).toFixed(1)}`).join("");
            root.append(svg("path", { d, class: cls, fill: "none", stroke: "var(--admitted)", "stroke-width": 1.6,
                                      "stroke-dasharray": dash }));
          }
          root.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#aab2bf" }));
          return root;
        }

        function renderRules(status) {
          const container = document.getElementById("rules");
          container.replaceChildren();
          if (status.rules.length === 0) {
            container.append(el("div", { class: "card empty" }, "no rules configured"));
            return;
          }
          const last = status.samples.duration_ms.length - 1;
          for (const rule of status.rules) {
            const card = el("div", { class: "card rule", "data-rule": rule.name });
            const title = el("h3");
            title.append(el("span", { class: "rule-name" }, rule.name));
            title.append(el("span", { class: "sub" }, `${rule.limits || (rule.concurrency ? "concurrency max " + rule.concurrency.max : "")} · key ${rule.key}` +
                                                      (rule.mode === "shadow" ? " · shadow mode" : "")));
            card.append(title);
            container.append(card);
            const legend = el("div", { class: "legend" });
            for (const d of DECISIONS) {
              const now = last >= 0 ? rule.series[d][last] * 1000 / Math.max(status.samples.duration_ms[last], 1) : 0;
              const item = el("div", { class: `decision ${d}`, "data-decision": d });
              const head = el("span");
              head.append(el("span", { class: "swatch", style: `background: var(--${d})` }));
              head.append(document.createTextNode(LABELS[d]));
              item.append(head);
              item.append(el("b", { class: "last-minute" }, count(rule.last_minute[d])));
              item.append(el("span", { class: "now" }, `now ${rate(now)}`));
              legend.append(item);
            }
            card.append(drawChart(rule, status, card.clientWidth - 30));
            card.append(el("div", { class: "caption" }, "requests in the last minute, and the rate of the last sample"));
            card.append(legend);
            if (rule.concurrency) {
              const c = rule.concurrency, last = c.in_flight.length - 1;
              card.append(drawConcurrency(rule, status, card.clientWidth - 30));
              card.append(el("div", { class: "caption concurrency" },
                             `now ${last >= 0 ? c.in_flight[last] : 0} in flight, ${last >= 0 ? c.queued[last] : 0} queued` +
                             (c.queue_size ? ` (queue ${c.queue_size} per key)` : "") +
                             ` · ${count(c.last_minute_refusals)} refused for concurrency in the last minute`));
            }
          }
        }

        function renderKeys(status) {
          const body = document.getElementById("keys");
          body.replaceChildren();
          const keys = status.limited_keys.keys;
          document.getElementById("keys-note").textContent =
            `(last ${status.limited_keys.window_minutes} min)`;
          if (keys.length === 0) {
            const row = el("tr");
            row.append(el("td", { colspan: "5", class: "empty" }, "no key was limited in this window"));
            body.append(row);
            return;
          }
          for (const k of keys) {
            const row = el("tr", { class: "limited-key" });
            row.append(el("td", { class: "hash" }, k.key_hash));
            row.append(el("td", {}, k.rule));
            row.append(el("td", {}, k.decision === "shadow_limited" ? "shadow (not refused)" : "limited"));
            row.append(el("td", { class: "num" }, count(k.count)));
            row.append(el("td", { class: "num" }, ago(k.last_seen_ms, status.now_ms)));
            body.append(row);
          }
        }

        function renderHealth(status) {
          const s = status.storage;
          badge(document.getElementById("storage-status"), s.status,
                s.status === "ok" ? "ok" : s.status === "degraded" ? "warn" : "bad");
          if (s.kind === "memory") {
            fill(document.getElementById("storage"), [
              ["kind", "memory"],
              ["tracked keys", `${count(s.tracked_keys)} of ${count(s.max_keys)}`],
              ["evictions", count(s.evictions)],
            ]);
          } else if (s.kind === "memcached") {
            fill(document.getElementById("storage"), [
              ["kind", "memcached"],
              ["servers", s.servers.map(x => `${x.address} ${x.status}`).join(", ")],
              ["on_error", s.on_error],
              ["errors", `${count(s.errors_last_minute)} in the last minute`],
              ["latency", s.latency_us_last_minute === null ? "no decisions" :
                          `${(s.latency_us_last_minute / 1000).toFixed(2)} ms mean, last minute`],
            ]);
          } else if (s.deployment === "sentinel") {
            fill(document.getElementById("storage"), [
              ["kind", "redis (sentinel)"],
              ["primary", s.primary === null ? "none found" : s.primary],
              ["master name", s.master_name],
              ["sentinels", s.sentinels.map(x => `${x.address} ${x.status}`).join(", ")],
              ["on_error", s.on_error],
              ["errors", `${count(s.errors_last_minute)} in the last minute`],
              ["latency", s.latency_us_last_minute === null ? "no decisions" :
                          `${(s.latency_us_last_minute / 1000).toFixed(2)} ms mean, last minute`],
            ]);
          } else {
            fill(document.getElementById("storage"), [
              ["kind", s.deployment === "cluster" ? "redis cluster" : "redis"],
              ["address", s.address],
              ...(s.servers ? [["primaries", s.servers.map(x => `${x.address} ${x.status}`).join(", ")]] : []),
              ["on_error", s.on_error],
              ["errors", `${count(s.errors_last_minute)} in the last minute`],
              ["latency", s.latency_us_last_minute === null ? "no decisions" :
                          `${(s.latency_us_last_minute / 1000).toFixed(2)} ms mean, last minute`],
            ]);
          }
          const u = status.upstream, m = u.last_minute;
          badge(document.getElementById("upstream-status"), u.status,
                u.status === "ok" || u.status === "idle" ? "ok" : u.status === "degraded" ? "warn" : "bad");
          fill(document.getElementById("upstream"), [
            ["targets", u.targets.join(", ")],
            ["responses", count(m.responses)],
            ["2xx · 3xx · 4xx · 5xx", `${count(m["2xx"])} · ${count(m["3xx"])} · ${count(m["4xx"])} · ${count(m["5xx"])}`],
            ["502 unreachable", count(m.unreachable_502)],
            ["504 timeout", count(m.timeout_504)],
          ]);
          const r = status.reload;
          const reloadBadge = document.getElementById("reload-status");
          if (r === null) {
            badge(reloadBadge, "unknown", "");
            fill(document.getElementById("reload"), [["reloads", "not reported"]]);
            return;
          }
          const rows = [["loaded", clock(r.started_ms)],
                        ["reloads", `${count(r.successes)} applied · ${count(r.failures)} refused`]];
          if (r.last === null) {
            badge(reloadBadge, "no reload yet", "ok");
            rows.push(["last reload", "none since start"]);
          } else {
            badge(reloadBadge, `last reload: ${r.last.result}`, r.last.result === "success" ? "ok" : "bad");
            rows.push(["last reload", `${r.last.result} · ${clock(r.last.time_ms)} (${ago(r.last.time_ms, status.now_ms)})`]);
            if (r.last.error) rows.push(["error", r.last.error, "error"]);
          }
          fill(document.getElementById("reload"), rows);
        }

        function render(status) {
          badge(document.getElementById("ready"), status.ready ? "ready" : "not ready", status.ready ? "ok" : "bad");
          document.getElementById("updated").textContent = "updated " + clock(status.now_ms);
          document.getElementById("interval").textContent = String(status.interval_ms / 1000);
          renderHealth(status);
          renderRules(status);
          renderKeys(status);
        }

        async function refresh() {
          const banner = document.getElementById("banner");
          try {
            const response = await fetch("status", { cache: "no-store", credentials: "same-origin" });
            if (!response.ok) {
              throw new Error(response.status === 401
                ? "401: this admin listener has an admin_token; the page cannot send it (reach it through a tunnel to an admin listener without a token, see docs/behaviour.md)"
                : `HTTP ${response.status}`);
            }
            render(await response.json());
            banner.style.display = "none";
          } catch (error) {
            banner.textContent = "Cannot load status: " + error.message;
            banner.style.display = "block";
          }
        }
        refresh();
        setInterval(refresh, 2500);
        </script>
        </body>
        </html>
        """#
}
