// The audit trail, newest first, with the API's filters; "load older events" follows nextCursor
// (a cursor is only valid with the filters it came with, so changing a filter starts over).
import { html } from "../vendor/lit-html.js";
import { Paged } from "../api.js";
import { code, json, link, pager, table, time } from "../ui.js";

const FILTERS = [
  ["type", "Event type", "market.order.created"],
  ["resourceType", "Resource type", "market-order"],
  ["resourceId", "Resource id", "ord_…"],
  ["machineId", "Machine id", "mach_…"],
];
const PAGE_SIZES = [10, 25, 50, 100];

function resourceLink(event) {
  const id = event.resourceId;
  const to = {
    machine: `#/machines/${id}`,
    "market-order": `#/orders/${id}`,
    "market-search": `#/searches/${id}`,
  }[event.resourceType];
  return to ? link(to, id) : code(id);
}

export function auditView(ctx, _params, query) {
  const filters = Object.fromEntries(FILTERS.map(([name]) => [name, query.get(name) || ""]));
  const size = PAGE_SIZES.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 25;
  const events = new Paged("/audit-events", filters, size);
  const more = () => events.more().then(ctx.update, ctx.authFailed);

  function apply(event) {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(event.target)) if (String(value).trim()) params.set(name, String(value).trim());
    // The filters live in the console's own hash, so a filtered view can be bookmarked.
    ctx.navigate(`#/audit${params.toString() ? `?${params}` : ""}`);
  }

  return {
    title: "Audit trail",
    load: () => events.more(),
    render: () => html`
      <h1 tabindex="-1">Audit trail</h1>
      <p class="lede">Every state change, newest first. Payloads never hold secrets.</p>
      <form class="filters" @submit=${apply}>
        ${FILTERS.map(([name, label, example]) => html`<p><label for=${`audit-${name}`}>${label}</label>
          <input id=${`audit-${name}`} name=${name} .value=${filters[name]} placeholder=${example} spellcheck="false"></p>`)}
        <p><label for="audit-limit">Page size</label>
          <select id="audit-limit" name="limit">${PAGE_SIZES.map((n) => html`<option value=${n} ?selected=${n === size}>${n}</option>`)}</select></p>
        <p><button type="submit">Apply filters</button></p>
      </form>
      ${table("Audit events", [
        ["When", (e) => time(e.createdAt)],
        ["Type", (e) => html`<strong>${e.type}</strong>`],
        ["Resource", (e) => html`${e.resourceType}<br>${resourceLink(e)}`],
        ["Machine", (e) => (e.machineId ? link(`#/machines/${e.machineId}`, e.machineId) : html`<span class="muted">—</span>`)],
        ["Actor", (e) => e.actor],
        ["Payload", (e) => json(e.payload, "payload")],
      ], events.items, { empty: events.loading || events.error ? "" : "No events match these filters." })}
      ${pager(events, more, "events")}`,
  };
}
