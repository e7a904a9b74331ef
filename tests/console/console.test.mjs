// The operator console in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core) against the real server binary with seeded data. Run with
// `bash tests/console/run.sh`; screenshots of every view go to target/console-screenshots/.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Api, seed, startFakeRuntime } from "./seed.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BIN = process.env.CONSOLE_SERVER_BIN || path.join(REPO, "target/debug/peaqos-orchestrator");
const SHOTS = process.env.CONSOLE_SCREENSHOT_DIR || path.join(REPO, "target/console-screenshots");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const VIEWPORT = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** The server binary on a free loopback port with its own SQLite file, JSON logs at debug. */
async function startServer(env) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "peaqos-console-"));
  const port = await new Promise((resolve) => {
    const probe = net.createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const child = spawn(BIN, [], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      PEAQOS_LISTEN_ADDR: `127.0.0.1:${port}`,
      DATABASE_URL: `sqlite://${path.join(dir, "console.db")}`,
      PEAQOS_LOG_FORMAT: "json",
      RUST_LOG: "debug",
      PEAQOS_MCR_API_URL: "http://127.0.0.1:9",
      PEAQOS_AGENT_PAIRING_SESSION_SECRET: randomBytes(32).toString("hex"),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (chunk) => (log += chunk));
  child.stderr.on("data", (chunk) => (log += chunk));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited:\n${log}`);
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the server did not start:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return {
    base,
    log: () => log,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.on("exit", resolve)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const apiKey = "console-key-" + randomBytes(12).toString("hex");
const wrongKey = "wrong-key-" + randomBytes(12).toString("hex");
const typedCredential = "typed-credential-" + randomBytes(12).toString("hex");

let server;
let openServer;
let runtime;
let browser;
let data;
let api;
// Everything the browser asked for and everything it showed, checked for secrets at the end.
const requested = [];
const snapshots = [];
const consoleMessages = [];

async function newPage(context) {
  const page = await context.newPage();
  page.on("request", (request) => requested.push(request.url()));
  page.on("console", (message) => consoleMessages.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => consoleMessages.push(`pageerror: ${error.message}`));
  return page;
}

/** A screenshot artefact, and the page's HTML for the secrets check. */
async function shot(page, name, options = {}) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), ...options });
  snapshots.push([name, await page.content()]);
}

async function signIn(page, base, key) {
  await page.goto(`${base}/console`);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const status = (page, selector) => page.locator(selector).innerText();

describe("operator console", { timeout: 300_000 }, () => {
  let pageA; // stays on the machine, to watch its lease pass
  let pageB; // everything else
  let contextA;
  let leaseExpiresAt;

  before(async () => {
    [server, openServer, runtime] = await Promise.all([
      startServer({
        PEAQOS_REQUIRE_API_AUTH: "true",
        PEAQOS_API_KEY: apiKey,
        // Order actions with the platform key (the operator's) instead of a pairing token.
        PEAQOS_REQUIRE_AGENT_PAIRING_AUTH: "false",
        PEAQOS_MACHINE_IDENTITY_VERIFICATION: "disabled",
        PEAQOS_AGENT_PAIRING_VERIFICATION: "disabled",
        // No prober: the endpoint's status changes only when its lease passes.
        PEAQOS_RUNTIME_PROBE_INTERVAL_MS: "0",
        PEAQOS_CATALOG_DIR: path.join(HERE, "catalog"),
      }),
      startServer({ PEAQOS_MACHINE_IDENTITY_VERIFICATION: "disabled" }),
      startFakeRuntime(),
    ]);
    api = new Api(server.base, apiKey);
    data = await seed(api, runtime.url);
    browser = await chromium.launch({ executablePath: CHROMIUM });
    contextA = await browser.newContext({ viewport: VIEWPORT });
    pageA = await newPage(contextA);
    pageB = await newPage(await browser.newContext({ viewport: VIEWPORT }));
  });

  after(async () => {
    if (browser) await browser.close();
    if (runtime) runtime.close();
    await Promise.all([server && server.stop(), openServer && openServer.stop()]);
  });

  it("serves the console with a strict CSP and no inline script", async () => {
    const index = await fetch(`${server.base}/console`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type"), /^text\/html/);
    const csp = index.headers.get("content-security-policy");
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(index.headers.get("x-content-type-options"), "nosniff");
    assert.ok(index.headers.get("x-request-id"), "the API's request-id middleware still runs");
    const html = await index.text();
    assert.doesNotMatch(html, /<script>|<script(?![^>]*\ssrc=)[^>]*>/, "no inline script");
    const app = await fetch(`${server.base}/console/app.js`);
    assert.match(app.headers.get("content-type"), /^text\/javascript/);
    assert.equal((await fetch(`${server.base}/console/nope.js`)).status, 404);
    const openapi = await (await fetch(`${server.base}/api/v1/openapi.json`)).json();
    assert.ok(!Object.keys(openapi.paths).some((p) => p.includes("console")), "not in the API document");
    // The vendored lit-html is exactly the npm release named in console/vendor/README.md.
    assert.equal(
      fs.readFileSync(path.join(REPO, "console/vendor/lit-html.js"), "utf8"),
      fs.readFileSync(path.join(HERE, "node_modules/lit-html/lit-html.js"), "utf8"),
    );
  });

  it("shows the API's error for a wrong key", async () => {
    await signIn(pageA, server.base, wrongKey);
    const alert = pageA.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /AUTH_INVALID/);
    assert.match(await alert.innerText(), /HTTP 401/);
    assert.equal(await pageA.getByLabel("API key").inputValue(), "", "the field is cleared");
    assert.equal(await pageA.evaluate(() => sessionStorage.length), 0, "a wrong key is not kept");
    await shot(pageA, "sign-in-wrong-key");
  });

  it("signs in with the key and lists the machines", async () => {
    await pageA.getByLabel("API key").fill(apiKey);
    await pageA.getByRole("button", { name: "Sign in" }).click();
    await pageA.getByRole("heading", { name: "Machines", level: 1 }).waitFor();
    const rows = pageA.getByRole("region", { name: "Machines" }).locator("tbody tr");
    await rows.nth(2).waitFor();
    assert.equal(await rows.count(), 3);
    const text = await rows.allInnerTexts();
    assert.match(text[0], /Forklift 7\s+active\s+did:peaq:\d+\s+not verified/);
    assert.match(text[1], /Drone 3\s+draft/);
    // The key lives in this tab's session storage only.
    const storage = await pageA.evaluate(() => ({
      session: Object.values(sessionStorage), local: localStorage.length, cookie: document.cookie }));
    assert.deepEqual(storage, { session: [apiKey], local: 0, cookie: "" });
    await shot(pageA, "machines");
  });

  it("opens a machine with its endpoints, agents, pairings, tasks, routes, runs, outcomes and orders", async () => {
    // A fresh heartbeat with the shortest lease; the last step watches it pass.
    const beat = await data.heartbeat(30);
    leaseExpiresAt = beat.item.endpoints.find((e) => e.providerKey === "qvac").leaseExpiresAt;
    await pageA.getByRole("link", { name: "Forklift 7" }).click();
    await pageA.getByRole("heading", { name: /Forklift 7/, level: 1 }).waitFor();
    const endpoints = pageA.getByRole("region", { name: "Runtime endpoints" });
    await endpoints.waitFor();
    assert.equal(await status(pageA, "[data-endpoint-status=qvac]"), "active");
    assert.equal(await status(pageA, "[data-endpoint-status=walrus]"), "active");
    const qvac = await endpoints.locator("tr", { hasText: "qvac" }).innerText();
    assert.ok(qvac.includes(leaseExpiresAt.replace("T", " ").replace(/\.\d{3}Z$/, "Z")), qvac);
    assert.match(qvac, /bearer \(token stored\)/);
    const rowsOf = (name) => pageA.getByRole("region", { name }).locator("tbody tr");
    assert.match(await rowsOf("Machine agents").first().innerText(), /^Edge box\s+mag_\w+\s+active\s/);
    const pairing = await rowsOf("Agent pairings").first().innerText();
    assert.match(pairing, /anthropic · buyer/);
    assert.match(pairing, /≤ 5 per order, ≤ 20 a day, USDT/);
    assert.match(pairing, /valid, ends …/);
    assert.equal(await rowsOf("Tasks").count(), 4);
    assert.equal(await rowsOf("Routes").count(), 2);
    assert.equal(await rowsOf("Runs").count(), 2);
    assert.match(await rowsOf("Outcomes").first().innerText(), /completed/);
    assert.equal(await rowsOf("Orders").count(), 3);
    await pageA.evaluate(() => (window.__consoleTestMarker = "not reloaded"));
    await shot(pageA, "machine", { fullPage: true });
  });

  it("shows a draft machine's API errors with their code and message", async () => {
    await signIn(pageB, server.base, apiKey);
    await pageB.getByRole("heading", { name: "Machines", level: 1 }).waitFor();
    await pageB.getByRole("link", { name: "Drone 3" }).click();
    const section = pageB.locator("section", { has: pageB.locator("#endpoints-h") });
    await section.getByRole("alert").first().waitFor();
    const alert = await section.getByRole("alert").first().innerText();
    assert.match(alert, /MACHINE_NOT_ACTIVE/);
    assert.match(alert, /HTTP 409/);
    await shot(pageB, "machine-draft-errors");
  });

  it("drags a graph node and the new position is saved", async () => {
    const node = data.nodes.storage;
    await pageB.goto(`${server.base}/console#/machines/${data.machineId}/graph`);
    const shape = pageB.locator(`g[data-node="${node.id}"]`);
    await shape.waitFor();
    const box = await shape.boundingBox();
    const from = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    await pageB.mouse.move(from.x, from.y);
    await pageB.mouse.down();
    await pageB.mouse.move(from.x + 60, from.y + 20, { steps: 5 });
    await pageB.mouse.move(from.x + 130, from.y + 45, { steps: 5 });
    await pageB.mouse.up();
    await pageB.locator("#announcer", { hasText: `Saved ${node.title}` }).waitFor();
    const saved = (await api.get(`/api/v1/machines/${data.machineId}/graph`)).nodes.find((n) => n.id === node.id);
    assert.ok(saved.position.x > node.position.x + 50, JSON.stringify(saved.position));
    assert.ok(saved.position.y > node.position.y + 15, JSON.stringify(saved.position));
    // Keyboard: focus a node and move it with the arrow keys.
    const trigger = data.nodes.trigger;
    await pageB.locator(`g[data-node="${trigger.id}"]`).focus();
    await pageB.keyboard.press("ArrowRight");
    await pageB.keyboard.press("ArrowRight");
    await pageB.keyboard.press("ArrowDown");
    await pageB.locator("#announcer", { hasText: `Saved ${trigger.title}` }).waitFor();
    await shot(pageB, "graph");
    // A reload draws both where the API now has them.
    await pageB.reload();
    await pageB.locator(`[data-position="${node.id}"]`).waitFor();
    assert.equal(await status(pageB, `[data-position="${node.id}"]`), `${saved.position.x}, ${saved.position.y}`);
    assert.equal(await status(pageB, `[data-position="${trigger.id}"]`), `${trigger.position.x + 20}, ${trigger.position.y + 10}`);
    const transform = await pageB.locator(`g[data-node="${node.id}"]`).getAttribute("transform");
    assert.equal(transform, `translate(${saved.position.x} ${saved.position.y})`);
  });

  it("disables a skill and sets its credentials write-only", async () => {
    await pageB.goto(`${server.base}/console#/skills`);
    await pageB.getByRole("button", { name: "Disable Hall archive" }).click();
    await pageB.locator("[data-skill-enabled='console.hall-archive']", { hasText: "disabled" }).waitFor();
    const skill = (await api.get("/api/v1/skills/console.hall-archive")).item;
    assert.equal(skill.enabled, false);
    await pageB.getByRole("button", { name: "Enable Hall archive" }).waitFor();

    await pageB.getByRole("button", { name: "Set credentials for Hall archive" }).click();
    const field = pageB.getByLabel("apiKey", { exact: true });
    await field.fill(typedCredential);
    assert.equal(await field.getAttribute("type"), "password");
    await pageB.getByRole("button", { name: "Save credentials" }).click();
    await pageB.getByRole("status").filter({ hasText: "Stored 1 credential(s): apiKey" }).waitFor();
    assert.equal(await field.inputValue(), "", "the typed value leaves the page");
    const page = await pageB.content();
    assert.ok(!page.includes(typedCredential) && !page.includes(data.secrets.skillCredential));
    assert.ok(await pageB.evaluate(() => [...document.querySelectorAll("input, select")].every((el) => el.labels.length > 0)),
      "every field has a label");
    await shot(pageB, "skills", { fullPage: true });
  });

  it("lists services and adapters, and a search with its quotes", async () => {
    await pageB.goto(`${server.base}/console#/services`);
    const services = pageB.getByRole("region", { name: "Services" });
    await services.locator("tr", { hasText: "hall-archive:shift-logs" }).waitFor();
    assert.match(await services.locator("tr", { hasText: "hall-archive:shift-logs" }).innerText(), /0\.5 USDT per_request/);
    await shot(pageB, "services");

    await pageB.goto(`${server.base}/console#/adapters`);
    const adapter = pageB.getByRole("region", { name: "Adapters" }).locator("tr", { hasText: "hall-archive" });
    await adapter.waitFor();
    assert.match(await adapter.innerText(), /apiKey/);
    await shot(pageB, "adapters");

    await pageB.goto(`${server.base}/console#/searches`);
    await pageB.getByRole("link", { name: data.searchId }).click();
    const quotes = pageB.getByRole("region", { name: "Quotes" });
    await quotes.waitFor();
    const search = (await api.get(`/api/v1/market/searches/${data.searchId}`)).item;
    assert.equal(await quotes.locator("tbody tr").count(), search.quotes.length);
    assert.ok(search.quotes.length > 0);
    assert.match(await quotes.innerText(), new RegExp(search.quotes[0].id));
    await shot(pageB, "search");
  });

  it("shows orders with their payments and takes an operator action", async () => {
    await pageB.goto(`${server.base}/console#/orders?machineId=${data.machineId}`);
    const orders = pageB.getByRole("region", { name: "Orders" });
    await orders.locator("tbody tr").nth(2).waitFor();
    await orders.locator("tr", { hasText: data.orders.paid }).getByText("held").waitFor();
    assert.equal(await status(pageB, `[data-order-status="${data.orders.delivered}"]`), "confirmed");
    await shot(pageB, "orders");

    await pageB.getByRole("link", { name: data.orders.open }).click();
    await pageB.getByRole("button", { name: "Cancel order" }).waitFor();
    await pageB.getByLabel("Cancel reason (optional)").fill("planned twice");
    await pageB.getByRole("button", { name: "Cancel order" }).click();
    await pageB.getByRole("status").filter({ hasText: "The order is now cancelled" }).waitFor();
    const order = (await api.get(`/api/v1/market/orders/${data.orders.open}`)).item;
    assert.equal(order.status, "cancelled");
    assert.equal(order.cancelReason, "planned twice");

    // An action the state machine refuses shows the API's code and message.
    await pageB.goto(`${server.base}/console#/orders/${data.orders.paid}`);
    await pageB.getByRole("button", { name: "Cancel order" }).click();
    const refused = pageB.getByRole("alert");
    await refused.waitFor();
    assert.match(await refused.innerText(), /ORDER_CLOSED/);
    assert.match(await pageB.locator("[data-payment-status]").innerText(), /held/);
    await shot(pageB, "order", { fullPage: true });
  });

  it("pages the audit trail newest first, following nextCursor", async () => {
    const all = [];
    for (let cursor = null, first = true; first || cursor; first = false) {
      const page = await api.get(`/api/v1/audit-events?limit=500${cursor ? `&cursor=${cursor}` : ""}`);
      all.push(...page.items);
      cursor = page.nextCursor;
    }
    assert.ok(all.length > 20, `${all.length} events`);
    await pageB.goto(`${server.base}/console#/audit`);
    await pageB.getByLabel("Page size").selectOption("10");
    await pageB.getByRole("button", { name: "Apply filters" }).click();
    const rows = pageB.getByRole("region", { name: "Audit events" }).locator("tbody tr");
    await pageB.getByText("10 events shown.").waitFor();
    assert.match(await rows.first().innerText(), new RegExp(all[0].type.replace(/\./g, "\\.")));
    const cursorsBefore = requested.filter((u) => u.includes("/audit-events") && u.includes("cursor=")).length;
    while (await pageB.getByRole("button", { name: "Load more events" }).count()) {
      const shown = await rows.count();
      await pageB.getByRole("button", { name: "Load more events" }).click();
      await pageB.getByText(`${Math.min(shown + 10, all.length)} events shown.`).waitFor();
    }
    await pageB.getByText("End of list.").waitFor();
    assert.equal(await rows.count(), all.length);
    const texts = await rows.allInnerTexts();
    all.forEach((event, i) => assert.ok(texts[i].includes(event.type), `row ${i}: ${texts[i]} / ${event.type}`));
    const cursorsAfter = requested.filter((u) => u.includes("/audit-events") && u.includes("cursor=")).length;
    assert.equal(cursorsAfter - cursorsBefore, Math.ceil(all.length / 10) - 1, "one request per further page");

    // A filter narrows it, and travels in the console's own URL.
    await pageB.getByLabel("Event type").fill("graph.node.updated");
    await pageB.getByRole("button", { name: "Apply filters" }).click();
    await pageB.getByText("2 events shown.").waitFor();
    assert.match(pageB.url(), /#\/audit\?type=graph\.node\.updated/);
    await shot(pageB, "audit");
  });

  it("is usable by keyboard and at phone width", async () => {
    await pageB.goto(`${server.base}/console#/machines`);
    await pageB.reload();
    await pageB.getByRole("heading", { name: "Machines", level: 1 }).waitFor();
    // A new view puts focus on its heading; the navigation is just before it.
    await pageB.waitForFunction(() => document.activeElement && document.activeElement.tagName === "H1");
    let reached = false;
    for (let i = 0; i < 15 && !reached; i++) {
      await pageB.keyboard.press("Shift+Tab");
      reached = await pageB.evaluate(() => document.activeElement && document.activeElement.textContent === "Audit trail");
    }
    assert.ok(reached, "the navigation is reachable with the keyboard");
    await pageB.keyboard.press("Enter");
    await pageB.getByRole("heading", { name: "Audit trail", level: 1 }).waitFor();
    assert.equal(await pageB.evaluate(() => document.activeElement.tagName), "H1", "focus moves to the new view");

    await pageB.setViewportSize(PHONE);
    await pageB.goto(`${server.base}/console#/machines/${data.machineId}`);
    await pageB.getByRole("region", { name: "Runtime endpoints" }).waitFor();
    const overflow = await pageB.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px; only tables may`);
    assert.ok(await pageB.getByRole("link", { name: "Orders" }).first().isVisible());
    await shot(pageB, "phone-machine", { fullPage: true });
    await pageB.goto(`${server.base}/console#/machines/${data.machineId}/graph`);
    await pageB.locator("figure.graph svg").waitFor();
    await shot(pageB, "phone-graph");
    await pageB.setViewportSize(VIEWPORT);
  });

  it("works without a key when the server does not require one", async () => {
    const open = new Api(openServer.base, null);
    const machine = await open.post("/api/v1/machines", {
      displayName: "Open bench", ownerId: "lab", machineType: "bench", runtimeProfile: "edge", identityRef: "did:peaq:4242" });
    const page = await newPage(await browser.newContext({ viewport: VIEWPORT }));
    await page.goto(`${openServer.base}/console`);
    await page.getByRole("heading", { name: "Machines", level: 1 }).waitFor();
    await page.getByRole("link", { name: "Open bench" }).waitFor();
    assert.equal(await page.getByLabel("API key").count(), 0, "no sign-in form");
    assert.ok(await page.getByText("API auth is off on this server").isVisible());
    assert.equal(machine.item.displayName, "Open bench");
    await shot(page, "keyless-machines");
  });

  it("turns the endpoint unreachable once its lease passes, without a reload", async () => {
    await pageA.bringToFront();
    const wait = Math.max(0, Date.parse(leaseExpiresAt) - Date.now()) + 20_000;
    await pageA.locator("[data-endpoint-status=qvac]", { hasText: "unreachable" }).waitFor({ timeout: wait });
    assert.equal(await pageA.evaluate(() => window.__consoleTestMarker), "not reloaded");
    assert.equal(await status(pageA, "[data-endpoint-status=walrus]"), "active", "a manual endpoint has no lease");
    const endpoint = (await api.get(`/api/v1/machines/${data.machineId}/runtime-endpoints/qvac`)).item;
    assert.equal(endpoint.status, "unreachable");
    await pageA.locator("#announcer", { hasText: "Runtime endpoint qvac is now unreachable." }).waitFor();
    await shot(pageA, "machine-lease-passed");
    // The README's picture: the machine view at 1280×800.
    fs.copyFileSync(path.join(SHOTS, "machine-lease-passed.png"), path.join(SHOTS, "readme.png"));
    if (process.env.CONSOLE_UPDATE_DOCS === "1") {
      fs.mkdirSync(path.join(REPO, "docs"), { recursive: true });
      fs.copyFileSync(path.join(SHOTS, "readme.png"), path.join(REPO, "docs/console.png"));
    }
  });

  it("leaves no secret in the page, its URLs or the server log", () => {
    const secrets = { apiKey, wrongKey, typedCredential, ...data.secrets };
    const log = server.log();
    assert.ok(log.includes("request completed"), "the log was captured");
    for (const [name, secret] of Object.entries(secrets)) {
      assert.ok(!log.includes(secret), `${name} is in the server log`);
      for (const url of requested) assert.ok(!url.includes(secret), `${name} is in ${url}`);
      for (const [view, html] of snapshots) assert.ok(!html.includes(secret), `${name} is in the ${view} page`);
    }
    assert.ok(requested.length > 50, `${requested.length} requests seen`);
    // Only the API's own refusals may show up as console errors: the sign-in probe and the
    // wrong key (401), the draft machine (409) and the refused cancel (409).
    const unexpected = consoleMessages.filter((m) => /^(error|warning|pageerror)/.test(m)
      && !/^error: Failed to load resource: the server responded with a status of (401|409)/.test(m));
    assert.deepEqual(unexpected, [], "no script errors and no CSP or Trusted Types violations");
  });
});
