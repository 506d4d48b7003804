// Convoy's only script besides htmx: drafts of the report form kept in this browser until sent, and
// copy buttons (the calendar address on the profile page).
(function () {
  var form = document.querySelector("form[data-draft]");
  if (!form) return;
  var key = "convoy-draft:" + form.getAttribute("data-draft");
  var fields = form.querySelectorAll("textarea, input[type=text]");
  var saved = null;
  try { saved = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { saved = null; }
  var note = document.getElementById("draft-note");
  if (saved) {
    fields.forEach(function (f) { if (saved[f.name] && !f.value) f.value = saved[f.name]; });
    if (note) note.hidden = false;
  }
  form.addEventListener("input", function () {
    var data = {};
    fields.forEach(function (f) { data[f.name] = f.value; });
    localStorage.setItem(key, JSON.stringify(data));
  });
  form.addEventListener("submit", function () { localStorage.removeItem(key); });
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
