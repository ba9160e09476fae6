// The console's own behaviour, beside htmx. No inline script exists: the
// Content-Security-Policy allows scripts from this origin's files only.
"use strict";
document.addEventListener("submit", function (event) {
  // Ending a binding cannot be undone: ask first (the page's language
  // comes from the button's form).
  var form = event.target;
  var ask = form.getAttribute("data-confirm");
  if (ask && !window.confirm(ask)) {
    event.preventDefault();
  }
});
