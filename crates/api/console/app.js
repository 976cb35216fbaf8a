// The Accelhub web console: a small single-page app over the JSON API
// (/v1), served by `accelhub serve` at `/`. No build step, no framework:
// every page is built with DOM calls (text always through textContent,
// so nothing a user or vendor wrote is ever parsed as HTML).

const view = document.getElementById("view");
let me = null;

// ---- Helpers ---------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function token() {
  return sessionStorage.getItem("accelhub-token");
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, { method = "GET", body, json, headers = {}, raw = false } = {}) {
  const h = { authorization: `Bearer ${token()}`, ...headers };
  if (json !== undefined) {
    h["content-type"] = "application/json";
    body = JSON.stringify(json);
  }
  const r = await fetch(path, { method, headers: h, body });
  if (!r.ok) {
    let detail = `${r.status} ${r.statusText}`;
    try {
      const p = await r.json();
      detail = p.detail || p.title || detail;
    } catch (_) { /* not problem+json */ }
    throw new ApiError(r.status, detail);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

// Every item of a list the API pages (1000 a page): follow its
// `Link: <…>; rel="next"` headers to the last page.
async function apiAll(path) {
  const items = [];
  let next = `${path}${path.includes("?") ? "&" : "?"}limit=1000`;
  while (next) {
    const r = await api(next, { raw: true });
    items.push(...await r.json());
    next = nextLink(r.headers.get("link"));
  }
  return items;
}

// The target of a `Link` header's rel="next" (RFC 8288), if any.
function nextLink(header) {
  for (const part of (header || "").split(",")) {
    const m = part.trim().match(/^<([^>]*)>\s*;(.*)$/);
    if (m && m[2].split(";").some(p => ["rel=\"next\"", "rel=next"].includes(p.trim()))) return m[1];
  }
  return null;
}

function errorBox(e) {
  return el("div", { class: "error", role: "alert", text: e.message || String(e) });
}

function stars(avg) {
  if (avg === null || avg === undefined) return "unrated";
  const full = Math.round(avg);
  return "★".repeat(full) + "☆".repeat(5 - full) + ` ${avg.toFixed(1)}`;
}

function ipPath(ip) {
  return ip.split("/").map(encodeURIComponent).join("/");
}

// A bar chart of [label, value] pairs, as SVG.
function barChart(data, unit) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 180");
  svg.setAttribute("role", "img");
  const max = Math.max(1e-9, ...data.map(d => d[1]));
  const w = Math.min(60, 600 / Math.max(1, data.length));
  data.forEach(([label, value], i) => {
    const h = (value / max) * 140;
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", i * w + 2);
    r.setAttribute("y", 150 - h);
    r.setAttribute("width", Math.max(1, w - 4));
    r.setAttribute("height", h);
    const t = document.createElementNS(ns, "title");
    t.textContent = `${label}: ${value} ${unit}`;
    r.append(t);
    svg.append(r);
    const l = document.createElementNS(ns, "text");
    l.setAttribute("x", i * w + w / 2);
    l.setAttribute("y", 168);
    l.setAttribute("text-anchor", "middle");
    l.textContent = label;
    svg.append(l);
  });
  return svg;
}

// Records per day of the current month: [day, sum of f(record)].
function perDay(records, f) {
  const days = new Map();
  for (const r of records) {
    const day = r.created_at.slice(5, 10);
    days.set(day, (days.get(day) || 0) + f(r));
  }
  return [...days.entries()].sort();
}

// Inline markdown: **bold** and `code`, as DOM nodes.
function inline(text) {
  return text.split(/(\*\*[^*]+\*\*|`[^`]+`)/).filter(Boolean).map((part) => {
    if (part.startsWith("**") && part.endsWith("**") && part.length > 4) return el("strong", { text: part.slice(2, -2) });
    if (part.startsWith("`") && part.endsWith("`") && part.length > 2) return el("code", { text: part.slice(1, -1) });
    return document.createTextNode(part);
  });
}

// A markdown subset (headings, paragraphs, lists, code blocks, bold,
// inline code), built as DOM.
function markdown(text) {
  const out = el("div", { class: "description" });
  let list = null;
  let code = null;
  let para = [];
  const flush = () => {
    if (para.length) out.append(el("p", {}, inline(para.join(" "))));
    para = [];
  };
  for (const line of text.split("\n")) {
    if (line.startsWith("```")) {
      flush();
      if (code) { out.append(code); code = null; } else code = el("pre");
      continue;
    }
    if (code) { code.textContent += line + "\n"; continue; }
    const h = line.match(/^(#{1,4})\s+(.*)$/);
    const li = line.match(/^\s*[-*]\s+(.*)$/);
    if (h) {
      flush(); list = null;
      out.append(el(`h${Math.min(4, h[1].length + 1)}`, {}, inline(h[2])));
    } else if (li) {
      flush();
      if (!list) { list = el("ul"); out.append(list); }
      list.append(el("li", {}, inline(li[1])));
    } else if (!line.trim()) {
      flush(); list = null;
    } else if (list && /^\s+/.test(line)) {
      list.lastChild.append(" ", ...inline(line.trim()));
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  if (code) out.append(code);
  return out;
}

// A progress bar (its width set through the CSSOM: the page's content
// security policy allows no inline styles).
function progressBar(fraction) {
  const bar = el("span");
  bar.style.width = `${Math.round(fraction * 100)}%`;
  return el("span", { class: "progress" }, bar);
}

// ---- Sign in ---------------------------------------------------------------

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = el("input", { type: "password", id: "token", placeholder: "API token", size: 60, required: true, autocomplete: "off" });
  const form = el("form", {
    id: "signin",
    onsubmit: async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("accelhub-token", input.value.trim());
      await start();
    },
  }, input, el("button", { type: "submit", text: "Sign in" }));
  view.replaceChildren(el("section", {},
    el("h1", { text: "Sign in" }),
    el("p", { class: "muted", text: "Paste the API token of your account (the operator's is in the data directory's admin.token)." }),
    message ? errorBox(message) : null,
    form));
}

async function start() {
  if (!token()) return signIn();
  try {
    me = await api("/v1/account");
  } catch (e) {
    sessionStorage.removeItem("accelhub-token");
    return signIn(e.status === 401 ? new Error("That token was not accepted.") : e);
  }
  const nav = document.getElementById("nav");
  nav.hidden = false;
  for (const a of nav.querySelectorAll("[data-role]")) a.hidden = a.dataset.role !== me.role;
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  route();
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem("accelhub-token");
  me = null;
  location.hash = "#/market";
  signIn();
});

// ---- Pages -----------------------------------------------------------------

async function market(params) {
  const q = params.get("q") || "";
  const search = el("input", { type: "search", id: "search", name: "q", value: q, placeholder: "Search IPs", size: 30 });
  const device = el("select", { id: "device", name: "device" },
    ["", "wasm", "opencl", "cuda", "cpu"].map(d => el("option", { value: d, selected: params.get("device") === d, text: d || "any device" })));
  const sort = el("select", { id: "sort", name: "sort" },
    ["newest", "rating", "usage", "name"].map(s => el("option", { value: s, selected: params.get("sort") === s, text: `by ${s}` })));
  const form = el("form", {
    onsubmit: (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      if (search.value) p.set("q", search.value);
      if (device.value) p.set("device", device.value);
      p.set("sort", sort.value);
      location.hash = `#/market?${p}`;
    },
  }, search, device, sort, el("button", { type: "submit", text: "Search" }));
  const list = el("div", { class: "grid", id: "results" });
  view.replaceChildren(el("h1", { text: "Marketplace" }), el("section", {}, form), list);
  const p = new URLSearchParams();
  for (const k of ["q", "device", "sort"]) if (params.get(k)) p.set(k, params.get(k));
  const entries = await apiAll(`/v1/ips?${p}`);
  if (!entries.length) list.append(el("p", { class: "muted", text: "No IP matches." }));
  for (const e of entries) {
    const v = e.latest;
    list.append(el("div", { class: "card ip-card" },
      el("h2", {}, el("a", { href: `#/ip/${ipPath(e.ip)}`, text: e.ip })),
      el("p", { text: v.summary }),
      el("p", {}, v.devices.map(d => el("span", { class: "tag", text: d }))),
      el("p", { class: "muted" },
        el("span", { class: "stars", text: stars(e.stats.rating.average) }),
        ` (${e.stats.rating.count}) · ${e.stats.uses} uses · ${v.price_per_call} per call · v${v.version} ${v.status}`)));
  }
}

async function ipPage(ip) {
  const d = await api(`/v1/ips/${ipPath(ip)}`);
  const v = d.versions.find(x => x.status === "verified") || d.versions[0];
  const parts = [el("h1", { text: d.ip })];
  parts.push(el("section", {},
    el("p", { text: v.summary }),
    el("p", { class: "muted" }, el("span", { class: "stars", text: stars(d.stats.rating.average) }),
      ` (${d.stats.rating.count} ratings) · ${d.stats.uses} uses by ${d.stats.users} users`),
    v.description ? markdown(v.description) : null));
  // Pricing.
  parts.push(el("section", {}, el("h2", { text: "Pricing" }),
    el("table", {}, el("tr", {}, el("th", { text: "plan" }), el("th", { text: "terms" })),
      (v.plans || []).map(p => el("tr", {}, el("td", { text: p.name }), el("td", {
        text: p.kind === "per_call"
          ? `${p.per_call} per call${p.per_gb !== "0.000000" ? ` + ${p.per_gb} per GB of input` : ""}`
          : p.kind === "device_hour"
            ? `${p.per_hour} per device-hour of the device time your calls use`
            : `${p.fee} a month, ${p.included_calls} calls included${p.overage ? `, then ${p.overage} per call` : ", then none until the 1st"}`,
      })))),
    v.trial_calls ? el("p", { class: "muted", text: `${v.trial_calls} free trial calls per user.` }) : null));
  // Inputs and outputs beyond the main ones.
  if ((v.objects || []).length || (v.outputs || []).length) {
    parts.push(el("section", { id: "io" }, el("h2", { text: "Inputs and outputs" }),
      el("table", {}, el("tr", {}, ["", "name", "what"].map(h => el("th", { text: h }))),
        (v.objects || []).map(o => el("tr", {}, el("td", { text: "object input" }), el("td", { text: o.name }),
          el("td", { text: `${o.summary}${o.required ? "" : " (optional)"}` }))),
        (v.outputs || []).map((o, i) => el("tr", {}, el("td", { text: i === 0 ? "main output" : "output" }),
          el("td", { text: o.name }), el("td", { text: o.summary }))))));
  }
  // Try it.
  if (me.role === "user") parts.push(tryIt(d.ip, v));
  // Versions and verification.
  parts.push(el("section", {}, el("h2", { text: "Versions" }),
    el("table", {}, el("tr", {}, ["version", "status", "devices", "verification"].map(h => el("th", { text: h }))),
      d.versions.map(x => el("tr", {},
        el("td", { text: x.version }),
        el("td", { class: x.status === "verified" ? "ok" : x.status === "rejected" ? "bad" : "", text: x.status }),
        el("td", { text: x.devices.join(", ") }),
        el("td", {}, ((x.report && x.report.implementations) || []).map(i => el("div", {
          text: `${i.device}: ${i.passed ? "passed" : i.skipped ? "not verified here" : "failed"}` +
            (i.load_error ? ` — ${i.load_error.split("\n")[0]}` : "") +
            ` (${i.tests.filter(t => t.passed).length}/${i.tests.length} vectors)`,
        }))))))));
  // Reviews.
  const reviews = el("section", { id: "reviews" }, el("h2", { text: `Reviews (${d.reviews.length})` }));
  for (const r of d.reviews) {
    const box = el("div", { class: "review" },
      el("p", {}, el("span", { class: "stars", text: "★".repeat(r.stars) + "☆".repeat(5 - r.stars) }), ` ${r.author}, ${r.updated_at.slice(0, 10)}`),
      r.text ? el("p", { text: r.text }) : null,
      r.reply ? el("p", { class: "muted", text: `Vendor reply: ${r.reply.text}` }) : null);
    if (me.role === "vendor" && d.ip.startsWith(`${me.name}/`)) box.append(replyForm(d.ip, r.id));
    reviews.append(box);
  }
  if (me.role === "user") reviews.append(reviewForm(d.ip));
  parts.push(reviews);
  view.replaceChildren(...parts);
}

function tryIt(ip, v) {
  const input = el("textarea", { id: "try-input", placeholder: "Input (text), or choose a file below" });
  const file = el("input", { type: "file", id: "try-file" });
  const params = el("input", { id: "try-params", placeholder: "parameters as JSON, e.g. {\"width\": 10}", size: 40 });
  const out = el("div", { id: "try-result" });
  const run = async (ev) => {
    ev.preventDefault();
    out.replaceChildren(el("p", { class: "muted", text: "Running…" }));
    try {
      const deps = await apiAll("/v1/deployments");
      if (!deps.some(x => x.ip === ip)) await api("/v1/deployments", { method: "POST", json: { ip } });
      const body = file.files[0] ? await file.files[0].arrayBuffer() : new TextEncoder().encode(input.value);
      const q = params.value.trim() ? `?params=${encodeURIComponent(params.value.trim())}` : "";
      const r = await api(`/v1/invoke/${ipPath(ip)}${q}`, {
        method: "POST", body, headers: { "content-type": "application/octet-stream" }, raw: true,
      });
      const bytes = new Uint8Array(await r.arrayBuffer());
      const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes.slice(0, 64 * 1024));
      const printable = !/[\u0000-\u0008\u000e-\u001f]/.test(text);
      const hex = [...bytes.slice(0, 512)].map(b => b.toString(16).padStart(2, "0")).join(" ");
      out.replaceChildren(
        el("p", { id: "try-charge" },
          `${r.headers.get("accelhub-ip")}@${r.headers.get("accelhub-version")} on ${r.headers.get("accelhub-device")}: `,
          el("strong", { text: `charged ${r.headers.get("accelhub-price")}` }),
          `, ${bytes.length} bytes out, ${(Number(r.headers.get("accelhub-device-time-us")) / 1000).toFixed(3)} ms on the device`),
        el("pre", { id: "try-output", text: printable ? text : hex }));
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  };
  return el("section", { id: "try" }, el("h2", { text: "Try it" }),
    el("form", { onsubmit: run }, input, file, params, el("button", { type: "submit", id: "try-run", text: "Run" })),
    el("p", { class: "muted", text: `Runs ${ip}@${v.version} on your account (deploying it if needed) and bills the call.` }),
    out);
}

function reviewForm(ip) {
  const st = el("select", { id: "review-stars" }, [5, 4, 3, 2, 1].map(n => el("option", { value: n, text: `${n} stars` })));
  const text = el("input", { id: "review-text", placeholder: "Your review", size: 50 });
  const msg = el("div");
  return el("div", {}, el("h2", { text: "Your review" }), el("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api(`/v1/ips/${ipPath(ip)}/review`, { method: "PUT", json: { stars: Number(st.value), text: text.value } });
        route();
      } catch (e) { msg.replaceChildren(errorBox(e)); }
    },
  }, st, text, el("button", { type: "submit", text: "Rate" })), msg);
}

function replyForm(ip, id) {
  const text = el("input", { placeholder: "Reply", size: 40 });
  const msg = el("span");
  return el("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api(`/v1/ips/${ipPath(ip)}/reviews/${id}/reply`, { method: "POST", json: { text: text.value } });
        route();
      } catch (e) { msg.replaceChildren(errorBox(e)); }
    },
  }, text, el("button", { type: "submit", text: "Reply" }), msg);
}

function invoiceTable(inv) {
  return el("div", { class: "invoice" },
    el("table", {}, el("tr", {}, ["IP", "plan", "item", "quantity", "amount"].map((h, i) => el("th", { class: i > 2 ? "num" : "", text: h }))),
      inv.lines.map(l => el("tr", {}, el("td", { text: l.ip }), el("td", { text: l.plan }), el("td", { text: l.item }),
        el("td", { class: "num", text: l.quantity }), el("td", { class: "num", text: l.amount })))),
    el("p", {}, el("strong", { class: "invoice-total", text: `Total ${inv.total}` }),
      inv.view !== "user" ? ` · platform share ${(inv.platform_share_bps / 100).toFixed(2)}%: ${inv.platform_cut} · vendors' net ${inv.vendor_net}` : ""));
}

// Another month's invoice, in place.
function monthPicker(current) {
  const input = el("input", { type: "month", value: current });
  const box = el("div");
  return el("div", {}, el("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try { box.replaceChildren(invoiceTable(await api(`/v1/invoices?month=${encodeURIComponent(input.value)}`))); }
      catch (e) { box.replaceChildren(errorBox(e)); }
    },
  }, input, el("button", { type: "submit", class: "secondary", text: "Show month" })), box);
}

// Save one of a job's outputs: fetched with the token (a plain link would
// carry none), then handed to the browser as a file named after the job.
async function downloadOutput(job, output) {
  const r = await api(`/v1/jobs/${encodeURIComponent(job)}/outputs/${encodeURIComponent(output.name)}`, { raw: true });
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: `${job}.${output.name}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function dashboard() {
  const [deps, jobs, usage, inv, limit] = await Promise.all([
    apiAll("/v1/deployments"), api("/v1/jobs"), api("/v1/usage"), api("/v1/invoices"), api("/v1/account/spending-limit"),
  ]);
  const limitInput = el("input", { id: "limit", placeholder: "e.g. 25.00 (empty: none)", value: limit.monthly || "" });
  const month = inv.month;
  view.replaceChildren(
    el("h1", { text: "Dashboard" }),
    el("section", {}, el("h2", { text: "Deployments" }),
      el("table", {}, el("tr", {}, ["IP", "version", "devices", "replicas", "price per call"].map(h => el("th", { text: h }))),
        deps.map(d => el("tr", {}, el("td", {}, el("a", { href: `#/ip/${ipPath(d.ip)}`, text: d.ip })), el("td", { text: d.version }),
          el("td", { text: d.devices.join(", ") }), el("td", { text: d.replicas }), el("td", { text: d.price_per_call }))))),
    el("section", { id: "jobs" }, el("h2", { text: "Jobs" }),
      el("table", {}, el("tr", {}, ["job", "IP", "state", "progress", "outputs"].map(h => el("th", { text: h }))),
        jobs.map(j => el("tr", {}, el("td", { text: j.id }), el("td", { text: j.ip }), el("td", { text: j.state }),
          el("td", {}, progressBar(j.progress || 0),
            ` ${Math.round((j.progress || 0) * 100)}%${j.items ? ` (${j.items} ${j.unit || ""})` : ""}`),
          el("td", { class: "outputs" }, (j.outputs || []).map(o => el("button", {
            class: "secondary output", title: `${o.key}, ${o.size} bytes`, text: o.name,
            onclick: () => downloadOutput(j.id, o).catch(e => view.prepend(errorBox(e))),
          }))))))),
    el("section", {}, el("h2", { text: `Spend per day, ${month}` }),
      barChart(perDay(usage.records.filter(r => r.billed && r.created_at.startsWith(month)), r => Number(r.price)), "")),
    el("section", { id: "invoice" }, el("h2", { text: `Invoice ${month}` }), invoiceTable(inv), monthPicker(month)),
    el("section", {}, el("h2", { text: "Monthly spending limit" }), el("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const v = limitInput.value.trim();
        try { await api("/v1/account/spending-limit", { method: "PUT", json: { monthly: v || null } }); route(); }
        catch (e) { view.prepend(errorBox(e)); }
      },
    }, limitInput, el("button", { type: "submit", text: "Save" }))));
  if (jobs.some(j => j.state === "queued" || j.state === "running")) setTimeout(() => location.hash === "#/dashboard" && route(), 2000);
}

async function vendorPortal() {
  const [entries, usage, inv] = await Promise.all([
    apiAll(`/v1/ips?vendor=${encodeURIComponent(me.name)}&sort=name`), api("/v1/usage"), api("/v1/invoices"),
  ]);
  const reviews = (await Promise.all(entries.map(e => apiAll(`/v1/ips/${ipPath(e.ip)}/reviews`)))).flat();
  const file = el("input", { type: "file", id: "package", accept: ".tar,application/x-tar" });
  const msg = el("div", { id: "publish-result" });
  view.replaceChildren(
    el("h1", { text: "Vendor portal" }),
    el("section", { id: "my-ips" }, el("h2", { text: "Your IPs" }),
      el("table", {}, el("tr", {}, ["IP", "latest", "status", "uses", "rating"].map(h => el("th", { text: h }))),
        entries.map(e => el("tr", {}, el("td", {}, el("a", { href: `#/ip/${ipPath(e.ip)}`, text: e.ip })),
          el("td", { text: e.latest.version }), el("td", { text: e.latest.status }),
          el("td", { class: "num uses", text: e.stats.uses }), el("td", { text: stars(e.stats.rating.average) }))))),
    el("section", {}, el("h2", { text: "Publish a version" }),
      el("p", { class: "muted", text: "A tar archive of the package: ip.toml and the files it names (accelhub ip publish DIR builds one)." }),
      el("form", {
        onsubmit: async (ev) => {
          ev.preventDefault();
          if (!file.files[0]) return;
          try {
            const v = await api("/v1/ips", { method: "POST", body: await file.files[0].arrayBuffer(), headers: { "content-type": "application/x-tar" } });
            msg.replaceChildren(el("p", {}, `Published ${v.ip}@${v.version}: ${v.status}; `, el("a", { href: `#/ip/${ipPath(v.ip)}`, text: "see its verification" })));
          } catch (e) { msg.replaceChildren(errorBox(e)); }
        },
      }, file, el("button", { type: "submit", id: "publish", text: "Publish" })), msg),
    el("section", {}, el("h2", { text: `Revenue per day, ${inv.month}` }),
      barChart(perDay(usage.records.filter(r => r.billed && r.created_at.startsWith(inv.month)), r => Number(r.price)), "")),
    el("section", { id: "statement" }, el("h2", { text: `Statement ${inv.month} (to date)` }), invoiceTable(inv)),
    el("section", { id: "vendor-reviews" }, el("h2", { text: `Reviews of your IPs (${reviews.length})` }),
      reviews.map(r => el("div", { class: "review" },
        el("p", {}, el("strong", { text: r.ip }), " ", el("span", { class: "stars", text: "★".repeat(r.stars) + "☆".repeat(5 - r.stars) }),
          ` ${r.author}: `, r.text),
        r.reply ? el("p", { class: "muted", text: `Your reply: ${r.reply.text}` }) : replyForm(r.ip, r.id)))));
}

async function operatorView() {
  const [accounts, nodes, inv] = await Promise.all([apiAll("/v1/accounts"), apiAll("/v1/fleet"), api("/v1/invoices")]);
  const name = el("input", { placeholder: "name" });
  const role = el("select", {}, ["user", "vendor"].map(r => el("option", { value: r, text: r })));
  const msg = el("div");
  view.replaceChildren(
    el("h1", { text: "Operator" }),
    el("section", { id: "platform" }, el("h2", { text: `Platform ${inv.month}` }), invoiceTable(inv)),
    el("section", { id: "fleet" }, el("h2", { text: "Fleet" }),
      nodes.map(n => el("div", {}, el("strong", { text: `${n.name} (${n.health})` }),
        el("table", {}, n.devices.map(d => el("tr", {}, el("td", { text: d.class }),
          el("td", { text: `${d.busy}/${d.slots} busy` }),
          el("td", { text: (d.hardware || []).map(h => `${h.name} (${h.vendor})`).join("; ") }),
          el("td", { text: d.loaded.join(", ") }))))))),
    el("section", { id: "accounts" }, el("h2", { text: "Accounts" }),
      el("table", {}, accounts.map(a => el("tr", {}, el("td", { text: a.name }), el("td", { text: a.role }), el("td", { text: a.created_at.slice(0, 10) })))),
      el("form", {
        onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            const c = await api("/v1/accounts", { method: "POST", json: { name: name.value, role: role.value } });
            msg.replaceChildren(el("p", {}, `Created ${c.account.name}; its token (shown once): `, el("code", { text: c.token })));
          } catch (e) { msg.replaceChildren(errorBox(e)); }
        },
      }, name, role, el("button", { type: "submit", text: "Create account" })), msg));
}

// ---- Routing ---------------------------------------------------------------

async function route() {
  if (!me) return;
  const hash = location.hash.slice(1) || "/market";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#${path}`);
  try {
    if (path.startsWith("/ip/")) await ipPage(path.slice(4).split("/").map(decodeURIComponent).join("/"));
    else if (path === "/dashboard") await dashboard();
    else if (path === "/vendor") await vendorPortal();
    else if (path === "/operator") await operatorView();
    else await market(params);
  } catch (e) {
    if (e.status === 401) return signIn(e);
    view.replaceChildren(errorBox(e));
  }
}

window.addEventListener("hashchange", route);
start();
