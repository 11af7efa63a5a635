// reversald console: progressive enhancement only. Every page works without it.
// - A form with data-confirm asks before it posts (retry, resolve).
// - A posted form's buttons are disabled, so a double click sends one action.
"use strict";
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var msg = form.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
    return;
  }
  var buttons = form.querySelectorAll("button[type=submit]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].disabled = true;
  }
});
