// Transcript browser. The filter state lives in the URL hash (e.g. #eval=goals&mode=covert&open=ID),
// so a view can be linked and a headless browser can be pointed at one. Text from transcripts is
// only ever inserted as textContent, never as HTML.
(function () {
  "use strict";
  var ROWS = JSON.parse(document.getElementById("transcript-data").textContent);
  var SHOWN_AT_MOST = 200;
  var selects = Array.prototype.slice.call(document.querySelectorAll("#t-filters select"));
  var body = document.getElementById("t-body");
  var status = document.getElementById("t-status");
  var detail = document.getElementById("t-detail");

  function key(row, field) {
    var v = row[field];
    return v === null || v === undefined ? "" : String(v);
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function readHash() {
    var state = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var i = part.indexOf("=");
      if (i > 0) state[decodeURIComponent(part.slice(0, i))] = decodeURIComponent(part.slice(i + 1));
    });
    return state;
  }

  function writeHash(state) {
    var parts = Object.keys(state).filter(function (k) { return state[k]; }).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(state[k]);
    });
    location.hash = parts.join("&");
  }

  function fillOptions() {
    selects.forEach(function (select) {
      var field = select.dataset.filter;
      var seen = {};
      ROWS.forEach(function (r) { seen[key(r, field)] = true; });
      var values = Object.keys(seen).filter(function (v) { return v !== ""; });
      values.sort(function (a, b) {
        var na = Number(a), nb = Number(b);
        return !isNaN(na) && !isNaN(nb) ? na - nb : a.localeCompare(b);
      });
      if (seen[""] && field === "mode") values.push("(none)");
      values.forEach(function (v) { select.appendChild(el("option", v)).value = v; });
    });
  }

  function matches(row, state) {
    return selects.every(function (select) {
      var field = select.dataset.filter;
      var want = state[field];
      if (!want) return true;
      return want === "(none)" ? key(row, field) === "" : key(row, field) === want;
    });
  }

  function table(obj) {
    var t = el("table");
    Object.keys(obj).forEach(function (k) {
      var tr = t.appendChild(el("tr"));
      tr.appendChild(el("th", k));
      var v = obj[k];
      tr.appendChild(el("td", typeof v === "string" ? v : JSON.stringify(v)));
    });
    return t;
  }

  function section(parent, title, content, cls) {
    var box = parent.appendChild(el("div", null, cls));
    box.appendChild(el("h4", title));
    box.appendChild(typeof content === "string" ? el("pre", content) : content);
  }

  function isConversation(v) {
    return Array.isArray(v) && v.length > 0 && v.every(function (m) { return m && typeof m === "object" && "role" in m; });
  }

  function conversation(messages) {
    return messages.map(function (m) {
      var content = typeof m.content === "string" ? m.content : JSON.stringify(m.content, null, 2);
      var rest = Object.keys(m).filter(function (k) { return k !== "role" && k !== "content"; });
      var extra = rest.length ? "\n" + JSON.stringify(rest.reduce(function (o, k) { o[k] = m[k]; return o; }, {}), null, 2) : "";
      return "[" + m.role + "]\n" + content + extra;
    }).join("\n\n");
  }

  function isEmpty(v) {
    return v === null || v === undefined || v === "" || (typeof v === "object" && Object.keys(v).length === 0);
  }

  // Fields this page does not know (new eval fields, agent traces) are shown generically: scalars in
  // the summary table, structures as their own pretty-printed sections.
  function showDetail(row) {
    detail.textContent = "";
    if (!row) { detail.hidden = true; return; }
    detail.hidden = false;
    detail.appendChild(el("h3", row.id));
    var summary = { kind: row.kind, run: row.run, checkpoint: row.checkpoint, step: row.step, eval: row.eval,
                    outcome: row.outcome, mode: row.mode };
    var structured = {};
    [row.meta || {}, row.extra || {}].forEach(function (fields) {
      Object.keys(fields).forEach(function (k) {
        var v = fields[k];
        if (v !== null && typeof v === "object") { if (!isEmpty(v)) structured[k] = v; } else { summary[k] = v; }
      });
    });
    detail.appendChild(table(summary));
    if (row.system_prompt) section(detail, "System prompt", row.system_prompt);
    if (isConversation(row.prompt)) section(detail, "Prompt", conversation(row.prompt));
    if (row.question) section(detail, row.kind === "training" ? "Task" : "Question", String(row.question));
    section(detail, "Reasoning (private)", row.reasoning || "(no reasoning)", "box-reasoning");
    section(detail, "Answer", row.answer || "(empty answer)", "box-answer");
    if (row.completion && row.completion !== row.answer) {
      var raw = el("details");
      raw.appendChild(el("summary", "raw completion"));
      raw.appendChild(el("pre", row.completion));
      detail.appendChild(raw);
    }
    var replies = row.replies || row.verdicts || {};  // "verdicts" in records written before the rename
    Object.keys(replies).forEach(function (view) {
      section(detail, "Judge reply (" + view + " view)", table(replies[view]));
    });
    var files = row.files || {};
    Object.keys(files).forEach(function (path) { section(detail, "File: " + path, files[path]); });
    Object.keys(structured).forEach(function (k) {
      var v = structured[k];
      section(detail, k, isConversation(v) ? conversation(v) : JSON.stringify(v, null, 2));
    });
  }

  function render() {
    var state = readHash();
    selects.forEach(function (s) { s.value = state[s.dataset.filter] || ""; });
    var hits = ROWS.filter(function (r) { return matches(r, state); });
    body.textContent = "";
    hits.slice(0, SHOWN_AT_MOST).forEach(function (r) {
      var tr = body.appendChild(el("tr", null, "t-row"));
      tr.dataset.id = r.id;
      if (r.id === state.open) tr.className += " selected";
      [r.kind, r.run, key(r, "step"), r.eval].forEach(function (v) { tr.appendChild(el("td", v)); });
      tr.appendChild(el("td", r.outcome, "verdict-" + r.outcome));
      tr.appendChild(el("td", r.mode || "", r.mode ? "verdict-" + r.mode : ""));
      tr.appendChild(el("td", key(r, "question"), "clip"));
      tr.appendChild(el("td", r.answer || "", "clip"));
      tr.addEventListener("click", function () { state.open = r.id; writeHash(state); });
    });
    status.dataset.matching = hits.length;
    status.dataset.shown = Math.min(hits.length, SHOWN_AT_MOST);
    status.textContent = hits.length + " of " + ROWS.length + " transcripts match" +
      (hits.length > SHOWN_AT_MOST ? "; showing the first " + SHOWN_AT_MOST + " (narrow the filters)" : "");
    showDetail(state.open ? ROWS.filter(function (r) { return r.id === state.open; })[0] : null);
  }

  fillOptions();
  selects.forEach(function (select) {
    select.addEventListener("change", function () {
      var state = {};
      selects.forEach(function (s) { state[s.dataset.filter] = s.value; });
      writeHash(state);
    });
  });
  document.getElementById("t-reset").addEventListener("click", function () { writeHash({}); });
  window.addEventListener("hashchange", render);
  render();

  // Lets a headless check see that every inlined figure really decoded.
  window.addEventListener("load", function () {
    var imgs = document.querySelectorAll("img.figure");
    var ok = Array.prototype.filter.call(imgs, function (i) { return i.complete && i.naturalWidth > 0; });
    document.body.dataset.figures = imgs.length;
    document.body.dataset.figuresDecoded = ok.length;
  });
})();
