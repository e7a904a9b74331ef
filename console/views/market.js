// The market: skills (enable, disable, write-only credentials), services, adapters, and searches
// with their quotes.
import { html, nothing } from "../vendor/lit-html.js";
import { Paged, get, patch } from "../api.js";
import { badge, code, errorBox, facts, json, link, list, pager, table, time, when } from "../ui.js";

const SERVICE_TYPES = ["oracle.price-feed", "compute.marketplace", "storage.object", "data.location",
  "network.partner-console", "identity.proof-of-person", "device.control", "machine.commerce"];

function pricing(p) {
  if (!p) return html`<span class="muted">—</span>`;
  if (p.mode === "fixed") return `${p.amount}${p.currency ? ` ${p.currency}` : ""}${p.rate ? ` ${p.rate}` : ""}`;
  return p.mode;
}

export function skillsView(ctx) {
  const skills = new Paged("/skills");
  const s = { actionError: null, editing: null, adapter: null, saved: null, busy: null };
  const more = () => skills.more().then(ctx.update, ctx.authFailed);

  async function run(key, work) {
    s.busy = key;
    s.actionError = null;
    ctx.update();
    try {
      await work();
    } catch (error) {
      if (error.isAuth) return ctx.authFailed(error);
      s.actionError = error;
    } finally {
      s.busy = null;
      ctx.update();
    }
  }

  async function reread(skill) {
    Object.assign(skill, (await get(`/skills/${skill.key}`)).item);
  }

  const toggle = (skill) => run(skill.key, async () => {
    const config = (await patch(`/skills/${skill.key}/config`, { enabled: !skill.enabled })).item;
    skill.enabled = config.enabled;
    ctx.announce(`${skill.label} is now ${config.enabled ? "enabled" : "disabled"}.`);
  });

  async function edit(skill) {
    s.editing = skill;
    s.saved = null;
    s.adapter = null;
    ctx.update();
    try {
      s.adapter = (await get(`/market/adapters/${skill.providerKey}`)).item;
    } catch (error) {
      if (error.isAuth) return ctx.authFailed(error);
      s.adapter = { credentialKeys: [] };
    }
    ctx.update();
    requestAnimationFrame(() => document.getElementById("credentials-h")?.focus());
  }

  function saveCredentials(event) {
    event.preventDefault();
    const form = event.target;
    const skill = s.editing;
    const credentials = {};
    for (const input of form.querySelectorAll("input[data-credential]")) {
      const name = input.dataset.credential || "";
      if (input.value) credentials[name] = input.value;
    }
    const extraName = form.querySelector("#credential-extra-name");
    const extraValue = form.querySelector("#credential-extra-value");
    if (extraName.value.trim() && extraValue.value) credentials[extraName.value.trim()] = extraValue.value;
    // The values leave the page now: nothing keeps them, and the API never sends them back.
    for (const input of form.querySelectorAll("input")) input.value = "";
    if (!Object.keys(credentials).length) {
      s.actionError = { code: "VALIDATION_ERROR", message: "Enter at least one credential value.", status: 0 };
      ctx.update();
      return;
    }
    return run(skill.key, async () => {
      const config = (await patch(`/skills/${skill.key}/config`, { credentials })).item;
      s.saved = `Stored ${Object.keys(credentials).length} credential(s): ${Object.keys(credentials).join(", ")}. `
        + `The API keeps them encrypted and reports only hasCredentials: ${config.hasCredentials}.`;
      await reread(skill);
      ctx.announce(s.saved);
    });
  }

  const clearCredentials = () => run(s.editing.key, async () => {
    const config = (await patch(`/skills/${s.editing.key}/config`, { credentials: {} })).item;
    s.saved = `Stored credentials cleared (hasCredentials: ${config.hasCredentials}).`;
    await reread(s.editing);
    ctx.announce(s.saved);
  });

  function credentialsPanel() {
    const skill = s.editing;
    if (!skill) return nothing;
    const keys = s.adapter ? s.adapter.credentialKeys : [];
    return html`<section class="panel" aria-labelledby="credentials-h">
      <h2 id="credentials-h" tabindex="-1">Credentials for ${skill.label}</h2>
      <p>Credentials are write-only: they are sent once, stored encrypted, and never shown again.
        Saving replaces the whole stored set. Auth state now: ${badge(skill.authState)}.</p>
      ${s.saved ? html`<p class="ok" role="status">${s.saved}</p>` : nothing}
      ${s.adapter ? nothing : html`<p class="muted">Loading the adapter's credential keys…</p>`}
      <form @submit=${saveCredentials} method="post" autocomplete="off" class="stack">
        ${keys.map((name) => html`<p><label for=${`credential-${name}`}>${name}</label>
          <input id=${`credential-${name}`} data-credential=${name} type="password" autocomplete="off" spellcheck="false"></p>`)}
        <fieldset><legend>Another key</legend>
          <p><label for="credential-extra-name">Key name</label>
            <input id="credential-extra-name" type="text" autocomplete="off" spellcheck="false"></p>
          <p><label for="credential-extra-value">Value</label>
            <input id="credential-extra-value" type="password" autocomplete="off" spellcheck="false"></p>
        </fieldset>
        <p class="actions">
          <button type="submit" ?disabled=${s.busy === skill.key}>Save credentials</button>
          <button type="button" class="secondary" ?disabled=${s.busy === skill.key} @click=${clearCredentials}>Clear stored credentials</button>
          <button type="button" class="secondary" @click=${() => { s.editing = null; ctx.update(); }}>Close</button>
        </p>
      </form>
    </section>`;
  }

  return {
    title: "Skills",
    load: () => skills.more(),
    render: () => html`
      <h1 tabindex="-1">Skills</h1>
      <p class="lede">The catalogue's skills and their deployment-wide config. A disabled skill's
        services stay listed but are left out of search and discovery, and cannot be ordered.</p>
      ${errorBox(s.actionError)}
      ${table("Skills", [
        ["Skill", (k) => html`<strong>${k.label}</strong><br><code class="small">${k.key}</code>`],
        ["Provider", (k) => k.providerKey],
        ["Execution", (k) => html`${k.executionMode}<br><span class="small">${k.integrationStatus}</span>`],
        ["Auth", (k) => html`${k.authType} ${badge(k.authState)}`],
        ["Enabled", (k) => html`<span data-skill-enabled=${k.key}>${badge(k.enabled ? "enabled" : "disabled")}</span>`],
        ["Actions", (k) => html`<span class="actions">
          <button type="button" class="secondary" ?disabled=${s.busy === k.key} @click=${() => toggle(k)}
            aria-label=${`${k.enabled ? "Disable" : "Enable"} ${k.label}`}>${k.enabled ? "Disable" : "Enable"}</button>
          <button type="button" class="secondary" @click=${() => edit(k)}
            aria-label=${`Set credentials for ${k.label}`}>Credentials…</button></span>`],
      ], skills.items, { rowClass: (k) => (k.enabled ? "" : "disabled-row") })}
      ${pager(skills, more, "skills")}
      ${credentialsPanel()}`,
  };
}

export function servicesView(ctx, _params, query) {
  const filters = {
    machineId: query.get("machineId") || "",
    serviceType: query.get("serviceType") || "",
    executionMode: query.get("executionMode") || "",
  };
  let services = new Paged("/market/services", filters);
  const machines = new Paged("/machines");
  const more = () => services.more().then(ctx.update, ctx.authFailed);

  function apply(event) {
    event.preventDefault();
    const data = new FormData(event.target);
    for (const name of Object.keys(filters)) filters[name] = data.get(name) || "";
    services = new Paged("/market/services", { ...filters });
    ctx.update();
    more();
  }

  const select = (name, label, options) => html`<p><label for=${`f-${name}`}>${label}</label>
    <select id=${`f-${name}`} name=${name}>
      <option value="" ?selected=${!filters[name]}>any</option>
      ${options.map(([value, text]) => html`<option value=${value} ?selected=${filters[name] === value}>${text}</option>`)}
    </select></p>`;

  return {
    title: "Services",
    load: () => Promise.all([services.more(), machines.more()]),
    render: () => html`
      <h1 tabindex="-1">Services</h1>
      <p class="lede">Every offer in the catalogue. With a machine chosen, the view is that
        machine's: its policies filter the list, and runtime services read <code>native</code> only
        while the machine leases an active endpoint for them.</p>
      <form class="filters" @submit=${apply}>
        ${select("machineId", "Machine", machines.items.map((m) => [m.id, m.displayName]))}
        ${select("serviceType", "Service type", SERVICE_TYPES.map((t) => [t, t]))}
        ${select("executionMode", "Execution", [["native", "native"], ["external-handoff", "external-handoff"]])}
        <p><button type="submit">Show services</button></p>
      </form>
      ${table("Services", [
        ["Service", (v) => html`<strong>${v.name}</strong><br><code class="small">${v.id}</code>`],
        ["Skill · provider", (v) => html`${v.skillKey}<br><span class="small">${v.providerLabel}${v.companyName ? ` (${v.companyName})` : ""}</span>`],
        ["Type", (v) => v.serviceType],
        ["Execution", (v) => html`${v.executionMode}<br>${badge(v.integrationStatus)}`],
        ["Region", (v) => v.region],
        ["Price", (v) => pricing(v.pricing)],
        ["Payment", (v) => v.payment ? html`${v.payment.defaultRail}${v.payment.required ? " (required)" : ""}` : "—"],
        ["Operations", (v) => list(v.operations)],
      ], services.items, { empty: services.loading ? "" : "No services match." })}
      ${pager(services, more, "services")}`,
  };
}

export function adaptersView(ctx) {
  const adapters = new Paged("/market/adapters");
  const more = () => adapters.more().then(ctx.update, ctx.authFailed);
  return {
    title: "Adapters",
    load: () => adapters.more(),
    render: () => html`
      <h1 tabindex="-1">Adapters</h1>
      <p class="lede">How to set up each provider: the credential keys its skills expect and
        whether it needs a machine runtime endpoint.</p>
      ${table("Adapters", [
        ["Provider", (a) => html`<strong>${a.label}</strong><br><code class="small">${a.providerKey}</code>`],
        ["Execution", (a) => html`${a.executionMode}<br>${badge(a.integrationStatus)}`],
        ["Credential keys", (a) => list(a.credentialKeys)],
        ["Runtime endpoint", (a) => a.runtimeEndpoint ? `${a.runtimeEndpoint.required ? "required" : "optional"}, probe ${a.runtimeEndpoint.probePath}` : html`<span class="muted">not used</span>`],
        ["Setup", (a) => html`<details><summary>${a.setupSteps.length} steps</summary><ol>${a.setupSteps.map((step) => html`<li>${step}</li>`)}</ol></details>`],
        ["Docs", (a) => a.docsUrl ? html`<a href=${a.docsUrl} rel="noreferrer noopener" target="_blank">docs</a>` : html`<span class="muted">—</span>`],
      ], adapters.items)}
      ${pager(adapters, more, "adapters")}`,
  };
}

export function searchesView(ctx) {
  // The API has no list of searches; each one writes a market.search.created audit event, and
  // that trail is the index.
  const events = new Paged("/audit-events", { type: "market.search.created" }, 50);
  const more = () => events.more().then(ctx.update, ctx.authFailed);
  function open(event) {
    event.preventDefault();
    const id = new FormData(event.target).get("searchId").trim();
    if (id) ctx.navigate(`#/searches/${id}`);
  }
  return {
    title: "Searches",
    load: () => events.more(),
    render: () => html`
      <h1 tabindex="-1">Searches</h1>
      <p class="lede">Market searches agents ran, newest first (from the audit trail), each with its quotes.</p>
      <form class="filters" @submit=${open}>
        <p><label for="search-id">Search id</label><input id="search-id" name="searchId" placeholder="srch_…" spellcheck="false"></p>
        <p><button type="submit">Open search</button></p>
      </form>
      ${table("Searches", [
        ["Search", (e) => link(`#/searches/${e.resourceId}`, e.resourceId)],
        ["Machine", (e) => e.machineId ? link(`#/machines/${e.machineId}`, e.machineId) : "—"],
        ["Service type", (e) => e.payload.serviceType || "—"],
        ["Status", (e) => badge(e.payload.status)],
        ["Quotes", (e) => String(e.payload.quoteCount ?? "—")],
        ["Pairing", (e) => code(e.payload.agentPairingId)],
        ["Searched", (e) => time(e.createdAt)],
      ], events.items, { empty: events.loading ? "" : "No searches yet." })}
      ${pager(events, more, "searches")}`,
  };
}

export function searchView(ctx, [searchId]) {
  const s = { search: null, error: null };
  return {
    title: "Search",
    async load() {
      try {
        s.search = (await get(`/market/searches/${searchId}`)).item;
      } catch (error) {
        if (error.isAuth) throw error;
        s.error = error;
      }
    },
    render() {
      const heading = html`<h1 tabindex="-1">Search <code>${searchId}</code></h1>
        <p class="lede"><a href="#/searches">All searches</a></p>`;
      if (s.error) return html`${heading}${errorBox(s.error)}`;
      if (!s.search) return html`${heading}<p class="muted">Loading…</p>`;
      const q = s.search;
      const now = Date.now();
      const t = q.normalizedTask;
      return html`${heading}
        ${facts([
          ["Status", badge(q.status)],
          ["Machine", link(`#/machines/${q.machineId}`, q.machineId)],
          ["Pairing", code(q.agentPairingId)],
          ["Task", `${t.serviceType}${t.operation ? ` · ${t.operation}` : ""}${t.region ? ` · region ${t.region}` : ""}${t.requireNativeExecution ? " · native only" : ""}`],
          ["Budget", t.budget ? JSON.stringify(t.budget) : html`<span class="muted">none</span>`],
          ["Request (as stored, credentials redacted)", json(q.requestPayload, "request")],
          ["Searched", time(q.createdAt)],
        ])}
        <section><h2 id="quotes-h">Quotes</h2>
        ${table("Quotes", [
          ["Quote", (x) => html`<code class="small">${x.id}</code>`],
          ["Service", (x) => html`${x.serviceId}<br><span class="small">${x.operation}</span>`],
          ["Execution", (x) => html`${x.executionMode}<br>${badge(x.integrationStatus)}`],
          ["Score", (x) => String(x.score)],
          ["Price", (x) => pricing(x.pricing)],
          ["Payment", (x) => x.payment.defaultRail],
          ["Expires", (x) => html`${when(x.expiresAt, now)}${Date.parse(x.expiresAt) < now ? html` ${badge("expired")}` : nothing}`],
          ["Reasons", (x) => html`<details><summary>${x.reasons.length} reasons</summary><ul>${x.reasons.map((r) => html`<li>${r}</li>`)}</ul></details>`],
        ], q.quotes, { empty: "No quotes (no service matched)." })}</section>`;
    },
  };
}
