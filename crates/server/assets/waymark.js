// Waymark's one script. Every page works without it; it adds three things.
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

  // 2. A conversation's reply as it is written. A form with data-stream (a
  // page route answering server-sent events: `user`, `token`, then `message`
  // or `error`) is posted there with fetch instead of navigating, with its
  // CSRF token like any form. The message and the reply's pieces appear in
  // the aria-live region named by data-stream-into (busy while it streams, so
  // screen readers read the reply once); then the element named by
  // data-stream-refresh is fetched again from the server, with the stored
  // reply, its provider and its links. Without fetch streams the form posts
  // and the page comes back with the reply.
  document.querySelectorAll("form[data-stream]").forEach(function (form) {
    if (!window.fetch || !window.TextDecoder || !window.ReadableStream || !window.URLSearchParams) { return; }
    var out = document.getElementById(form.getAttribute("data-stream-into") || "");
    if (!out) { return; }
    var refreshId = form.getAttribute("data-stream-refresh");
    var button = form.querySelector("button[type=submit]");
    var field = form.querySelector("textarea");
    function line(cls, text) {
      var p = document.createElement("p");
      p.className = cls;
      p.textContent = text;
      out.appendChild(p);
      return p;
    }
    var streaming = false;
    function finish(note) {
      if (note) { line("stream-label", note); }
      out.setAttribute("aria-busy", "false");
      streaming = false;
      if (button) { button.removeAttribute("aria-disabled"); }
    }
    function refresh() {
      if (!refreshId) { return Promise.resolve(); }
      return fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (res) { return res.ok ? res.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var next = new DOMParser().parseFromString(html, "text/html");
          var fresh = next.getElementById(refreshId);
          var here = document.getElementById(refreshId);
          if (fresh && here) { here.innerHTML = fresh.innerHTML; }
        });
    }
    form.addEventListener("submit", function (ev) {
      if (field && field.value.trim() === "") { return; }
      ev.preventDefault();
      // One message at a time; the button keeps the focus meanwhile.
      if (streaming) { return; }
      streaming = true;
      var body = new URLSearchParams(new FormData(form));
      out.textContent = "";
      out.setAttribute("aria-busy", "true");
      if (button) { button.setAttribute("aria-disabled", "true"); }
      var reply = null;
      var stored = false;
      function handle(event, data) {
        var value = null;
        try { value = JSON.parse(data); } catch (e) { return; }
        if (event === "user") {
          line("stream-label", "You: " + (value.content || ""));
          if (field) { field.value = ""; }
          line("stream-label", "The assistant is writing…");
          reply = line("stream-reply", "");
        } else if (event === "token") {
          if (!reply) { reply = line("stream-reply", ""); }
          reply.textContent += value.text || "";
        } else if (event === "message") {
          stored = true;
          var by = value.provider ? " (" + value.provider + ")" : "";
          refresh().then(function () {
            // Shown once, above; read once, here.
            out.textContent = "";
            var heard = document.createElement("span");
            heard.className = "sr-only";
            heard.textContent = "The assistant replied" + by + ": " + (value.content || "");
            out.appendChild(heard);
            finish("The reply is in the conversation above" + by + ".");
          }, function () { finish("The reply is stored; reload the page to see it."); });
        } else if (event === "error") {
          stored = true;
          finish("The reply could not be stored: " + (value.detail || "unknown error") + ". Reload the page and try again.");
        }
      }
      fetch(form.getAttribute("data-stream"), {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "text/event-stream" },
        body: body
      }).then(function (res) {
        var type = res.headers.get("content-type") || "";
        if (!res.ok || type.indexOf("text/event-stream") !== 0 || !res.body) {
          return res.text().then(function (text) {
            var detail = "";
            try { detail = JSON.parse(text).detail || ""; } catch (e) { detail = ""; }
            finish("The message was not sent" + (detail ? ": " + detail : " (" + res.status + "); reload the page and try again."));
          });
        }
        var reader = res.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              if (!stored) { finish("The reply stopped before it was stored; reload the page to see what was kept."); }
              return;
            }
            buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
            var cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              var block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              var event = "message";
              var data = [];
              block.split("\n").forEach(function (l) {
                if (l.indexOf("event:") === 0) { event = l.slice(6).trim(); }
                else if (l.indexOf("data:") === 0) { data.push(l.slice(5).replace(/^ /, "")); }
              });
              if (data.length) { handle(event, data.join("\n")); }
            }
            return pump();
          });
        }
        return pump();
      }).catch(function () {
        finish("The connection was lost; reload the page to see what was kept.");
      });
    });
  });

  // 3. Live updates. A page whose <body> has data-live (a comma-separated list
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

// Upload forms (form[data-upload]) show the upload's progress: the file is
// sent with XMLHttpRequest, whose upload events report bytes sent; the page
// the server answers (the file's page, or the problem) is then shown.
(function () {
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    if (!window.XMLHttpRequest || !window.FormData) { return; }
    var bar = form.querySelector("progress");
    var status = form.querySelector(".upload-status");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (ev) {
      var input = form.querySelector("input[type=file]");
      if (!input || !input.files || !input.files.length) { return; }
      ev.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("Accept", "text/html");
      if (bar) { bar.hidden = false; bar.value = 0; }
      if (button) { button.disabled = true; }
      status.textContent = "Uploading " + input.files[0].name + "…";
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable && bar) {
          var pct = Math.round((e.loaded / e.total) * 100);
          bar.value = pct;
          status.textContent = "Uploading " + input.files[0].name + ": " + pct + "%";
        }
      });
      xhr.addEventListener("load", function () {
        if (xhr.status < 400 && xhr.responseURL) {
          status.textContent = "Uploaded. Opening the file…";
          window.location.assign(xhr.responseURL);
          return;
        }
        var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
        var said = doc.querySelector("main p");
        status.textContent = "Not uploaded: " + (said ? said.textContent : "the server refused the file (" + xhr.status + ").");
        status.classList.add("alert");
        if (bar) { bar.hidden = true; }
        if (button) { button.disabled = false; }
      });
      xhr.addEventListener("error", function () {
        status.textContent = "Not uploaded: the connection was lost. Try again.";
        status.classList.add("alert");
        if (bar) { bar.hidden = true; }
        if (button) { button.disabled = false; }
      });
      xhr.send(new FormData(form));
    });
  });
})();
