// Convoy's only script besides htmx: drafts of the report form kept in this browser until sent.
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
