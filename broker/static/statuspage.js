// The status page's script (broker/statuspage.py): static text, no data spliced in. It asks
// /api/status for the page of users it shows (with the page's own view, token and language),
// rebuilds the tables with textContent only, and fetches topology.svg when the brokers or
// links changed.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("config").textContent);
  var S = cfg.strings, size = cfg.page_size;
  var params = new URLSearchParams(location.search);
  var page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  var input = document.getElementById("q");
  var shape = null, timer = null, busy = false, again = false;
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function fill(s, v) { return s.replace(/\{(\w+)\}/g, function (_, k) { return v[k]; }); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function short(fp) { return fp.length > 12 ? fp.slice(0, 8) + "\u2026" + fp.slice(-4) : fp; }
  function cell(id, http, shown) {
    var code = el("code", shown || short(id)); code.title = id;
    if (/^https?:\/\//.test(http || "")) { var a = el("a"); a.href = http; a.appendChild(code); return a; }
    return code;
  }
  function query(extra) {
    var p = new URLSearchParams(location.search);
    p.delete("page");
    Object.keys(extra).forEach(function (k) {
      if (extra[k] === "" || extra[k] === null) p.delete(k); else p.set(k, extra[k]);
    });
    return p;
  }
  function usersAt(st) {
    if (st.users_at) return st.users_at;
    var c = {};
    (st.users || []).forEach(function (u) { c[u.broker] = (c[u.broker] || 0) + 1; });
    Object.keys(st.unlisted || {}).forEach(function (b) { c[b] = (c[b] || 0) + st.unlisted[b]; });
    return c;
  }
  function brokers(st, http) {
    var tb = document.querySelector("#brokers tbody"), count = usersAt(st), peers = {};
    (st.links || []).forEach(function (k) {
      (peers[k.a] = peers[k.a] || []).push([k.b, k.rtt_ms]);
      (peers[k.b] = peers[k.b] || []).push([k.a, k.rtt_ms]);
    });
    var rows = (st.brokers || []).slice().sort(function (x, y) {
      var kx = [x.id !== st.id, !x.alive, x.id], ky = [y.id !== st.id, !y.alive, y.id];
      for (var i = 0; i < 3; i++) { if (kx[i] < ky[i]) return -1; if (kx[i] > ky[i]) return 1; }
      return 0;
    });
    var out = document.createDocumentFragment();
    rows.forEach(function (b) {
      var tr = el("tr"), td = el("td", null, "nowrap");
      if (b.id === st.id) { td.appendChild(el("span", "\u2605", "me")); td.appendChild(document.createTextNode(" ")); }
      td.appendChild(cell(b.id, http[b.id]));
      if (b.name) { td.appendChild(el("br")); td.appendChild(el("small", b.name)); }
      tr.appendChild(td);
      var state = el("td"); state.appendChild(el("span", b.alive ? S.alive : S.down, b.alive ? "up" : "down"));
      tr.appendChild(state);
      tr.appendChild(el("td", fmt(count[b.id] || 0), "num"));
      var url = el("td", null, "url"), code = el("code", null, "url"), full = b.url || "";
      var cut = full.indexOf("#"), shown = el("span", cut >= 0 && full.length - cut > 9 ? full.slice(0, cut + 9) + "\u2026" : full);
      shown.title = full; code.appendChild(shown); url.appendChild(code); tr.appendChild(url);
      var links = el("td"), list = (peers[b.id] || []).sort();
      if (!list.length) links.textContent = "\u2014";
      else {
        var ul = el("ul", null, "links");
        list.forEach(function (p) {
          var li = el("li"); li.appendChild(cell(p[0], http[p[0]], p[0].slice(0, 8)));
          if (p[1] !== null && p[1] !== undefined) li.appendChild(document.createTextNode(" \u00b7 " + Number(p[1]).toFixed(2) + " ms"));
          ul.appendChild(li);
        });
        links.appendChild(ul);
      }
      tr.appendChild(links);
      out.appendChild(tr);
    });
    tb.replaceChildren(out);
  }
  function users(st, http) {
    var tb = document.querySelector("#users tbody"), out = document.createDocumentFragment();
    (st.users || []).forEach(function (u) {
      var tr = el("tr");
      tr.appendChild(el("td", u.name || "\u2014"));
      var fp = el("td"); fp.appendChild(el("code", u.fingerprint)); tr.appendChild(fp);
      var px = el("td"); px.appendChild(cell(u.broker, http[u.broker]));
      if (u.broker === st.id) { px.appendChild(document.createTextNode(" ")); px.appendChild(el("span", S.here, "me nowrap")); }
      tr.appendChild(px);
      tr.appendChild(el("td", Array.isArray(u.devices) ? String(u.devices.length) : "\u2014", "num"));
      out.appendChild(tr);
    });
    if (!st.q) {
      Object.keys(st.unlisted || {}).sort().forEach(function (b) {
        var tr = el("tr", null, "unlisted"), what = el("td", fill(S.unlisted, {n: fmt(st.unlisted[b])}));
        what.colSpan = 2; tr.appendChild(what);
        var px = el("td"); px.appendChild(cell(b, http[b])); tr.appendChild(px);
        tr.appendChild(el("td", "\u2014", "num"));
        out.appendChild(tr);
      });
    }
    if (!out.childNodes.length) {
      var tr = el("tr"), td = el("td", st.q ? S.nomatch : S.none); td.colSpan = 4;
      tr.appendChild(td); out.appendChild(tr);
    }
    tb.replaceChildren(out);
    var shown = (st.users || []).length, off = st.offset || 0, matched = st.users_matched || 0;
    var pages = Math.max(1, Math.ceil(matched / size));
    page = Math.min(page, pages);
    document.getElementById("range").textContent = fill(S.range, {
      first: fmt(shown ? off + 1 : 0), last: fmt(off + shown), matched: fmt(matched)});
    var links = document.querySelectorAll("#pager a, #pager span.off");
    [[links[0], page - 1], [links[links.length - 1], page + 1]].forEach(function (pair) {
      var node = pair[0], to = pair[1], on = to >= 1 && to <= pages;
      var n = el(on ? "a" : "span", node.textContent, on ? "" : "off");
      if (on) { n.href = "?" + query({page: String(to)}).toString(); n.dataset.page = String(to); }
      node.replaceWith(n);
    });
  }
  function counters(st) {
    var box = document.getElementById("counters-box"), c = st.counters || {};
    var keys = Object.keys(c);
    if (!keys.length) { box.replaceChildren(); return; }
    var table = el("table"); table.id = "counters";
    var cells = keys.map(function (k) { return [S[k] || k, fmt(c[k])]; });
    if (st.sessions !== undefined) cells.push([S.sessions, fmt(st.sessions)]);
    for (var i = 0; i < cells.length; i += 2) {
      var tr = el("tr");
      cells.slice(i, i + 2).forEach(function (p) { tr.appendChild(el("th", p[0])); tr.appendChild(el("td", p[1], "num")); });
      table.appendChild(tr);
    }
    var h = box.querySelector("h2");
    box.replaceChildren(h || el("h2", ""), table);
  }
  function meta(st) {
    var m = document.getElementById("meta"), alive = 0;
    (st.brokers || []).forEach(function (b) { if (b.alive) alive++; });
    var line = fill(S.meta, {alive: alive, brokers: (st.brokers || []).length,
      links: (st.links || []).length, users: fmt(st.users_total || 0)});
    if (st.view === "public") line += S.public;
    var last = m.lastChild;
    if (last && last.nodeType === 3) last.textContent = line; else m.appendChild(document.createTextNode(line));
  }
  function topology(st) {
    var sig = JSON.stringify([(st.brokers || []).map(function (b) { return [b.id, b.alive]; }),
      (st.links || []).map(function (k) { return [k.a, k.b, k.rtt_ms]; }), usersAt(st)]);
    if (sig === shape) return;
    var first = shape === null;
    shape = sig;
    if (first) return;  // the server drew this one
    fetch("topology.svg?" + query({}).toString(), {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (svg) {
      var doc = new DOMParser().parseFromString(svg, "image/svg+xml").documentElement;
      if (doc.nodeName === "svg") document.getElementById("topology").replaceChildren(document.importNode(doc, true));
    }).catch(function () {});
  }
  function problems(st) {
    var box = document.getElementById("problems-box");
    if (!Array.isArray(st.problems)) { box.replaceChildren(); return; }
    var node;
    if (!st.problems.length) {
      var alive = (st.brokers || []).filter(function (b) { return b.alive; }).length;
      node = el("p", alive < 4 ? fill(S.ok_few, {alive: alive}) : S.ok, "ok");
    } else {
      node = el("div", null, "problems");
      node.appendChild(el("b", fill(S.problems, {n: st.problems.length})));
      var ul = el("ul");
      st.problems.forEach(function (p) { ul.appendChild(el("li", String(p))); });
      node.appendChild(ul);
    }
    node.id = "problems";
    box.replaceChildren(node);
  }
  function apply(st) {
    var http = {};
    (st.brokers || []).forEach(function (b) { http[b.id] = b.http || ""; });
    meta(st); brokers(st, http); users(st, http); counters(st); topology(st);
    problems(st);
    document.body.dataset.updates = String(parseInt(document.body.dataset.updates, 10) + 1);
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var p = query({q: input.value.trim(), offset: String((page - 1) * size), limit: String(size)});
    fetch("api/status?" + p.toString(), {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(apply).catch(function (e) {
      document.getElementById("range").textContent = fill(S.stale, {why: String(e.message || e)});
    }).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  function go(to) {
    page = to;
    history.replaceState(null, "", "?" + query({q: input.value.trim(), page: page > 1 ? String(page) : ""}).toString());
    refresh();
  }
  document.getElementById("search").addEventListener("submit", function (e) { e.preventDefault(); go(1); });
  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(function () { go(1); }, 250); });
  document.getElementById("pager").addEventListener("click", function (e) {
    var a = e.target.closest("a[data-page]");
    if (a) { e.preventDefault(); go(parseInt(a.dataset.page, 10)); }
  });
  refresh();
  setInterval(refresh, cfg.refresh_s * 1000);
})();
