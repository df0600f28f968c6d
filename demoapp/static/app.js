// The demo notes board. It keeps no token anywhere: the browser sends the
// HttpOnly session cookie by itself, and the CSRF token is kept in a
// variable only for the lifetime of the page. Everything user-supplied is
// rendered with textContent, never parsed as HTML. The note being written
// is kept in sessionStorage as a draft (it is not a secret), so that a
// session ended elsewhere does not lose it.
"use strict";

// DRAFT_KEY names the draft in this tab's session storage. A logout in this
// browser clears it with the rest of the site's storage (Clear-Site-Data).
const DRAFT_KEY = "cloakroom-demo:draft";

// notice is a message that outlives the next clearing of the status line.
const state = { user: "", admin: false, csrf: "", notice: "" };

const $ = (id) => document.getElementById(id);

function showStatus(message) {
  if (!message && state.notice) {
    message = state.notice;
    state.notice = "";
  }
  const el = $("status");
  el.textContent = message;
  el.hidden = !message;
}

// loginURL is the sign-in page, coming back to this page; ended is the
// gateway's hint of why the session ended ("" for none), so that the
// sign-in page can say it too.
function loginURL(ended) {
  let url = "/auth/login?return_to=" + encodeURIComponent(window.location.pathname + window.location.search);
  if (/^[a-z]+$/.test(ended || "")) url += "&ended=" + ended;
  return url;
}

function goToLogin(ended) {
  saveDraft();
  window.location.assign(loginURL(ended));
}

function saveDraft() {
  try {
    const text = $("note-text").value;
    if (text.trim()) sessionStorage.setItem(DRAFT_KEY, text);
    else sessionStorage.removeItem(DRAFT_KEY);
  } catch (_) { /* storage disabled: nothing to keep it in */ }
}

function clearDraft() {
  try { sessionStorage.removeItem(DRAFT_KEY); } catch (_) { /* storage disabled */ }
}

// restoreDraft puts a kept draft back in an empty box, and reports whether
// it did.
function restoreDraft() {
  let text = null;
  try { text = sessionStorage.getItem(DRAFT_KEY); } catch (_) { return false; }
  const box = $("note-text");
  if (!text || box.value) return false;
  box.value = text;
  updateCount();
  return true;
}

// SignedOutError is thrown once the page has told the user that the
// session ended; callers show nothing more.
class SignedOutError extends Error {}

// signedOut tells the user that the gateway no longer knows this session
// (ended from another device, by an administrator, or expired), keeps what
// they were typing, and offers a sign-in that comes back here. It never
// navigates away by itself: the draft stays on screen.
async function signedOut(res) {
  let data = {};
  try { data = await res.clone().json() || {}; } catch (_) { /* not JSON */ }
  const ended = typeof data.ended === "string" ? data.ended : "";
  saveDraft();
  let message = ended && typeof data.message === "string" ? data.message : "You are signed out.";
  if ($("note-text").value.trim()) {
    message += " Your note is kept as a draft in this tab: it will be back here after you sign in.";
  }
  $("signed-out-text").textContent = message;
  $("sign-in-again").href = loginURL(ended);
  $("signed-out").hidden = false;
  $("who").textContent = "Signed out";
  $("post").disabled = true;
  $("logout").disabled = true;
  showStatus("");
}

// isCSRFRefusal reports whether a 403 is the gateway refusing the CSRF
// token: the session was renewed meanwhile (another tab logged out the
// other devices, or re-entered the password), so the token is stale.
async function isCSRFRefusal(res) {
  if (res.status !== 403) return false;
  try {
    const data = await res.clone().json();
    return Boolean(data && data.error === "csrf");
  } catch (_) {
    return false;
  }
}

// reauthLoginURL returns where to log in again when a 403 is the gateway's
// step-up (a login too old for this route), or "" otherwise.
async function reauthLoginURL(res) {
  if (res.status !== 403) return "";
  try {
    const data = await res.clone().json();
    return data && data.error === "reauth_required" && typeof data.login_url === "string" ? data.login_url : "";
  } catch (_) {
    return "";
  }
}

// api sends a same-origin request; unsafe methods carry the CSRF token. A
// stale token is replaced once with a fresh one from /auth/session, and the
// user is told why.
async function api(method, path, body, retried) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    headers["X-CSRF-Token"] = state.csrf;
  }
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    await signedOut(res);
    throw new SignedOutError("signed out");
  }
  const reauth = await reauthLoginURL(res);
  if (reauth !== "" && new URL(reauth, window.location.origin).origin === window.location.origin) {
    window.location.assign(reauth);
    throw new Error("log in again");
  }
  if (!retried && headers["X-CSRF-Token"] !== undefined && await isCSRFRefusal(res)) {
    if (!(await loadSession())) throw new SignedOutError("signed out");
    const result = await api(method, path, body, true);
    state.notice = "Your session was renewed in another tab or window, so this page fetched a new security token and sent your request again.";
    showStatus(state.notice);
    return result;
  }
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try {
      const data = await res.json();
      if (data && data.error) message = data.error;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  if (res.status === 204) return null;
  return res.json();
}

// loadSession asks the gateway who is logged in and for the CSRF token.
async function loadSession() {
  const res = await fetch("/auth/session", { credentials: "same-origin", headers: { "Accept": "application/json" } });
  if (res.status === 401) {
    if (state.user) {
      await signedOut(res); // the page was in use: keep it on screen
    } else {
      let ended = "";
      try { ended = (await res.json()).ended || ""; } catch (_) { /* not JSON */ }
      goToLogin(ended);
    }
    return false;
  }
  if (!res.ok) throw new Error("session check failed: " + res.status);
  const s = await res.json();
  const loggedIn = s.logged_in !== undefined ? s.logged_in : Boolean(s.user);
  if (!loggedIn) {
    goToLogin();
    return false;
  }
  state.csrf = s.csrf_token || s.csrfToken || "";
  return true;
}

function renderWho(me) {
  const who = $("who");
  who.textContent = "Signed in as " + me.user;
  if (me.admin) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "admin";
    who.appendChild(badge);
  }
}

function renderNotes(notes) {
  const list = $("notes");
  list.replaceChildren();
  if (notes.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No notes yet. Write the first one.";
    list.appendChild(li);
    return;
  }
  const template = $("note-template");
  for (const note of notes) {
    const li = template.content.firstElementChild.cloneNode(true);
    li.querySelector(".author").textContent = note.author;
    const when = li.querySelector(".when");
    when.dateTime = note.created_at;
    when.textContent = new Date(note.created_at).toLocaleString();
    li.querySelector(".text").textContent = note.text;
    const del = li.querySelector(".delete");
    if (note.author === state.user || state.admin) {
      del.addEventListener("click", () => deleteNote(note.id));
    } else {
      del.remove();
    }
    list.appendChild(li);
  }
}

async function refresh() {
  renderNotes(await api("GET", "/api/notes"));
}

async function deleteNote(id) {
  try {
    await api("DELETE", "/api/notes/" + encodeURIComponent(id));
    showStatus("");
    await refresh();
  } catch (err) {
    if (!(err instanceof SignedOutError)) showStatus("Could not delete the note: " + err.message);
  }
}

async function postNote(event) {
  event.preventDefault();
  const box = $("note-text");
  const text = box.value.trim();
  if (!text) return;
  $("post").disabled = true;
  try {
    await api("POST", "/api/notes", { text });
    box.value = "";
    clearDraft();
    updateCount();
    showStatus("");
    await refresh();
  } catch (err) {
    if (err instanceof SignedOutError) return; // the page said so; posting stays off
    showStatus("Could not post the note: " + err.message);
  }
  $("post").disabled = false;
}

async function logout() {
  $("logout").disabled = true;
  let res = null;
  try {
    res = await fetch("/auth/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": state.csrf },
    });
    if (await isCSRFRefusal(res) && await loadSession()) {
      res = await fetch("/auth/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": state.csrf },
      });
    }
  } catch (_) {
    res = null; // the gateway could not be reached
  }
  if (res === null || (!res.ok && res.status !== 401)) {
    // Do not pretend: the session may still be alive on the server.
    showStatus("Logging out failed" + (res ? " (" + res.status + ")" : ": the gateway cannot be reached") +
      ". Your session may still be active on the server; try again.");
    $("logout").disabled = false;
    return;
  }
  state.csrf = "";
  clearDraft();
  window.location.assign("/auth/login?ended=logout");
}

function updateCount() {
  $("count").textContent = $("note-text").value.length + " / 1000";
}

async function main() {
  $("new-note").addEventListener("submit", postNote);
  $("note-text").addEventListener("input", () => { updateCount(); saveDraft(); });
  $("logout").addEventListener("click", logout);
  try {
    if (!(await loadSession())) return;
    const me = await api("GET", "/api/me");
    state.user = me.user;
    state.admin = me.admin;
    renderWho(me);
    $("logout").disabled = false;
    $("post").disabled = false;
    if (restoreDraft()) {
      state.notice = "Your draft is back. Post it when you are ready.";
      showStatus("");
    }
    await refresh();
  } catch (err) {
    if (!(err instanceof SignedOutError)) showStatus("Something went wrong: " + err.message);
  }
}

document.addEventListener("DOMContentLoaded", main);
