// The market page: live job board, workers and the last hour's charts. Everything comes from
// this relay (same origin): its NIP-11 document, its websocket (jobs, feedback, results and
// heartbeats as they arrive; no polling loop) and its HTTP API (/api/jobs for the board's first
// rows, /api/workers, /api/series). Every event is a stranger's: text goes in with textContent
// only, and what the page keeps is bounded (MAX_JOBS rows).
"use strict";

(function () {
  const MAX_JOBS = 200;
  const FEEDBACK_BACKFILL = 500;
  const HOUR = 3600;

  const $ = (id) => document.getElementById(id);
  const now = () => Math.floor(Date.now() / 1000);

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const Market = (window.Market = {
    relayURL: scheme + "//" + location.host + "/",
    info: null,
  });

  // ---- helpers -------------------------------------------------------------------------
  const isHex64 = (s) => typeof s === "string" && /^[0-9a-f]{64}$/.test(s);
  // a pubkey as people read it: npub (when the page's Nostr bundle is there), shortened
  const short = (pk) => {
    if (typeof pk !== "string" || !pk) return "";
    if (isHex64(pk) && window.SCNostr && window.SCNostr.nip19) {
      const npub = window.SCNostr.nip19.npubEncode(pk);
      return npub.slice(0, 12) + "…" + npub.slice(-4);
    }
    return pk.length > 12 ? pk.slice(0, 8) + "…" + pk.slice(-4) : pk;
  };
  const tag = (evt, name) => {
    for (const t of evt.tags || []) if (Array.isArray(t) && t[0] === name) return t;
    return null;
  };
  const tagValue = (evt, name) => {
    const t = tag(evt, name);
    return t && typeof t[1] === "string" ? t[1] : "";
  };
  const int = (s) => {
    const n = Number.parseInt(s, 10);
    return Number.isFinite(n) ? n : null;
  };
  const sats = (msat) => {
    if (msat == null) return "";
    // to the msat below 100 sats (what a wallet shows for a small payment), whole sats above
    const s = msat / 1000;
    return s.toLocaleString("en-US", { maximumFractionDigits: s >= 100 ? 0 : 3 }) + (s === 1 ? " sat" : " sats");
  };
  const seconds = (s) => {
    if (s == null || s < 0) return "";
    if (s < 90) return s + " s";
    if (s < 5400) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  };
  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const cell = (cls, text, title) => {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    if (title) td.title = title;
    return td;
  };
  const debounce = (fn, ms) => {
    let timer = null;
    return () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        fn();
      }, ms);
    };
  };
  const getJSON = async (path) => {
    const res = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  };

  // ---- NIP-11 ----------------------------------------------------------------------------
  async function loadInfo() {
    const res = await fetch("/", { headers: { Accept: "application/nostr+json" }, cache: "no-store" });
    if (!res.ok) throw new Error("NIP-11: HTTP " + res.status);
    const info = await res.json();
    Market.info = info;
    if (info.description) $("market-about").textContent = info.description;
    document.dispatchEvent(new CustomEvent("market:info", { detail: info }));
    return info;
  }

  // ---- the job board ---------------------------------------------------------------------
  // jobs: id -> {id, kind, createdAt, customer, bid, parts (inputs), quotes: pubkey -> {msat, escrow},
  //              holder, stage, part, resultAt, resultBy, error, expiration, row}
  const jobs = new Map();
  const order = []; // ids, oldest first (bounded)

  function job(id) {
    return jobs.get(id);
  }

  function addJob(j) {
    if (jobs.has(j.id)) return jobs.get(j.id);
    jobs.set(j.id, j);
    order.push(j.id);
    order.sort((a, b) => jobs.get(a).createdAt - jobs.get(b).createdAt);
    while (order.length > MAX_JOBS) {
      const old = jobs.get(order.shift());
      jobs.delete(old.id);
      if (old.row) old.row.remove();
    }
    return j;
  }

  function fromRequest(evt) {
    const j = addJob({ id: evt.id, kind: evt.kind, createdAt: evt.created_at, customer: evt.pubkey, quotes: new Map(), stage: "posted" });
    j.kind = evt.kind;
    j.createdAt = evt.created_at;
    const bid = int(tagValue(evt, "bid"));
    if (bid != null) j.bid = bid;
    j.parts = (evt.tags || []).filter((t) => Array.isArray(t) && t[0] === "i").length;
    const exp = int(tagValue(evt, "expiration"));
    if (exp) j.expiration = exp;
    render(j);
  }

  function fromFeedback(evt) {
    const id = tagValue(evt, "e");
    const j = job(id);
    if (!j) return;
    const status = tagValue(evt, "status");
    const part = tag(evt, "part");
    switch (status) {
      case "payment-required": {
        const amount = int(tagValue(evt, "amount"));
        if (amount != null) {
          // a stream quotes each part: the worker's price is the sum of its parts' quotes
          const q = j.quotes.get(evt.pubkey) || { msat: 0, parts: new Map() };
          q.escrow = !!tag(evt, "escrow");
          q.parts.set(part ? int(part[1]) || 0 : 0, amount);
          q.msat = 0;
          for (const v of q.parts.values()) q.msat += v;
          j.quotes.set(evt.pubkey, q);
        }
        if (j.stage === "posted" || j.stage === "error") j.stage = "quoted";
        break;
      }
      case "processing":
        if (!tag(evt, "lease") && j.holder && j.holder !== evt.pubkey) break;
        j.holder = evt.pubkey;
        const secs = int(tagValue(evt, "lease"));
        j.leaseUntil = secs ? evt.created_at + secs : 0;
        if (j.stage !== "done") {
          const q = j.quotes.get(evt.pubkey);
          j.stage = q && q.escrow ? "locked" : "processing";
        }
        break;
      case "partial":
        if (part && j.stage !== "done") {
          j.holder = j.holder || evt.pubkey;
          j.stage = "part";
          j.part = [int(part[1]), int(part[2])];
        }
        break;
      case "error":
        if (j.stage !== "done" && (!j.holder || j.holder === evt.pubkey)) {
          j.stage = "error";
          j.error = evt.content || tagValue(evt, "status");
          j.holder = "";
        }
        break;
    }
    render(j);
  }

  function fromResult(evt) {
    const j = job(tagValue(evt, "e"));
    if (!j || j.resultAt) return;
    // the relay takes a paid job's result only from a worker that leased it, so the first
    // result it relays is the job's
    j.stage = "done";
    j.resultBy = evt.pubkey;
    j.resultAt = evt.created_at;
    const amount = int(tagValue(evt, "amount"));
    if (amount != null && !j.quotes.has(evt.pubkey)) j.quotes.set(evt.pubkey, { msat: amount, parts: new Map() });
    render(j);
    refreshWorkers();
    refreshSeries();
  }

  function stageText(j) {
    if (j.stage === "part" && j.part) return "part " + j.part[0] + " of " + j.part[1];
    if (j.stage !== "done" && j.expiration && j.expiration <= now()) return "expired";
    // a lease that ran out with no result: the relay gives the job back to whoever quoted
    if ((j.stage === "processing" || j.stage === "locked" || j.stage === "part") && j.leaseUntil && j.leaseUntil < now()) return "quoted";
    return j.stage;
  }

  function price(j) {
    const by = j.resultBy || j.holder;
    if (by && j.quotes.has(by)) return j.quotes.get(by).msat;
    let low = null;
    for (const q of j.quotes.values()) if (low == null || q.msat < low) low = q.msat;
    return low;
  }

  function matches(j, filter) {
    const s = stageText(j);
    switch (filter) {
      case "active":
        return s !== "done" && s !== "error" && s !== "expired";
      case "done":
        return s === "done";
      case "failed":
        return s === "error" || s === "expired";
    }
    return true;
  }

  function render(j) {
    const body = $("jobs-body");
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    const s = stageText(j);
    j.shown = s;
    tr.dataset.stage = s.startsWith("part") ? "part" : s;
    const posted = cell("posted", clock(j.createdAt), j.id);
    tr.append(
      posted,
      cell("kind", String(j.kind)),
      cell("state", s, j.error ? j.error.slice(0, 200) : s === "locked" ? "escrow: the payment is locked, the worker is running" : ""),
      cell("price", sats(price(j))),
      cell("worker", short(j.resultBy || j.holder), j.resultBy || j.holder || ""),
      cell("took", j.resultAt ? seconds(j.resultAt - j.createdAt) : "")
    );
    tr.hidden = !matches(j, $("board-filter").value);
    if (j.row) {
      j.row.replaceWith(tr);
    } else {
      // newest first: above the row of the next older job that has one
      let before = null;
      for (let i = order.indexOf(j.id) - 1; i >= 0 && !before; i--) {
        const o = jobs.get(order[i]);
        if (o && o.row) before = o.row;
      }
      body.insertBefore(tr, before);
    }
    j.row = tr;
    $("jobs-empty").hidden = jobs.size > 0;
  }

  $("board-filter").addEventListener("change", () => {
    for (const j of jobs.values()) if (j.row) j.row.hidden = !matches(j, $("board-filter").value);
  });

  // The board's first rows come from the relay's job table (small JSON, not the requests, which
  // may carry inline images); prices come from the last hour's feedback.
  async function loadBoard() {
    const data = await getJSON("/api/jobs?limit=" + MAX_JOBS);
    const rows = (data.jobs || []).slice().reverse();
    for (const v of rows) {
      if (!isHex64(v.id)) continue;
      const j = addJob({ id: v.id, kind: v.kind, createdAt: v.created_at, customer: v.customer, quotes: new Map(), stage: "posted" });
      j.bid = v.bid_msat;
      j.expiration = v.expiration || 0;
      if (v.quotes > 0) j.stage = "quoted";
      if (v.holder) {
        j.holder = v.holder;
        j.leaseUntil = v.lease_until || 0;
        j.stage = "processing";
      }
      if (v.state === "done") {
        j.stage = "done";
        j.resultBy = v.result_by;
        j.resultAt = v.result_at || 0;
      }
      if (v.state === "expired") j.stage = "expired";
      render(j);
    }
  }

  // ---- the relay connection --------------------------------------------------------------
  // One websocket; subscriptions split so that no REQ names more kinds than the relay's
  // max_filter_values. Reconnects with a growing delay (capped), resubscribing from the last
  // event seen.
  let ws = null;
  let retry = 0;
  let lastSeen = 0;
  const backlog = new Map(); // subscription id -> stored events held until its EOSE

  function kindChunks(from, to, per) {
    const out = [];
    for (let k = from; k <= to; k += per) {
      const kinds = [];
      for (let i = k; i <= Math.min(to, k + per - 1); i++) kinds.push(i);
      out.push(kinds);
    }
    return out;
  }

  function subscriptions(since) {
    const per = Math.max(1, Math.min(1000, (Market.info && Market.info.connection_limits && Market.info.connection_limits.max_filter_values) || 1000));
    const list = [];
    // feedback and heartbeats: small events, so the last hour's are read back
    list.push(["fb", [{ kinds: [7000], since: since || now() - HOUR, limit: FEEDBACK_BACKFILL }, { kinds: [11998], since: now() }]]);
    // requests and results may carry inline images: only those since the board's first rows
    // were read (the job table gave the rest)
    const live = since || now() - 10;
    kindChunks(5000, 5999, per).forEach((kinds, i) => list.push(["rq" + i, [{ kinds, since: live }]]));
    kindChunks(6000, 6999, per).forEach((kinds, i) => list.push(["rs" + i, [{ kinds, since: live }]]));
    return list;
  }

  function setConn(text) {
    $("conn-status").textContent = text;
    document.body.dataset.conn = text;
  }

  function connect() {
    setConn(retry ? "reconnecting" : "connecting");
    const sock = new WebSocket(Market.relayURL);
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      opened = true;
      retry = 0;
      const since = lastSeen ? lastSeen - 60 : 0;
      for (const [id, filters] of subscriptions(since)) {
        backlog.set(id, []);
        sock.send(JSON.stringify(["REQ", id].concat(filters)));
      }
      setConn("live");
    };
    sock.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      if (!Array.isArray(msg)) return;
      if (msg[0] === "EVENT" && msg[2] && typeof msg[2] === "object") {
        // stored events come newest first: hold a subscription's until its EOSE and fold them
        // oldest first, as they happened (bounded by the REQ's limit)
        const held = backlog.get(msg[1]);
        if (held && held.length < FEEDBACK_BACKFILL * 2) held.push(msg[2]);
        else onEvent(msg[2]);
      } else if (msg[0] === "EOSE") {
        const held = backlog.get(msg[1]);
        backlog.delete(msg[1]);
        if (held) held.sort((a, b) => a.created_at - b.created_at).forEach(onEvent);
      } else if (msg[0] === "CLOSED") console.debug("subscription closed by the relay:", msg[1], msg[2]);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      retry = opened ? 1 : retry + 1;
      setConn("reconnecting");
      setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(retry, 6)));
    };
    sock.onerror = () => {}; // onclose follows; the page says "reconnecting"
  }

  function onEvent(evt) {
    if (!isHex64(evt.id) || !isHex64(evt.pubkey) || typeof evt.kind !== "number" || !Array.isArray(evt.tags)) return;
    if (typeof evt.created_at === "number") lastSeen = Math.max(lastSeen, Math.min(evt.created_at, now()));
    if (evt.kind >= 5000 && evt.kind <= 5999) fromRequest(evt);
    else if (evt.kind >= 6000 && evt.kind <= 6999) fromResult(evt);
    else if (evt.kind === 7000) fromFeedback(evt);
    else if (evt.kind === 11998) refreshWorkers();
  }

  // ---- workers ---------------------------------------------------------------------------
  function device(w) {
    const p = (w.heartbeat && w.heartbeat.provider) || "";
    if (/cuda/i.test(p)) return "CUDA";
    if (/cpu/i.test(p)) return "CPU";
    return p;
  }

  function priceText(w) {
    const ps = w.prices || [];
    if (!ps.length) return [""];
    const one = (p) => {
      let s = sats(p.base_msat);
      if (p.per_unit_msat) s += " + " + sats(p.per_unit_msat) + "/" + (p.unit || "unit");
      return s;
    };
    // the first model's price; every model's in the cell's title
    return [one(ps[0]), ps.map((p) => (p.model || "kind " + p.kind) + ": " + one(p)).join("\n")];
  }

  function status(w) {
    if (w.heartbeat && w.heartbeat.status && w.alive) return w.heartbeat.status;
    if (w.alive || w.connected) return "online";
    return "offline";
  }

  async function loadWorkers() {
    const data = await getJSON("/api/workers");
    const body = $("workers-body");
    const rows = [];
    for (const w of (data.workers || []).slice(0, 200)) {
      if (!isHex64(w.pubkey)) continue;
      const tr = document.createElement("tr");
      tr.dataset.worker = w.pubkey;
      const st = status(w);
      tr.dataset.status = st === "offline" ? "offline" : "online";
      const kinds = (w.kinds && w.kinds.length ? w.kinds : (w.heartbeat && w.heartbeat.kinds) || []).join(", ");
      tr.append(
        cell("name", w.name || short(w.pubkey), w.pubkey),
        cell("kinds", kinds),
        cell("price", ...priceText(w)),
        cell("device", device(w)),
        cell("rating", w.reviews ? "★ " + Number(w.rating || 0).toFixed(1) + " (" + w.reviews + ")" : "–", w.reviews ? "from " + w.reviews + " paid reviews" : "no paid reviews yet"),
        cell("status", st),
        cell("done", String((w.jobs && w.jobs.done_day) || 0))
      );
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("workers-empty").hidden = rows.length > 0;
  }
  const refreshWorkers = debounce(() => loadWorkers().catch(report), 5000); // at most one read per 5 s per page, however busy the relay

  // ---- charts ----------------------------------------------------------------------------
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0c8599", "#c2255c", "#5c940d"];

  // bars draws one or more stacked series (arrays of equal length, oldest first) as columns.
  function bars(svg, series, colors) {
    const n = series.length ? series[0].length : 0;
    const W = 240, H = 60;
    let top = 0;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const s of series) sum += s[i] || 0;
      top = Math.max(top, sum);
    }
    const nodes = [];
    const base = document.createElementNS(SVGNS, "line");
    base.setAttribute("x1", "0");
    base.setAttribute("x2", String(W));
    base.setAttribute("y1", String(H - 0.5));
    base.setAttribute("y2", String(H - 0.5));
    base.setAttribute("class", "axis");
    nodes.push(base);
    if (top > 0 && n > 0) {
      const w = W / n;
      for (let i = 0; i < n; i++) {
        let y = H;
        series.forEach((s, k) => {
          const v = s[i] || 0;
          if (v <= 0) return;
          const h = Math.max(1, (v / top) * (H - 4));
          y -= h;
          const r = document.createElementNS(SVGNS, "rect");
          r.setAttribute("x", (i * w + w * 0.1).toFixed(2));
          r.setAttribute("width", (w * 0.8).toFixed(2));
          r.setAttribute("y", y.toFixed(2));
          r.setAttribute("height", h.toFixed(2));
          r.setAttribute("fill", colors[k % colors.length]);
          const t = document.createElementNS(SVGNS, "title");
          t.textContent = (n - i - 1 === 0 ? "this minute" : n - i - 1 + " min ago") + ": " + (Math.round(v * 10) / 10);
          r.append(t);
          nodes.push(r);
        });
      }
    }
    svg.replaceChildren(...nodes);
  }

  function chart(id, series, colors, total, text) {
    const fig = $(id);
    bars(fig.querySelector("svg"), series, colors);
    fig.dataset.total = String(total);
    fig.querySelector(".value").textContent = text;
  }

  const nums = (a) => (Array.isArray(a) ? a.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : 0)) : []);
  const sum = (a) => a.reduce((x, y) => x + y, 0);

  async function loadSeries() {
    const s = await getJSON("/api/series?minutes=60");
    const posted = nums(s.posted);
    chart("chart-posted", [posted], [COLORS[0]], sum(posted), sum(posted) + " in the hour");

    const lat = nums(s.median_seconds_to_result);
    const known = (s.median_seconds_to_result || []).filter((v) => typeof v === "number").sort((a, b) => a - b);
    const med = known.length ? known[Math.floor((known.length - 1) / 2)] : null;
    chart("chart-latency", [lat], [COLORS[2]], med == null ? 0 : med, med == null ? "no results yet" : seconds(Math.round(med)) + " (median of the minutes)");

    const paid = nums(s.delivered_msat).map((m) => m / 1000);
    chart("chart-paid", [paid], [COLORS[4]], Math.round(sum(paid)), sats(sum(paid) * 1000) + " in the hour");

    const reasons = Object.keys(s.refused || {}).sort();
    const series = reasons.map((r) => nums(s.refused[r]));
    const total = sum(series.map(sum));
    chart("chart-refused", series, COLORS, total, total + " in the hour");
    const legend = reasons.map((r, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = COLORS[i % COLORS.length];
      li.append(sw, document.createTextNode(r + " " + sum(series[i])));
      return li;
    });
    $("refused-legend").replaceChildren(...legend);
  }
  const refreshSeries = debounce(() => loadSeries().catch(report), 5000);

  // ---- start -----------------------------------------------------------------------------
  function report(err) {
    console.debug(err); // a warning on the page, not an error in the console: the relay may be restarting
    setConn(ws && ws.readyState === 1 ? "live" : "reconnecting");
  }

  async function start() {
    try {
      await loadInfo();
    } catch (e) {
      report(e);
    }
    await Promise.all([loadBoard().catch(report), loadWorkers().catch(report), loadSeries().catch(report)]);
    connect();
    // the charts' minutes roll over even when nothing happens
    setInterval(() => {
      refreshSeries();
      // leases and expirations run out without an event: redraw the rows they change
      for (const j of jobs.values()) if (j.row && stageText(j) !== j.shown) render(j);
    }, 60000);
  }
  start();
})();
