// Passkeys (WebAuthn) for the gateway's built-in pages. The pages allow no
// inline script, so this file finds its parts by id: the passkey block
// (#passkey) of the login page ("Sign in with a passkey") and of the
// pages between the factors ("Use a passkey"), and the registration page
// (#passkey-register). The server keeps each ceremony's challenge; this
// script only carries options to the browser and answers back.
"use strict";
(function () {
  function toBytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toText(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.user.id = toBytes(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return o;
  }
  function requestOptions(o) {
    o.challenge = toBytes(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return o;
  }
  function credentialJSON(c) {
    var r = c.response, out = {
      id: c.id, rawId: toText(c.rawId), type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      response: { clientDataJSON: toText(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = toText(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toText(r.authenticatorData);
      out.response.signature = toText(r.signature);
      if (r.userHandle) out.response.userHandle = toText(r.userHandle);
    }
    return out;
  }
  function post(url, body, csrf) {
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    return fetch(url, { method: "POST", credentials: "same-origin", headers: headers, body: JSON.stringify(body) })
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (data) {
          if (!res.ok) throw new Error(data.message || "The server refused the passkey.");
          return data;
        });
      });
  }
  function showError(el, err) {
    var msg = err && err.name === "NotAllowedError"
      ? "No passkey was used: it was cancelled, timed out, or this device has none for this site."
      : (err && err.message) || "The passkey did not work.";
    el.textContent = msg;
    el.hidden = false;
  }
  function supported() {
    return window.PublicKeyCredential && navigator.credentials;
  }

  // The login page's sign-in without a name, or the passkey step after a
  // password (the second-factor and enrolment pages): the same block,
  // with the server's begin and finish URLs.
  var signIn = document.getElementById("passkey");
  if (signIn && supported()) {
    var button = signIn.querySelector("button.passkey-button");
    var error = document.getElementById("passkey-error");
    signIn.hidden = false;
    button.addEventListener("click", function () {
      error.hidden = true;
      button.disabled = true;
      var remember = document.querySelector("input[name=remember]");
      post(signIn.dataset.begin, {})
        .then(function (opts) { return navigator.credentials.get({ publicKey: requestOptions(opts.publicKey) }); })
        .then(function (cred) {
          return post(signIn.dataset.finish, {
            credential: credentialJSON(cred), remember: !!(remember && remember.checked), return_to: signIn.dataset.returnTo
          });
        })
        .then(function (done) { window.location.assign(done.redirect || "/"); })
        .catch(function (err) { showError(error, err); button.disabled = false; });
    });
  }

  var register = document.getElementById("passkey-register");
  if (register && supported()) {
    var create = document.getElementById("passkey-create");
    var regError = document.getElementById("passkey-error");
    register.hidden = false;
    create.addEventListener("click", function () {
      regError.hidden = true;
      create.disabled = true;
      var opts = JSON.parse(register.dataset.options);
      navigator.credentials.create({ publicKey: creationOptions(opts.publicKey) })
        .then(function (cred) {
          return post(register.dataset.finish, { credential: credentialJSON(cred) }, register.dataset.csrf);
        })
        .then(function (done) { window.location.assign(done.redirect); })
        .catch(function (err) { showError(regError, err); create.disabled = false; });
    });
  }
})();
