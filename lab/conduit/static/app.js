// Conduit, the cloakroom lab's RealWorld-shaped single-page app. It does
// what the RealWorld Vue and React apps do, on purpose:
//   - the JWT from the login answer is kept in localStorage["jwtToken"]
//     and sent as "Authorization: Token <jwt>" whenever it is there;
//   - sign-up posts to /api/users, without the trailing slash, and lets
//     the browser follow the API's 307;
//   - on load, GET /api/user echoes the token the request carried, and
//     the page stores what came back, as the Vue app does;
//   - the settings answer carries a fresh token, which replaces the stored
//     one;
//   - logging out only removes the token from localStorage: the server is
//     never told.
// #status says what the page did last, for tests to wait on.
"use strict";

const TOKEN_KEY = "jwtToken";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status) {
    super("HTTP " + status);
    this.status = status;
  }
}

// api calls the API on this origin, with the stored token if there is one.
async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token !== null) headers["Authorization"] = `Token ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch("/api" + path, init);
  if (!res.ok) throw new ApiError(res.status);
  if (res.status === 204) return null;
  return res.json();
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(err) {
  setStatus("error:" + (err instanceof ApiError ? err.status : "network"));
}

function showSignedIn(user) {
  document.body.dataset.view = "signed-in";
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = user.username;
  $("bio").value = user.bio || "";
}

function showSignedOut() {
  document.body.dataset.view = "signed-out";
  $("signed-in").hidden = true;
  $("signed-out").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
}

// loadArticles fills #articles with one <li> per article, its title as
// text.
async function loadArticles() {
  const data = await api("GET", "/articles");
  const items = data.articles.map((a) => {
    const li = document.createElement("li");
    li.textContent = a.title;
    li.dataset.slug = a.slug;
    li.dataset.favorited = String(Boolean(a.favorited));
    return li;
  });
  $("articles").replaceChildren(...items);
}

// signedIn stores the token of a user answer and shows the signed-in
// view.
async function signedIn(data) {
  localStorage.setItem(TOKEN_KEY, data.user.token);
  showSignedIn(data.user);
  await loadArticles();
  setStatus("signed-in:" + data.user.username);
}

async function login(event) {
  event.preventDefault();
  try {
    const data = await api("POST", "/users/login", { user: { email: $("email").value, password: $("password").value } });
    $("password").value = "";
    await signedIn(data);
  } catch (err) {
    showError(err);
  }
}

async function register(event) {
  event.preventDefault();
  try {
    const data = await api("POST", "/users", {
      user: { username: $("reg-username").value, email: $("reg-email").value, password: $("reg-password").value },
    });
    $("reg-password").value = "";
    await signedIn(data);
  } catch (err) {
    showError(err);
  }
}

async function publish(event) {
  event.preventDefault();
  const title = $("title").value;
  const body = $("body").value;
  try {
    const data = await api("POST", "/articles", { article: { title, description: "", body, tagList: [] } });
    $("title").value = "";
    $("body").value = "";
    await loadArticles();
    setStatus("published:" + data.article.title);
  } catch (err) {
    showError(err);
  }
}

async function saveBio(event) {
  event.preventDefault();
  try {
    const data = await api("PUT", "/user", { user: { bio: $("bio").value } });
    localStorage.setItem(TOKEN_KEY, data.user.token);
    showSignedIn(data.user);
    setStatus("saved");
  } catch (err) {
    showError(err);
  }
}

// logout does what most single-page apps do: it forgets the token in this
// browser and nothing else.
async function logout() {
  localStorage.removeItem(TOKEN_KEY);
  showSignedOut();
  try {
    await loadArticles();
    setStatus("signed-out");
  } catch (err) {
    showError(err);
  }
}

async function start() {
  $("login-form").addEventListener("submit", login);
  $("register-form").addEventListener("submit", register);
  $("article-form").addEventListener("submit", publish);
  $("settings-form").addEventListener("submit", saveBio);
  $("logout").addEventListener("click", logout);

  let user = null;
  if (localStorage.getItem(TOKEN_KEY) !== null) {
    try {
      user = (await api("GET", "/user")).user;
      // The Vue app stores the token the profile echo returns.
      localStorage.setItem(TOKEN_KEY, user.token);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        showSignedOut();
        showError(err);
        return;
      }
      // The token is no good: forget it, as the RealWorld apps do.
      localStorage.removeItem(TOKEN_KEY);
    }
  }
  if (user) showSignedIn(user);
  else showSignedOut();
  try {
    await loadArticles();
    setStatus(user ? "signed-in:" + user.username : "signed-out");
  } catch (err) {
    showError(err);
  }
}

start();
