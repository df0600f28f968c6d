// The lab's guestbook page. DELIBERATELY VULNERABLE in exactly one place:
// renderComments puts comment text into the page with innerHTML, so a
// stored comment can run script. Everything else uses textContent.
//
// The same file runs in both modes (config.json says which):
//   jwt:       a bearer token in localStorage, sent as Authorization;
//              signing out only deletes it from localStorage.
//   cloakroom: an HttpOnly session cookie the page never sees; the CSRF
//              token lives in a variable; signing out is POST /auth/logout.
"use strict";

const TOKEN_KEY = "guestbook.token";
const TOKEN_EXPIRY_KEY = "guestbook.token_expires_at";

const state = { mode: "", csp: false, user: "", admin: false, csrf: "" };

const $ = (id) => document.getElementById(id);

function clock() {
  return new Date().toLocaleTimeString();
}

// explain adds a line to the "What just happened" panel.
function explain(text, kind) {
  const li = document.createElement("li");
  li.textContent = clock() + " · " + text;
  if (kind) li.className = kind;
  $("explain-list").prepend(li);
}

function showStatus(message) {
  $("status").textContent = message;
  $("status").hidden = !message;
}

class SignedOut extends Error {}

// api sends a same-origin request the mode's way.
async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.mode === "jwt") {
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
  } else if (method !== "GET" && method !== "HEAD") {
    headers["X-CSRF-Token"] = state.csrf;
  }
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    throw new SignedOut("not signed in");
  }
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    throw new Error((data && data.error) || res.status + " " + res.statusText);
  }
  return data;
}

// --- signing in and out -------------------------------------------------

async function signIn(username, password) {
  if (state.mode === "jwt") {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (!res.ok) throw new Error(res.status === 401 ? "wrong user name or password" : "sign-in failed: " + res.status);
    const data = await res.json();
    localStorage.setItem(TOKEN_KEY, data.token);
    localStorage.setItem(TOKEN_EXPIRY_KEY, data.expires_at);
    explain("Signed in as " + data.user + ". The server returned a JWT valid until " +
      new Date(data.expires_at).toLocaleTimeString() + "; this page stored it in localStorage[\"" + TOKEN_KEY +
      "\"] and sends it as Authorization: Bearer. Any script running on this page can read it.", "bad");
    return;
  }
  const res = await fetch("/auth/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw new Error(res.status === 401 ? "wrong user name or password" : "sign-in failed: " + res.status);
  if (!(await loadGatewaySession())) throw new Error("the gateway did not start a session");
  explain("Signed in as " + state.user + ". The gateway set an HttpOnly session cookie; page scripts cannot read it " +
    "(document.cookie is " + JSON.stringify(document.cookie) + "). This page keeps only a CSRF token, in memory.", "good");
}

// loadGatewaySession asks the gateway who is signed in, and for the CSRF
// token that unsafe requests carry.
async function loadGatewaySession() {
  const res = await fetch("/auth/session", { credentials: "same-origin", headers: { "Accept": "application/json" } });
  if (!res.ok) return false;
  let s;
  try { s = await res.json(); } catch (_) { return false; }
  const user = s.user || s.username || "";
  const loggedIn = s.logged_in !== undefined ? Boolean(s.logged_in) : (s.authenticated !== undefined ? Boolean(s.authenticated) : Boolean(user));
  if (!loggedIn) return false;
  state.csrf = s.csrf_token || s.csrfToken || "";
  state.user = user;
  return true;
}

async function signOut() {
  if (state.mode === "jwt") {
    const exp = localStorage.getItem(TOKEN_EXPIRY_KEY);
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_EXPIRY_KEY);
    explain("Signed out in this browser: the token was deleted from localStorage. The server was not told; " +
      "any copy of the token keeps working until it expires" + (exp ? " at " + new Date(exp).toLocaleTimeString() : "") + ".", "bad");
  } else {
    let status = 0;
    try {
      const res = await fetch("/auth/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": state.csrf, "Accept": "application/json" },
      });
      status = res.status;
    } catch (_) { /* network error: say so below */ }
    state.csrf = "";
    if (status >= 200 && status < 400) {
      explain("Signed out: the gateway deleted the session on the server (HTTP " + status +
        "). The cookie, and every copy of it, is now worthless.", "good");
    } else {
      explain("Sign-out failed (HTTP " + status + "): the session may still exist on the server.", "bad");
    }
  }
  state.user = "";
  state.admin = false;
  showLogin();
}

// --- views --------------------------------------------------------------

function showLogin() {
  document.body.dataset.state = "login";
  $("login-section").hidden = false;
  $("app-section").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("comments").replaceChildren();
  $("users").hidden = true;
}

async function showApp() {
  const me = await api("GET", "/api/me");
  state.user = me.user;
  state.admin = Boolean(me.admin);
  $("who").textContent = "Signed in as " + me.user + (me.admin ? " (admin)" : "");
  $("login-section").hidden = true;
  $("app-section").hidden = false;
  $("admin-section").hidden = !state.admin;
  $("logout").hidden = false;
  await refreshComments();
  document.body.dataset.state = "app";
}

async function refreshComments() {
  const comments = await api("GET", "/api/comments");
  renderComments(comments);
  document.body.dataset.comments = String(comments.length);
  explain("Loaded " + comments.length + " comment(s) and rendered them with innerHTML (the deliberate flaw).");
}

function renderComments(comments) {
  const list = $("comments");
  list.replaceChildren();
  const template = $("comment-template");
  for (const c of comments) {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.id = String(c.id);
    li.querySelector(".author").textContent = c.author;
    li.querySelector(".id").textContent = String(c.id);
    const when = li.querySelector(".when");
    when.dateTime = c.created_at;
    when.textContent = new Date(c.created_at).toLocaleString();
    // THE DELIBERATE FLAW: comment text is parsed as HTML. Use textContent
    // in real code.
    li.querySelector(".text").innerHTML = c.text;
    const del = li.querySelector(".delete");
    if (state.admin) {
      del.addEventListener("click", () => deleteComment(c.id));
    } else {
      del.remove();
    }
    list.appendChild(li);
  }
}

async function deleteComment(id) {
  try {
    await api("POST", "/api/comments/" + encodeURIComponent(id) + "/delete");
    explain("Deleted comment #" + id + " (an admin action).");
    await refreshComments();
  } catch (err) {
    handleError("Could not delete the comment", err);
  }
}

async function loadUsers() {
  try {
    const users = await api("GET", "/api/admin/users");
    const body = $("users").querySelector("tbody");
    body.replaceChildren();
    for (const u of users) {
      const tr = document.createElement("tr");
      for (const v of [u.name, u.email || "", (u.roles || []).join(", ")]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    $("users").hidden = false;
    explain("Listed " + users.length + " users through the admin API.");
  } catch (err) {
    handleError("Could not list the users", err);
  }
}

function handleError(what, err) {
  if (err instanceof SignedOut) {
    explain("The server answered 401: this browser is not signed in (any more).");
    showLogin();
    return;
  }
  showStatus(what + ": " + err.message);
}

// --- start --------------------------------------------------------------

function describeMode() {
  const mode = $("mode");
  mode.className = "mode " + state.mode;
  if (state.mode === "jwt") {
    mode.textContent = "Mode: JWT in localStorage";
    $("mode-note").textContent = "Signing in returns a bearer token that this page keeps in localStorage and sends " +
      "with every API call. Signing out deletes it from this browser only; the server keeps accepting it until it expires.";
  } else {
    mode.textContent = "Mode: behind cloakroom" + (state.csp ? " + CSP" : "");
    $("mode-note").textContent = "The gateway keeps the session on the server. This browser holds only an HttpOnly " +
      "cookie that page scripts cannot read; signing out ends the session on the server. " +
      (state.csp ? "The lab's Content-Security-Policy is on (script-src 'self', no inline script, connect-src 'self')."
        : "The lab's Content-Security-Policy is off, to show what an XSS payload can still do.");
  }
}

async function restoreSession() {
  if (state.mode === "jwt") {
    return localStorage.getItem(TOKEN_KEY) !== null;
  }
  return loadGatewaySession();
}

async function boot() {
  let violations = 0;
  document.addEventListener("securitypolicyviolation", (e) => {
    violations++;
    document.body.dataset.cspViolations = String(violations);
    explain("The browser refused to run " + (e.blockedURI || "an inline script") + " (" + e.effectiveDirective +
      "): the Content-Security-Policy stopped a script injected through a comment.", "good");
  });
  const res = await fetch("/" + "config.json", { cache: "no-store" });
  const cfg = await res.json();
  state.mode = cfg.mode === "cloakroom" ? "cloakroom" : "jwt";
  state.csp = Boolean(cfg.csp);
  document.documentElement.dataset.mode = state.mode;
  describeMode();

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    showStatus("");
    try {
      await signIn($("username").value, $("password").value);
      $("password").value = "";
      await showApp();
    } catch (err) {
      showStatus(err.message);
    }
  });
  $("comment-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/api/comments", { text: $("comment-text").value });
      $("comment-text").value = "";
      explain("Posted a comment. It is stored as typed and shown to everyone who opens the page.");
      await refreshComments();
    } catch (err) {
      handleError("Could not post the comment", err);
    }
  });
  $("logout").addEventListener("click", () => { signOut(); });
  $("load-users").addEventListener("click", () => { loadUsers(); });

  try {
    if (await restoreSession()) {
      await showApp();
      return;
    }
  } catch (err) {
    if (!(err instanceof SignedOut)) showStatus(err.message);
  }
  showLogin();
}

boot();
