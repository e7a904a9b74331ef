// Small template helpers shared by the views. lit-html escapes every interpolated value, so API
// data is always text, never markup.
import { html, nothing } from "./vendor/lit-html.js";

/** `2026-01-01 12:00:00Z`, or a dash. */
export function time(value) {
  if (!value) return html`<span class="muted">—</span>`;
  const text = value.replace("T", " ").replace(/\.\d{3}Z$/, "Z");
  return html`<time datetime=${value}>${text}</time>`;
}

/** `in 25 s` / `40 s ago`, relative to now. */
export function relative(value, now = Date.now()) {
  if (!value) return "";
  const seconds = Math.round((Date.parse(value) - now) / 1000);
  const span = Math.abs(seconds);
  if (span === 0) return "now";
  const text = span < 120 ? `${span} s` : span < 7200 ? `${Math.round(span / 60)} min` : `${Math.round(span / 3600)} h`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** A timestamp with its distance from now. */
export function when(value, now) {
  if (!value) return time(value);
  return html`${time(value)} <span class="muted">(${relative(value, now)})</span>`;
}

const TONES = {
  good: ["active", "enabled", "completed", "confirmed", "delivered", "released", "ready", "resolved", "selected", "configured", "pass", "ready", "not_required"],
  warn: ["draft", "provisioned", "paused", "degraded", "queued", "resolving", "executing", "running", "pending", "created", "payment_pending", "intent_created", "held", "release_pending", "handoff", "handed_off", "external", "unconfigured"],
  bad: ["unreachable", "revoked", "blocked", "failed", "archived", "disputed", "frozen", "cancelled", "refunded", "no_match", "fail", "disabled"],
};

/** A status word with a colour that repeats what the word says (never colour alone). */
export function badge(status) {
  if (status === null || status === undefined) return html`<span class="muted">—</span>`;
  const tone = Object.keys(TONES).find((t) => TONES[t].includes(status)) || "plain";
  return html`<span class="badge ${tone}">${status}</span>`;
}

/** An API error as the operator should read it: its code, its message, and where to look. */
export function errorBox(error, context = "") {
  if (!error) return nothing;
  const details = error.details && Object.keys(error.details).length ? JSON.stringify(error.details) : "";
  return html`<div class="error" role="alert">
    <p><strong class="code">${error.code}</strong> ${error.message}</p>
    ${context ? html`<p class="muted">${context}</p>` : nothing}
    <p class="muted small">${error.status ? `HTTP ${error.status}` : "no answer"}${error.requestId ? html` · request id <code>${error.requestId}</code>` : nothing}${details ? html` · details <code>${details}</code>` : nothing}</p>
  </div>`;
}

export function code(value) {
  if (value === null || value === undefined || value === "") return html`<span class="muted">—</span>`;
  return html`<code>${value}</code>`;
}

export function list(values) {
  if (!values || values.length === 0) return html`<span class="muted">none</span>`;
  return values.join(", ");
}

export function yesNo(value) {
  return value ? "yes" : "no";
}

/** Opaque JSON (results, payloads) in a collapsed block. */
export function json(value, label = "JSON") {
  if (value === null || value === undefined) return html`<span class="muted">—</span>`;
  if (typeof value === "object" && Object.keys(value).length === 0) return html`<code>{}</code>`;
  return html`<details class="json"><summary>${label}</summary><pre>${JSON.stringify(value, null, 2)}</pre></details>`;
}

/** A definition list from [label, value] pairs. */
export function facts(pairs) {
  return html`<dl class="facts">${pairs.map(([label, value]) => html`<dt>${label}</dt><dd>${value}</dd>`)}</dl>`;
}

/**
 * A table in a keyboard-scrollable region. `columns` are [heading, cell(item)] pairs; `empty`
 * is shown for no rows.
 */
export function table(label, columns, items, { empty = "Nothing here yet.", rowClass } = {}) {
  if (!items.length) return html`<p class="muted empty">${empty}</p>`;
  return html`<div class="table-wrap" role="region" aria-label=${label} tabindex="0">
    <table>
      <caption class="visually-hidden">${label}</caption>
      <thead><tr>${columns.map(([heading]) => html`<th scope="col">${heading}</th>`)}</tr></thead>
      <tbody>${items.map((item) => html`<tr class=${rowClass ? rowClass(item) : ""}>${columns.map(([, cell]) => html`<td>${cell(item)}</td>`)}</tr>`)}</tbody>
    </table>
  </div>`;
}

/** The state of a `Paged` list below its table: its error, a "load more" button, or the end. */
export function pager(paged, onMore, noun = "items") {
  return html`${errorBox(paged.error)}
    <p class="pager">
      ${paged.items.length} ${noun} shown.
      ${paged.done
        ? html`<span class="muted">End of list.</span>`
        : html`<button type="button" class="secondary" ?disabled=${paged.loading} @click=${onMore}>${paged.loading ? "Loading…" : `Load more ${noun}`}</button>`}
    </p>`;
}

/** A link to a console route. */
export function link(hash, text) {
  return html`<a href=${hash}>${text}</a>`;
}

export function money(amount, currency) {
  if (amount === null || amount === undefined) return html`<span class="muted">—</span>`;
  return `${amount}${currency ? ` ${currency}` : ""}`;
}
