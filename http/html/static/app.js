// scanfleet UI: follows a task's live log. Any <pre data-log-src> gets the
// log's server-sent events appended; the stream closes at the task's end,
// and the task's status part refreshes itself through htmx.
(function () {
  "use strict";
  function fmt(ts) {
    var d = new Date(ts);
    return isNaN(d) ? "" : d.toISOString().replace("T", " ").slice(0, 19);
  }
  function follow(pre) {
    if (pre.dataset.following) return;
    pre.dataset.following = "1";
    var es = new EventSource(pre.dataset.logSrc);
    es.addEventListener("log", function (ev) {
      if (!document.body.contains(pre)) { es.close(); return; }
      var l = JSON.parse(ev.data);
      var line = document.createElement("span");
      line.className = "line";
      var ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = fmt(l.time);
      line.appendChild(ts);
      line.appendChild(document.createTextNode(" " + l.line));
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(line);
      pre.appendChild(document.createTextNode("\n"));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    es.addEventListener("end", function (ev) {
      es.close();
      pre.dataset.ended = JSON.parse(ev.data).status || "";
    });
    es.onerror = function () {
      if (!document.body.contains(pre)) es.close();
    };
  }
  function scan(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("pre[data-log-src]").forEach(follow);
    if (root.matches && root.matches("pre[data-log-src]")) follow(root);
  }
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (ev) { scan(ev.target); });
})();
