// The quick start's page: who is signed in (GET /auth/session), what the
// upstream behind /api/ answers, and a logout that ends the session on the
// server. The CSRF token lives in a variable for the page's lifetime only.
"use strict";

let csrfToken = "";

async function whoAmI() {
  const res = await fetch("/auth/session", { headers: { "Accept": "application/json" } });
  if (res.status === 401) {
    window.location.assign("/auth/login?return_to=/");
    return;
  }
  const s = await res.json();
  csrfToken = s.csrf_token;
  document.getElementById("who").textContent =
    "Signed in as " + s.user + " (roles: " + (s.roles || []).join(", ") + "); the session ends when idle until " +
    new Date(s.idle_expires_at).toLocaleTimeString() + ".";
  document.getElementById("logout").disabled = false;
}

async function callAPI() {
  const el = document.getElementById("api");
  try {
    const res = await fetch("/api/", { headers: { "Accept": "application/json" } });
    el.textContent = res.ok
      ? "/api/ answered " + res.status + " through the gateway."
      : "/api/ answered " + res.status + ": start your API on the --upstream address (the quick start names http://127.0.0.1:9000).";
  } catch (err) {
    el.textContent = "/api/ could not be reached: " + err.message;
  }
}

async function logout() {
  await fetch("/auth/logout", { method: "POST", headers: { "X-CSRF-Token": csrfToken } });
  window.location.assign("/auth/login");
}

document.getElementById("logout").addEventListener("click", logout);
whoAmI().then(callAPI);
