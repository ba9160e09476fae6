// The console's own script, beside htmx; no inline script exists (the
// Content-Security-Policy allows only this origin's files). Without it
// every page still works: this only shows a file's upload progress.
"use strict";
document.addEventListener("htmx:xhr:progress", function (event) {
  var form = event.target.closest && event.target.closest("form.import");
  var bar = form && form.querySelector("progress");
  if (bar && event.detail.lengthComputable && event.detail.total > 0) {
    bar.hidden = false;
    bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
  }
});
