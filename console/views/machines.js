// Machines: the list, and one machine with everything attached to it. Runtime endpoints and
// agents are re-read every few seconds, so a lease that passes shows up as `unreachable` without
// a reload.
import { html, nothing } from "../vendor/lit-html.js";
import { Paged, get } from "../api.js";
import { badge, code, errorBox, facts, json, link, list, money, pager, table, time, when, yesNo } from "../ui.js";

const LIVE_INTERVAL_MS = 3000;

function verification(machine) {
  const proof = machine.identityProof;
  if (!proof) return html`<span class="muted">not verified</span>`;
  return html`${proof.method} by <code>${proof.signerAddress}</code>`;
}

export function machinesView(ctx) {
  const machines = new Paged("/machines");
  const more = () => machines.more().then(ctx.update, ctx.authFailed);
  return {
    title: "Machines",
    load: () => machines.more(),
    render: () => html`
      <h1 tabindex="-1">Machines</h1>
      <p class="lede">Registered machines, oldest first (archived ones are not listed; the server's
        identity verification mode decides which drafts appear). The API does not say when MCR was
        last asked about an identity (look-ups are cached in the server): "verified at" is when the
        stored proof was checked against MCR.</p>
      ${table("Machines", [
        ["Name", (m) => link(`#/machines/${m.id}`, m.displayName)],
        ["Status", (m) => badge(m.status)],
        ["Identity", (m) => code(m.identityRef)],
        ["Verification", verification],
        ["Verified at", (m) => time(m.identityProof && m.identityProof.verifiedAt)],
        ["Type", (m) => `${m.machineType} · ${m.runtimeProfile}`],
        ["Owner", (m) => m.ownerId],
        ["Updated", (m) => time(m.updatedAt)],
      ], machines.items, { empty: machines.loading || machines.error ? "" : "No machines yet." })}
      ${pager(machines, more, "machines")}`,
  };
}

function delegation(policy) {
  const parts = [];
  if (policy.perTransactionLimit !== null) parts.push(`≤ ${policy.perTransactionLimit} per order`);
  if (policy.dailySpendLimit !== null) parts.push(`≤ ${policy.dailySpendLimit} a day`);
  if (policy.currency) parts.push(policy.currency);
  const lists = [
    ["allowed skills", policy.allowedSkillKeys], ["denied skills", policy.deniedSkillKeys],
    ["allowed services", policy.allowedServiceIds], ["denied services", policy.deniedServiceIds],
  ].filter(([, values]) => values.length);
  return html`${parts.length ? parts.join(", ") : html`<span class="muted">no limits</span>`}
    ${lists.map(([label, values]) => html`<br><span class="small">${label}: ${values.join(", ")}</span>`)}`;
}

export function machineView(ctx, [machineId]) {
  const base = `/machines/${machineId}`;
  const s = {
    machine: null,
    error: null,
    lastRefresh: null,
    endpoints: new Paged(`${base}/runtime-endpoints`),
    agents: new Paged(`${base}/agents`),
    pairings: new Paged(`${base}/agent-pairings`),
    tasks: new Paged(`${base}/tasks`),
    routes: new Paged(`${base}/routes`),
    runs: new Paged("/runs", { machineId }),
    outcomes: new Paged(`${base}/outcomes`),
    orders: new Paged("/market/orders", { machineId }),
  };
  const lists = ["endpoints", "agents", "pairings", "tasks", "routes", "runs", "outcomes", "orders"];
  const more = (name) => () => s[name].more().then(ctx.update, ctx.authFailed);
  let timer = null;
  let stopped = false;

  async function live() {
    const before = new Map(s.endpoints.items.map((e) => [e.providerKey, e.status]));
    await Promise.all([s.endpoints.refresh(), s.agents.refresh()]);
    s.lastRefresh = new Date().toISOString();
    const changed = s.endpoints.items.filter((e) => before.has(e.providerKey) && before.get(e.providerKey) !== e.status);
    if (changed.length) {
      ctx.announce(changed.map((e) => `Runtime endpoint ${e.providerKey} is now ${e.status}.`).join(" "));
    } else {
      ctx.update();
    }
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(async () => {
      if (document.visibilityState !== "hidden") {
        try {
          await live();
        } catch (error) {
          ctx.authFailed(error);
          return;
        }
      }
      schedule();
    }, LIVE_INTERVAL_MS);
  }

  // Plain sections: the tables inside are the labelled regions.
  const section = (id, title, body) => html`<section><h2 id=${id}>${title}</h2>${body}</section>`;

  function overview(m) {
    const proof = m.identityProof;
    return html`
      <h1 tabindex="-1">${m.displayName} ${badge(m.status)}</h1>
      <p class="lede"><code>${m.id}</code> · <a href=${`#/machines/${m.id}/graph`}>Open the machine graph</a>
        · <a href=${`#/orders?machineId=${m.id}`}>Orders</a>
        · <a href=${`#/audit?machineId=${m.id}`}>Audit trail</a></p>
      ${facts([
        ["Identity", code(m.identityRef)],
        ["Verification", proof ? html`${proof.method} via ${proof.resolutionSource}, signer <code>${proof.signerAddress}</code>` : html`<span class="muted">no stored proof</span>`],
        ["Verified at", time(proof && proof.verifiedAt)],
        ["Controllers at verification", proof ? list(proof.controllerAddresses) : html`<span class="muted">—</span>`],
        ["Owner", m.ownerId],
        ["Type · runtime profile", `${m.machineType} · ${m.runtimeProfile}`],
        ["Capabilities", list(m.capabilities)],
        ["Labels", Object.keys(m.labels).length ? Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(", ") : html`<span class="muted">none</span>`],
        ["Skills", list(m.skillKeys)],
        ["Policies", list(m.policyIds)],
        ["Created · updated", html`${time(m.createdAt)} · ${time(m.updatedAt)}`],
      ])}`;
  }

  function render() {
    if (s.error) return html`<h1 tabindex="-1">Machine <code>${machineId}</code></h1>${errorBox(s.error)}`;
    if (!s.machine) return html`<h1 tabindex="-1">Machine <code>${machineId}</code></h1><p class="muted">Loading…</p>`;
    const now = Date.now();
    return html`
      ${overview(s.machine)}
      ${section("endpoints-h", html`Runtime endpoints <span class="live small">live · re-read every ${LIVE_INTERVAL_MS / 1000} s${s.lastRefresh ? html`, last ${time(s.lastRefresh)}` : nothing}</span>`, html`
        ${table("Runtime endpoints", [
          ["Provider", (e) => html`<strong>${e.providerKey}</strong><br><span class="small">${e.label}</span>`],
          ["Status", (e) => html`<span data-endpoint-status=${e.providerKey}>${badge(e.status)}</span>${e.healthError ? html`<br><span class="small">${e.healthError}</span>` : nothing}`],
          ["Lease expires", (e) => e.leaseExpiresAt ? when(e.leaseExpiresAt, now) : html`<span class="muted">no lease (manual)</span>`],
          ["Last healthy", (e) => time(e.lastHealthyAt)],
          ["Last checked", (e) => time(e.lastCheckedAt)],
          ["Source", (e) => e.source === "agent" ? html`agent <code>${e.agentId}</code>` : "manual"],
          ["URL · scope", (e) => html`<code>${e.endpointBaseUrl}</code><br><span class="small">${e.networkScope}, probe ${e.probePath}</span>`],
          ["Auth", (e) => `${e.authType}${e.hasAuthToken ? " (token stored)" : ""}`],
        ], s.endpoints.items, { empty: "No runtime endpoints.", rowClass: (e) => `endpoint-${e.status}` })}
        ${pager(s.endpoints, more("endpoints"), "endpoints")}`)}
      ${section("agents-h", "Machine agents", html`
        ${table("Machine agents", [
          ["Label", (a) => html`${a.label}<br><code class="small">${a.id}</code>`],
          ["Status", (a) => badge(a.status)],
          ["Last seen", (a) => a.lastSeenAt ? when(a.lastSeenAt, now) : time(null)],
          ["Providers", (a) => list(a.allowedProviderKeys)],
          ["Token", (a) => yesNo(a.hasAgentToken)],
          ["Enrolled", (a) => time(a.createdAt)],
        ], s.agents.items, { empty: "No machine agents." })}
        ${pager(s.agents, more("agents"), "agents")}`)}
      ${section("pairings-h", "Agent pairings", html`
        ${table("Agent pairings", [
          ["Agent", (p) => html`<code>${p.agentAddress}</code><br><span class="small">${p.agentProvider} · ${p.agentRole}${p.description ? ` · ${p.description}` : ""}</span>`],
          ["Status", (p) => badge(p.status)],
          ["Delegation policy", (p) => delegation(p.delegationPolicy)],
          ["Session expires", (p) => p.sessionExpiresAt ? when(p.sessionExpiresAt, now) : time(null)],
          ["Token", (p) => p.hasAuthToken ? html`valid, ends <code>…${p.tokenLastFour}</code>` : html`<span class="muted">none valid</span>`],
          ["Verified", (p) => p.verification ? time(p.verification.verifiedAt) : html`<span class="muted">no proof</span>`],
        ], s.pairings.items, { empty: "No pairings." })}
        ${pager(s.pairings, more("pairings"), "pairings")}`)}
      ${section("tasks-h", "Tasks", html`
        ${table("Tasks", [
          ["Task", (t) => html`${t.taskType}<br><code class="small">${t.id}</code>`],
          ["Status", (t) => badge(t.status)],
          ["Service type · operation", (t) => html`${t.serviceType}<br><span class="small">${t.operation || "—"}</span>`],
          ["Route · outcome", (t) => html`${code(t.routeId)}<br>${code(t.outcomeId)}`],
          ["Order", (t) => t.orderId ? link(`#/orders/${t.orderId}`, t.orderId) : html`<span class="muted">—</span>`],
          ["Input", (t) => json(t.input, "input")],
          ["Updated", (t) => time(t.updatedAt)],
        ], s.tasks.items, { empty: "No tasks." })}
        ${pager(s.tasks, more("tasks"), "tasks")}`)}
      ${section("routes-h", "Routes", html`
        ${table("Routes", [
          ["Route", (r) => html`<code class="small">${r.id}</code><br><span class="small">task ${r.taskId}</span>`],
          ["Status", (r) => badge(r.status)],
          ["Selected service", (r) => html`${r.selectedServiceId}<br><span class="small">${r.executionMode} · ${r.integrationStatus}</span>`],
          ["Score", (r) => String(r.score)],
          ["Reason", (r) => html`<span class="small">${r.reason}</span>`],
          ["Updated", (r) => time(r.updatedAt)],
        ], s.routes.items, { empty: "No routes." })}
        ${pager(s.routes, more("routes"), "routes")}`)}
      ${section("runs-h", "Runs", html`
        ${table("Runs", [
          ["Run", (r) => html`<code class="small">${r.id}</code>`],
          ["Status", (r) => badge(r.status)],
          ["Service", (r) => html`${r.serviceId || "—"}<br><span class="small">${r.executionMode || ""}</span>`],
          ["Summary", (r) => r.summary || html`<span class="muted">—</span>`],
          ["Order", (r) => r.orderId ? link(`#/orders/${r.orderId}`, r.orderId) : html`<span class="muted">—</span>`],
          ["Updated", (r) => time(r.updatedAt)],
        ], s.runs.items, { empty: "No runs." })}
        ${pager(s.runs, more("runs"), "runs")}`)}
      ${section("outcomes-h", "Outcomes", html`
        ${table("Outcomes", [
          ["Outcome", (o) => html`<code class="small">${o.id}</code>`],
          ["Status", (o) => badge(o.status)],
          ["Service", (o) => o.serviceId],
          ["Error", (o) => o.errorCode ? html`<strong>${o.errorCode}</strong> ${o.errorMessage || ""}` : html`<span class="muted">—</span>`],
          ["Result", (o) => json(o.result, "result")],
          ["Updated", (o) => time(o.updatedAt)],
        ], s.outcomes.items, { empty: "No outcomes." })}
        ${pager(s.outcomes, more("outcomes"), "outcomes")}`)}
      ${section("orders-h", "Orders", html`
        ${table("Orders", [
          ["Order", (o) => link(`#/orders/${o.id}`, o.id)],
          ["Status", (o) => badge(o.status)],
          ["Service", (o) => html`${o.serviceId}<br><span class="small">${o.operation}</span>`],
          ["Amount", (o) => money(o.amount, o.currency)],
          ["Payment rail", (o) => o.payment.defaultRail],
          ["Created", (o) => time(o.createdAt)],
        ], s.orders.items, { empty: "No orders." })}
        ${pager(s.orders, more("orders"), "orders")}`)}`;
  }

  return {
    title: "Machine",
    async load() {
      try {
        s.machine = (await get(base)).item;
        this.title = s.machine.displayName;
        document.title = `${s.machine.displayName} · peaqOS console`;
      } catch (error) {
        if (error.isAuth) throw error;
        s.error = error;
        return;
      }
      ctx.update();
      // Each list answers on its own: a draft machine's sub-resources answer MACHINE_NOT_ACTIVE,
      // and that is shown where the list would be.
      await Promise.all(lists.map((name) => s[name].more()));
      s.lastRefresh = new Date().toISOString();
      schedule();
    },
    render,
    dispose() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
