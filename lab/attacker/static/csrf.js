// cloakroom lab: fires the two forged requests of the CSRF page once.
"use strict";
(function () {
  var form = document.getElementById("csrf-form");
  var frame = document.getElementById("csrf-frame");
  var pending = 2;
  function done(id, text) {
    document.getElementById(id).textContent = text;
    if (--pending === 0) document.body.dataset.done = "1";
  }
  frame.addEventListener("load", function () {
    if (frame.dataset.submitted) done("form-result", "sent; the answer loaded in the frame, unreadable from this site");
  });
  frame.dataset.submitted = "1";
  form.submit();
  fetch(form.action, { method: "POST", credentials: "include" }).then(function (res) {
    done("fetch-result", "answered HTTP " + res.status);
  }, function (err) {
    done("fetch-result", "sent; the browser hid the answer from this site (" + err.name + ")");
  });
})();
