// Waymark's one script. Every page works without it; it adds two things.
(function () {
  "use strict";

  // 1. Conditional sections of a generated form (fieldset.conditional with
  // data-when-pointer and data-when-value): shown while their condition holds,
  // or while they hold a value or an error; the note beside them says when
  // they apply, so without script they simply stay visible.
  document.querySelectorAll("fieldset.conditional[data-when-pointer]").forEach(function (fs) {
    var form = fs.closest("form");
    if (!form) { return; }
    var name = "f:" + fs.getAttribute("data-when-pointer");
    var want = fs.getAttribute("data-when-value");
    function control() {
      var found = null;
      form.querySelectorAll("select, input, textarea").forEach(function (el) {
        if (el.name === name && el.type !== "hidden") { found = el; }
      });
      return found;
    }
    function filled() {
      if (fs.querySelector(".field-error")) { return true; }
      var any = false;
      fs.querySelectorAll("input, select, textarea").forEach(function (el) {
        if (el.type === "hidden" || el.type === "checkbox" || el.type === "submit") { return; }
        if (el.value && el.value.trim() !== "") { any = true; }
      });
      return any;
    }
    function update() {
      var el = control();
      var holds = el && el.value === want;
      fs.hidden = !(holds || filled());
    }
    form.addEventListener("change", update);
    update();
  });

  // 2. Live updates. A page whose <body> has data-live (a comma-separated list
  // of event types) follows the event stream (/api/v1/events, signed in by
  // the session cookie); after such events arrive it fetches the page again
  // and swaps each element marked data-live (by its id) for its new version,
  // leaving alone any part whose form is being typed into.
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
  function schedule() {
    if (timer === null) { timer = window.setTimeout(refresh, 400); }
  }
  // One stream while the page is shown. Browsers allow few connections per
  // host over HTTP/1.1, so a page left (or kept in the back-forward cache) or
  // hidden in a background tab gives its stream back; shown again, it
  // reconnects and refreshes once for what it missed.
  var stream = null;
  var types = (document.body.getAttribute("data-live") || "").split(",");
  function open() {
    if (stream) { return; }
    stream = new EventSource("/api/v1/events");
    // Named events (the event type) do not reach onmessage: listen to each.
    types.forEach(function (t) {
      if (t.trim()) { stream.addEventListener(t.trim(), schedule); }
    });
  }
  function close() {
    if (stream) { stream.close(); stream = null; }
  }
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) { open(); schedule(); }
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { close(); } else { open(); schedule(); }
  });
  open();
})();
