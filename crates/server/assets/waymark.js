// Waymark's one script: live updates. Every page works without it.
//
// A page whose <body> has data-live follows the event stream
// (/api/v1/events, the session cookie signs it in); after events arrive it
// fetches the page again and swaps each element marked data-live (by its id)
// for its new version, leaving forms being typed into alone.
(function () {
  "use strict";
  if (!document.body || !document.body.hasAttribute("data-live") || !window.EventSource) {
    return;
  }
  var timer = null;
  function busy(el) {
    var a = document.activeElement;
    return a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }
  function refresh() {
    timer = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var next = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = next.getElementById(el.id);
          if (fresh && !busy(el) && fresh.innerHTML !== el.innerHTML) {
            el.innerHTML = fresh.innerHTML;
          }
        });
      })
      .catch(function () {});
  }
  var stream = new EventSource("/api/v1/events");
  stream.onmessage = schedule;
  stream.addEventListener("error", function () {}, false);
  // Named events (the event type) do not reach onmessage: listen to them all.
  var types = (document.body.getAttribute("data-live") || "").split(",");
  types.forEach(function (t) { if (t) { stream.addEventListener(t.trim(), schedule); } });
  function schedule() {
    if (timer === null) { timer = window.setTimeout(refresh, 400); }
  }
})();
