// eai-hub dashboard: polls the admin API with the token the operator typed in.
// The token lives in sessionStorage only (this tab); it is sent in the Authorization header,
// never in a URL, never written to the console. Every value from the API is rendered with
// textContent (never as HTML): dead-letter reasons carry data from outside.
"use strict";

(() => {
  const TOKEN_KEY = "eai-hub.token";
  const WINDOW_MS = 10000; // throughput = consumed delta over about this long
  const SPARK_POINTS = 60;
  const DL_SHOWN = 10;
  // Parked orders (sync issue): set to the route's path, e.g. "orders/parked?limit=1", once it
  // exists and answers a page with `total`; until then the card says n/a.
  const PARKED_PATH = "parked?limit=1";
  const params = new URLSearchParams(window.location.search);
  const refreshS = Math.min(60, Math.max(0.5, Number(params.get("refresh")) || 2));
  const INTERVAL_MS = refreshS * 1000;

  const $ = (id) => document.getElementById(id);
  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const rateFmt = (r) => (r === null ? "–" : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString("en-US"));

  let timer = null;
  let busy = false;
  let samples = []; // [{t, flows: {name: consumed}}]
  let spark = [];
  // false once the route answered 404: the hub has no such route, stop asking
  const optional = { review: true, approvals: true, parked: PARKED_PATH !== null };

  class HttpError extends Error {
    constructor(status, detail) {
      super(`HTTP ${status}${detail ? ": " + detail : ""}`);
      this.status = status;
    }
  }

  function token() {
    return window.sessionStorage.getItem(TOKEN_KEY);
  }

  // Relative paths: they resolve against the page, so a hub behind a path prefix works too.
  async function api(path, options = {}) {
    const headers = { Accept: "application/json", Authorization: "Bearer " + token() };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
    if (resp.status === 401) {
      signOut("The token was rejected (revoked or unknown) · 令牌无效，请重新登录");
      throw new HttpError(401);
    }
    if (!resp.ok) {
      let detail = "";
      try {
        const body = await resp.json();
        detail = typeof body.detail === "string" ? body.detail : "";
      } catch (e) {
        detail = "";
      }
      throw new HttpError(resp.status, detail);
    }
    const type = resp.headers.get("content-type") || "";
    return type.includes("json") ? resp.json() : resp.text();
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setError(id, err) {
    $(id).textContent = err ? "⚠ " + (err.message || String(err)) : "";
  }

  // --- flows and throughput ---------------------------------------------------------------

  function rates(now, flows) {
    const current = {};
    for (const f of flows) current[f.name] = f.consumed;
    const reset = samples.some((s) => Object.keys(current).some((k) => (s.flows[k] ?? 0) > current[k]));
    if (reset) samples = []; // a counter went down: the hub restarted
    samples.push({ t: now, flows: current });
    while (samples.length > 2 && now - samples[1].t >= WINDOW_MS) samples.shift();
    const out = {};
    const first = samples[0];
    const dt = (now - first.t) / 1000;
    for (const name of Object.keys(current)) {
      out[name] = dt > 0 && name in first.flows ? (current[name] - first.flows[name]) / dt : null;
    }
    return out;
  }

  function renderFlows(flows) {
    const now = performance.now();
    const perFlow = rates(now, flows);
    const body = $("flows-body");
    body.replaceChildren();
    let consumed = 0;
    let total = null;
    for (const f of flows) {
      consumed += f.consumed;
      if (perFlow[f.name] !== null) total = (total || 0) + perFlow[f.name];
      const tr = el("tr");
      tr.dataset.testid = "flow-" + f.name;
      tr.id = "flow-" + f.name;
      const name = el("td", f.name, "name");
      name.title = (f.topics || []).join(", ");
      tr.append(name);
      for (const key of ["consumed", "applied", "duplicates", "dead_lettered", "retries"]) {
        const td = el("td", fmt(f[key]), "num");
        td.dataset.testid = `flow-${f.name}-${key}`;
        if (key === "dead_lettered" && f[key] > 0) td.classList.add("warn");
        tr.append(td);
      }
      const rate = el("td", rateFmt(perFlow[f.name]), "num");
      rate.dataset.testid = `flow-${f.name}-rate`;
      tr.append(rate);
      const last = el("td", f.last_error || "", "reason");
      last.title = f.last_error || "";
      tr.append(last);
      body.append(tr);
    }
    $("card-consumed").textContent = fmt(consumed);
    $("card-throughput").textContent = rateFmt(total);
    if (total !== null) {
      spark.push(total);
      if (spark.length > SPARK_POINTS) spark.shift();
      drawSpark();
    }
  }

  function drawSpark() {
    if (spark.length < 2) return;
    const max = Math.max(1, ...spark);
    const step = 120 / (SPARK_POINTS - 1);
    const offset = SPARK_POINTS - spark.length;
    const pts = spark.map((v, i) => `${((offset + i) * step).toFixed(1)},${(27 - (v / max) * 25).toFixed(1)}`);
    $("spark-line").setAttribute("points", pts.join(" "));
  }

  // --- topics and lag ------------------------------------------------------------------------

  function renderTopics(parts) {
    const byTopic = new Map();
    for (const p of parts) {
      const t = byTopic.get(p.topic) || { topic: p.topic, partitions: 0, end: 0, flows: new Set(), lag: null };
      t.partitions += 1;
      t.end += p.end_offset;
      if (p.flow) t.flows.add(p.flow);
      if (p.lag !== null && p.lag !== undefined) t.lag = (t.lag || 0) + p.lag;
      byTopic.set(p.topic, t);
    }
    const all = $("topics-all").checked;
    const rows = [...byTopic.values()]
      .filter((t) => all || t.end > 0 || t.lag)
      .sort((a, b) => (b.lag || 0) - (a.lag || 0) || a.topic.localeCompare(b.topic));
    let lag = 0;
    for (const t of byTopic.values()) lag += t.lag || 0;
    $("card-lag").textContent = fmt(lag);
    const body = $("topics-body");
    body.replaceChildren();
    for (const t of rows) {
      const tr = el("tr");
      tr.dataset.testid = "topic-" + t.topic;
      tr.append(el("td", t.topic, "name"));
      tr.append(el("td", t.partitions, "num"));
      tr.append(el("td", fmt(t.end), "num"));
      tr.append(el("td", [...t.flows].sort().join(", ") || "—"));
      const lagCell = el("td", t.lag === null ? "—" : fmt(t.lag), "num");
      lagCell.dataset.testid = `topic-${t.topic}-lag`;
      if (t.lag > 0) lagCell.classList.add("warn");
      tr.append(lagCell);
      body.append(tr);
    }
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "No messages yet · 暂无消息", "empty");
      td.colSpan = 5;
      tr.append(td);
      body.append(tr);
    }
  }

  // --- dead letters --------------------------------------------------------------------------

  function metricValue(text, name) {
    for (const line of text.split("\n")) {
      if (line.startsWith(name + " ")) return Number(line.slice(name.length + 1));
    }
    return null;
  }

  // As hub.redrive.is_topic: only a dead letter from a Kafka topic can be re-driven.
  function isTopic(name) {
    return /^[A-Za-z0-9._-]{1,249}$/.test(name) && name !== "." && name !== "..";
  }

  function renderDeadLetters(page, openCount) {
    const count = openCount !== null ? fmt(openCount) : page.items.length + (page.next_before ? "+" : "");
    $("card-dead-letters").textContent = count;
    $("card-dl").classList.toggle("alert", (openCount ?? page.items.length) > 0);
    const body = $("dl-body");
    body.replaceChildren();
    for (const d of page.items) {
      const tr = el("tr");
      tr.dataset.testid = "dl-" + d.id;
      tr.id = "dl-" + d.id;
      tr.append(el("td", d.id, "num"));
      const when = new Date(d.last_failure_at);
      const whenCell = el("td", isNaN(when) ? d.last_failure_at : when.toLocaleString("sv-SE"));
      tr.append(whenCell);
      tr.append(el("td", d.flow));
      tr.append(el("td", d.stage));
      tr.append(el("td", d.topic, "name"));
      const reason = el("td", d.reason, "reason");
      reason.title = d.reason;
      tr.append(reason);
      tr.append(el("td", d.attempts, "num"));
      const cell = el("td");
      const btn = el("button", "Re-drive · 重新投递", "redrive");
      btn.type = "button";
      btn.dataset.testid = "redrive-" + d.id;
      if (isTopic(d.topic)) {
        btn.addEventListener("click", () => redrive(d.id, btn));
      } else {
        btn.disabled = true; // the hub would refuse it: say why instead
        btn.title =
          "Its origin is not a Kafka topic (a rejected webhook or polled record): send the " +
          "corrected record to the connector again · 来源不是 Kafka 主题，请向连接器重新提交更正后的记录";
      }
      cell.append(btn);
      tr.append(cell);
      body.append(tr);
    }
    $("dl-empty").hidden = page.items.length > 0;
  }

  async function redrive(id, btn) {
    btn.disabled = true;
    const out = $("redrive-result");
    out.className = "result";
    out.textContent = `Re-driving #${id} … · 正在重新投递`;
    try {
      const res = await api("dead-letters/redrive", { method: "POST", body: { ids: [id] } });
      const item = (res.items || [])[0] || {};
      const ok = item.outcome === "sent";
      out.classList.add(ok ? "ok" : "bad");
      out.dataset.outcome = item.outcome || "";
      out.textContent = ok
        ? `#${id}: sent to ${item.topic} · 已重新投递`
        : `#${id}: ${item.outcome || "?"}${item.reason ? " — " + item.reason : ""}` +
          (item.validation && item.validation !== "ok" ? ` (${item.validation})` : "");
    } catch (err) {
      out.classList.add("bad");
      out.dataset.outcome = "error";
      out.textContent =
        err.status === 403
          ? `#${id}: the operator role is required · 需要 operator 权限`
          : `#${id}: ${err.message}`;
    } finally {
      btn.disabled = false;
      refresh();
    }
  }

  // --- optional panels ------------------------------------------------------------------------

  async function optionalTotal(which, path, cardId) {
    if (!optional[which]) return;
    try {
      const page = await api(path);
      $(cardId).textContent = fmt(page.total);
      $(cardId).classList.remove("na");
      return page.total;
    } catch (err) {
      if (err.status === 404 || err.status === 405) {
        optional[which] = false; // the hub has no such route (yet): stop asking
        $(cardId).textContent = "n/a";
        $(cardId).classList.add("na");
        $(cardId).title = "this hub has no such API route";
      } else if (err.status !== 401) {
        $(cardId).textContent = "⚠";
        $(cardId).title = err.message;
      }
      return null;
    }
  }

  // --- the loop -------------------------------------------------------------------------------

  async function refresh() {
    if (!token() || busy) return;
    busy = true;
    try {
      const [flows, parts, dl, prom] = await Promise.allSettled([
        api("flows"),
        api("topics"),
        api(`dead-letters?status=new&limit=${DL_SHOWN}`),
        api("metrics"),
        optionalTotal("review", "review?limit=1", "card-review"),
        optionalTotal("parked", PARKED_PATH, "card-parked"),
        optionalTotal("approvals", "approvals?overdue=true&limit=1", "card-overdue").then((n) => {
          $("card-ov").classList.toggle("alert", (n || 0) > 0);
        }),
      ]);
      if (!token()) return; // signed out by a 401 meanwhile
      if (flows.status === "fulfilled") renderFlows(flows.value);
      setError("flows-error", flows.reason);
      if (parts.status === "fulfilled") renderTopics(parts.value);
      setError("topics-error", parts.reason);
      if (dl.status === "fulfilled") {
        const open = prom.status === "fulfilled" ? metricValue(prom.value, "eai_dead_letters_open") : null;
        renderDeadLetters(dl.value, open);
      }
      setError("dl-error", dl.reason);
      const failed = [flows, parts, dl].some((r) => r.status === "rejected");
      $("status").textContent =
        `${failed ? "⚠ partly failed · 部分失败" : "live · 实时"} — updated ` +
        `${new Date().toLocaleTimeString("sv-SE")} · every ${refreshS} s`;
      $("status").classList.toggle("bad", failed);
    } finally {
      busy = false;
    }
  }

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    samples = [];
    spark = [];
    refresh();
    if (timer === null) {
      timer = window.setInterval(() => {
        if (document.visibilityState !== "hidden") refresh();
      }, INTERVAL_MS);
    }
  }

  function signOut(message) {
    window.sessionStorage.removeItem(TOKEN_KEY);
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    for (const id of ["flows-body", "topics-body", "dl-body"]) $(id).replaceChildren();
    $("redrive-result").textContent = "";
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("status").textContent = "signed out · 未登录";
    $("status").classList.remove("bad");
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    window.sessionStorage.setItem(TOKEN_KEY, value);
    $("login-error").textContent = "";
    try {
      await api("flows"); // checks the token before showing anything
      start();
    } catch (err) {
      if (err.status !== 401) {
        window.sessionStorage.removeItem(TOKEN_KEY);
        $("login-error").textContent = `The hub answered ${err.message} · 无法连接`;
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", signIn);
    $("logout").addEventListener("click", () => signOut(""));
    $("topics-all").addEventListener("change", refresh);
    if (token()) start();
    else $("token").focus();
  });
})();
