// Convoy's only script besides htmx (loaded on every page, deferred):
// - drafts of the report form kept in this browser until sent (also while editing a sent report);
// - htmx errors shown next to the element that asked, in the person's language (the server answers
//   an htmx action's error with a small translated fragment; other answers fall back to
//   <body data-error-generic>);
// - a signed-out htmx action (401): the typed text is kept in sessionStorage, the browser signs in
//   and comes back to the page, where the text is put back into the same form;
// - copy buttons (the calendar address on the profile page).
(function () {
  "use strict";
  var body = document.body;

  function read(store, key) {
    try { return JSON.parse(store.getItem(key) || "null"); } catch (e) { return null; }
  }
  function write(store, key, value) {
    try { store.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode: nothing kept */ }
  }

  // --- report drafts --------------------------------------------------------------------------------
  // Saved on every input under convoy-draft:<convoy>, with the version of the report it was typed
  // against ("new" before sending). Restored at load when it differs from what the page shows: at
  // once when typed against the same version, on request when the report changed meanwhile (so a
  // colleague's newer edit is not silently overwritten). Dropped when the save succeeded (the convoy
  // page carries data-draft-sent) — not at submit, so a refused submit keeps it.
  document.querySelectorAll("[data-draft-sent]").forEach(function (el) {
    try { localStorage.removeItem("convoy-draft:" + el.getAttribute("data-draft-sent")); } catch (e) { /* */ }
  });
  var form = document.querySelector("form[data-draft]");
  if (form) {
    var key = "convoy-draft:" + form.getAttribute("data-draft");
    var base = form.getAttribute("data-draft-base") || "new";
    var named = function () {
      return Array.prototype.filter.call(form.elements, function (f) {
        return f.name && f.name !== "_csrf" && f.type !== "hidden" && f.type !== "submit" && f.type !== "button";
      });
    };
    var snapshot = function () {
      var data = {};
      named().forEach(function (f) {
        if (f.type === "radio") { if (f.checked) data[f.name] = f.value; else if (!(f.name in data)) data[f.name] = ""; }
        else if (f.type === "checkbox") data[f.name + (f.value ? "=" + f.value : "")] = f.checked;
        else if (f.id) data["#" + f.id] = f.value;
      });
      return data;
    };
    var apply = function (data) {
      var changed = false;
      named().forEach(function (f) {
        if (f.type === "radio") {
          if (f.name in data) { var on = data[f.name] === f.value; if (f.checked !== on) { f.checked = on; changed = true; } }
        } else if (f.type === "checkbox") {
          var k = f.name + (f.value ? "=" + f.value : "");
          if (k in data && f.checked !== data[k]) { f.checked = data[k]; changed = true; }
        } else if (f.id && ("#" + f.id) in data && f.value !== data["#" + f.id]) {
          f.value = data["#" + f.id]; changed = true;
        }
      });
      return changed;
    };
    var saved = read(localStorage, key);
    var shown = JSON.stringify(snapshot());
    var note = document.getElementById("draft-note");
    var offer = document.getElementById("draft-offer");
    if (saved && saved.values && JSON.stringify(saved.values) !== shown) {
      if (saved.base === base) {
        if (apply(saved.values) && note) note.hidden = false;
      } else if (offer) {
        offer.hidden = false;
        var restore = offer.querySelector("button");
        if (restore) restore.addEventListener("click", function () {
          apply(saved.values);
          write(localStorage, key, { base: base, values: snapshot() });
          offer.hidden = true;
          if (note) note.hidden = false;
        });
      }
    } else if (saved) {
      try { localStorage.removeItem(key); } catch (e) { /* */ }
    }
    var keep = function () { write(localStorage, key, { base: base, values: snapshot() }); };
    form.addEventListener("input", keep);
    form.addEventListener("change", keep);
  }

  // --- htmx errors next to the element that asked ----------------------------------------------------
  // The message goes right after the element that issued the request (a form, or a button of its own).
  function place(elt) {
    var anchor = elt;
    if (!anchor || !anchor.parentNode) return null;
    var next = anchor.nextElementSibling;
    if (next && next.classList.contains("htmx-error")) return next;
    var box = document.createElement("p");
    box.className = "alert htmx-error";
    box.setAttribute("role", "alert");
    anchor.parentNode.insertBefore(box, anchor.nextSibling);
    return box;
  }
  function show(elt, text) {
    var box = place(elt);
    if (box) box.textContent = text;
  }
  function clear(elt) {
    var next = elt && elt.nextElementSibling;
    if (next && next.classList.contains("htmx-error")) next.remove();
  }
  function messageOf(xhr) {
    if ((xhr.getResponseHeader("Content-Type") || "").indexOf("text/html") === 0 && xhr.responseText) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var found = doc.querySelector(".htmx-error") || doc.querySelector(".alert") || doc.querySelector("h1");
      if (found && found.textContent.trim()) return found.textContent.trim();
    }
    return body.getAttribute("data-error-generic") || "Something went wrong.";
  }

  // --- text kept through a sign-in -----------------------------------------------------------------
  var KEPT = "convoy-kept";
  function here() { return location.pathname + location.search; }
  function keepText(elt) {
    var f = (elt && elt.closest && elt.closest("form")) || null;
    if (!f) return;
    var fields = [];
    f.querySelectorAll("textarea, input[type=text]").forEach(function (x) {
      if (x.name && x.value.trim()) fields.push({ name: x.name, value: x.value });
    });
    if (!fields.length) return;
    var slot = null; // a region loaded on demand (a comment thread): its opener is clicked on return
    for (var p = f.parentElement; p; p = p.parentElement) {
      if (p.id && document.querySelector('[aria-controls="' + p.id + '"]')) { slot = p.id; break; }
    }
    write(sessionStorage, KEPT, {
      path: here(), action: f.getAttribute("hx-post") || f.getAttribute("action"), fields: fields, slot: slot
    });
  }
  function putBack() {
    var kept = read(sessionStorage, KEPT);
    if (!kept || kept.path !== here()) return;
    var f = document.querySelector('form[hx-post="' + kept.action + '"], form[action="' + kept.action + '"]');
    if (!f) {
      if (kept.slot && !kept.opened) {
        var opener = document.querySelector('[aria-controls="' + kept.slot + '"]');
        if (opener) { kept.opened = true; write(sessionStorage, KEPT, kept); opener.click(); }
      }
      return;
    }
    var first = null;
    kept.fields.forEach(function (k) {
      var x = f.querySelector('[name="' + k.name + '"]');
      if (x && !x.value) { x.value = k.value; first = first || x; }
    });
    try { sessionStorage.removeItem(KEPT); } catch (e) { /* */ }
    var folded = f.closest("details"); // a comment's reply or edit form: unfold it
    if (first && folded) folded.open = true;
    if (first) {
      var note = document.createElement("p");
      note.className = "notice small kept-note";
      note.setAttribute("role", "status");
      note.textContent = body.getAttribute("data-text-kept") || "";
      f.insertBefore(note, f.firstChild);
      first.focus();
    }
  }
  // After htmx has processed the page (its first htmx:load) and after each swap: openers work by then.
  body.addEventListener("htmx:load", putBack);

  body.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr.status < 400) { clear(evt.detail.requestConfig ? evt.detail.requestConfig.elt : evt.detail.elt); return; }
    var elt = (evt.detail.requestConfig && evt.detail.requestConfig.elt) || evt.detail.elt;
    if (xhr.status === 401) {
      evt.detail.shouldSwap = false;
      keepText(elt);
      location.assign(xhr.getResponseHeader("X-Sign-In") || "/sign-in?next=" + encodeURIComponent(here()));
      return;
    }
    var html = (xhr.getResponseHeader("Content-Type") || "").indexOf("text/html") === 0;
    if (html && !xhr.getResponseHeader("X-Convoy-Error")) {
      // The server answered with the target re-rendered, its error at the field (422, 409): show it.
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
      return;
    }
    evt.detail.shouldSwap = false;
    show(elt, messageOf(xhr));
  });
  body.addEventListener("htmx:sendError", function (evt) {
    show(evt.detail.elt, body.getAttribute("data-error-offline") || body.getAttribute("data-error-generic") || "");
  });
})();

(function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) return;
      field.select();
      var done = function () { button.textContent = button.getAttribute("data-copied") || button.textContent; };
      if (navigator.clipboard) navigator.clipboard.writeText(field.value).then(done, function () {});
      else if (document.execCommand("copy")) done();
    });
  });
})();
(function () {
  // A form's one-time key (issue #18, "Konvoi anlegen"): "back" to a form already sent brings back the key it
  // was sent with, so sending it again is recognised by the server as the same request, not a new one.
  var field = document.querySelector("input[data-keep-on-back]");
  if (!field || !field.form) return;
  var key = "convoy-form-key:" + location.pathname;
  var nav = window.performance && performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
  try {
    var sent = sessionStorage.getItem(key);
    if (sent && nav && nav.type === "back_forward") field.value = sent;
    field.form.addEventListener("submit", function () { sessionStorage.setItem(key, field.value); });
  } catch (e) { /* storage off: the server still folds a re-posted form */ }
})();
