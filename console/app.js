// The console shell: sign-in, navigation, and a hash router (#/machines/mach_…), so that ids stay
// in the page and nothing but /console itself is ever asked of the server outside /api/v1.
import { html, render, nothing } from "./vendor/lit-html.js";
import { apiKey, request } from "./api.js";
import { errorBox } from "./ui.js";
import { machinesView, machineView } from "./views/machines.js";
import { graphView } from "./views/graph.js";
import { skillsView, servicesView, adaptersView, searchesView, searchView } from "./views/market.js";
import { ordersView, orderView } from "./views/orders.js";
import { auditView } from "./views/audit.js";

const ROUTES = [
  [/^\/machines$/, machinesView],
  [/^\/machines\/([^/]+)$/, machineView],
  [/^\/machines\/([^/]+)\/graph$/, graphView],
  [/^\/skills$/, skillsView],
  [/^\/services$/, servicesView],
  [/^\/adapters$/, adaptersView],
  [/^\/searches$/, searchesView],
  [/^\/searches\/([^/]+)$/, searchView],
  [/^\/orders$/, ordersView],
  [/^\/orders\/([^/]+)$/, orderView],
  [/^\/audit$/, auditView],
];

const NAV = [
  ["#/machines", "Machines", /^\/machines/],
  ["#/skills", "Skills", /^\/skills/],
  ["#/services", "Services", /^\/services/],
  ["#/adapters", "Adapters", /^\/adapters/],
  ["#/searches", "Searches", /^\/searches/],
  ["#/orders", "Orders", /^\/orders/],
  ["#/audit", "Audit trail", /^\/audit/],
];

const root = document.getElementById("app");
root.replaceChildren(); // the "Loading" text; lit-html renders after existing children
const state = {
  // null until we know; "key" when signed in with a key, "open" when the server needs none.
  access: null,
  signInError: null,
  startError: null,
  path: "",
  view: null,
  announcement: "",
};

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/machines";
  const [path, query = ""] = raw.split("?");
  return { path: decodeURIComponent(path), query: new URLSearchParams(query) };
}

const ctx = {
  update: () => draw(),
  navigate: (hash) => {
    location.hash = hash;
  },
  /** Says something to screen readers without moving focus (live status changes, saves). */
  announce: (text) => {
    state.announcement = text;
    draw();
  },
  /** The key stopped working (or there never was one): back to the sign-in form. */
  authFailed: (error) => {
    apiKey.clear();
    state.access = null;
    state.signInError = error;
    route();
  },
};

function route() {
  if (state.view && state.view.dispose) state.view.dispose();
  state.view = null;
  state.announcement = "";
  const { path, query } = parseHash();
  state.path = path;
  if (state.access === null) {
    document.title = "Sign in · peaqOS console";
    draw();
    focusHeading();
    return;
  }
  const match = ROUTES.map(([pattern, make]) => [path.match(pattern), make]).find(([m]) => m);
  if (!match) {
    location.replace("#/machines");
    return;
  }
  const [groups, make] = match;
  const view = make(ctx, groups.slice(1), query);
  state.view = view;
  document.title = `${view.title} · peaqOS console`;
  draw();
  focusHeading();
  if (view.load) {
    view.load().then(draw, (error) => (error.isAuth ? ctx.authFailed(error) : draw()));
  }
}

function focusHeading() {
  requestAnimationFrame(() => {
    const heading = root.querySelector("main h1");
    if (heading) heading.focus({ preventScroll: false });
  });
}

async function signIn(event) {
  event.preventDefault();
  const input = event.target.querySelector("#api-key");
  const key = input.value.trim();
  input.value = "";
  if (!key) {
    state.signInError = { code: "AUTH_REQUIRED", message: "Enter an API key.", status: 0 };
    draw();
    return;
  }
  try {
    // A platform read that touches neither MCR nor a machine: it answers 401 for a wrong key.
    await request("GET", "/skills", { query: { limit: 1 }, key });
    apiKey.set(key);
    state.access = "key";
    state.signInError = null;
    route();
  } catch (error) {
    state.signInError = error;
    draw();
    input.focus();
  }
}

function signOut() {
  apiKey.clear();
  state.access = null;
  state.signInError = null;
  route();
}

function signInPage() {
  return html`<main id="main" class="sign-in">
    <h1 tabindex="-1">Sign in to the console</h1>
    <p>This server requires an API key (<code>PEAQOS_REQUIRE_API_AUTH=true</code>). The key stays in
      this browser tab only (session storage) and is sent as <code>x-api-key</code> to the API.</p>
    ${errorBox(state.signInError, state.signInError ? "The API refused the key." : "")}
    <form @submit=${signIn} method="post" autocomplete="off">
      <label for="api-key">API key</label>
      <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false" required>
      <button type="submit">Sign in</button>
    </form>
  </main>`;
}

function shell(content) {
  return html`<a class="skip" href="#main" @click=${(e) => { e.preventDefault(); root.querySelector("main h1")?.focus(); }}>Skip to content</a>
    <header class="top">
      <p class="brand"><a href="#/machines">peaqOS orchestrator</a> <span class="muted">console</span></p>
      <nav aria-label="Sections">
        <ul>${NAV.map(([hash, label, pattern]) => html`<li><a href=${hash} aria-current=${pattern.test(state.path) ? "page" : nothing}>${label}</a></li>`)}</ul>
      </nav>
      <p class="session">
        ${state.access === "key"
          ? html`Signed in with an API key <button type="button" class="secondary" @click=${signOut}>Sign out</button>`
          : html`<span class="muted">API auth is off on this server</span>`}
      </p>
    </header>
    ${content}
    <p class="visually-hidden" aria-live="polite" id="announcer">${state.announcement}</p>`;
}

function draw() {
  if (state.startError) {
    render(html`<main id="main"><h1 tabindex="-1">The console cannot start</h1>${errorBox(state.startError)}</main>`, root);
  } else if (state.access === null) {
    render(signInPage(), root);
  } else {
    render(shell(html`<main id="main">${state.view ? state.view.render() : nothing}</main>`), root);
  }
}

async function start() {
  if (apiKey.get()) {
    state.access = "key";
  } else {
    try {
      await request("GET", "/skills", { query: { limit: 1 }, key: null });
      state.access = "open";
    } catch (error) {
      if (!error.isAuth) state.startError = error;
    }
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
