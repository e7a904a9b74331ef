// Orders: a machine's orders with their payments, and one order with its state, its payment and
// the actions an operator may take with the platform key.
import { html, nothing } from "../vendor/lit-html.js";
import { Paged, get, post } from "../api.js";
import { badge, code, errorBox, facts, json, link, money, pager, table, time } from "../ui.js";

const MAIN_PATH = ["created", "payment_pending", "ready", "executing", "delivered", "confirmed"];
const SIDE_STATES = ["handoff", "failed", "disputed", "cancelled"];

/** Loads each order's payment, a few at a time (the list does not carry it). */
async function paymentsOf(orders, into) {
  const queue = orders.filter((o) => !into.has(o.id));
  const worker = async () => {
    for (let order = queue.shift(); order; order = queue.shift()) {
      try {
        into.set(order.id, (await get(`/market/orders/${order.id}/payment`)).item);
      } catch (error) {
        if (error.isAuth) throw error;
        into.set(order.id, { error });
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function paymentCell(payment) {
  if (payment === undefined) return html`<span class="muted">…</span>`;
  if (payment === null) return html`<span class="muted">none</span>`;
  if (payment.error) return html`<span class="small">${payment.error.code}</span>`;
  return html`${badge(payment.status)}<br><span class="small">${payment.rail.type} · ${money(payment.amount, payment.currency)}</span>`;
}

export function ordersView(ctx, _params, query) {
  const s = { machineId: query.get("machineId") || "", orders: null, payments: new Map() };
  const machines = new Paged("/machines");

  async function show(machineId) {
    s.machineId = machineId;
    s.payments = new Map();
    s.orders = machineId ? new Paged("/market/orders", { machineId }) : null;
    ctx.update();
    if (!s.orders) return;
    await s.orders.more();
    ctx.update();
    await paymentsOf(s.orders.items, s.payments);
    ctx.update();
  }

  const more = () => s.orders.more()
    .then(() => { ctx.update(); return paymentsOf(s.orders.items, s.payments); })
    .then(ctx.update, ctx.authFailed);

  function choose(event) {
    event.preventDefault();
    const machineId = new FormData(event.target).get("machineId");
    show(machineId).catch(ctx.authFailed);
  }

  return {
    title: "Orders",
    async load() {
      await machines.more();
      const first = machines.items.find((m) => m.status === "active");
      await show(s.machineId || (first ? first.id : ""));
    },
    render: () => html`
      <h1 tabindex="-1">Orders</h1>
      <p class="lede">Orders are listed per machine (the API has no list across machines), oldest first,
        each with its payment.</p>
      <form class="filters" @submit=${choose}>
        <p><label for="orders-machine">Machine</label>
          <select id="orders-machine" name="machineId">
            ${machines.items.map((m) => html`<option value=${m.id} ?selected=${m.id === s.machineId}>${m.displayName} (${m.status})</option>`)}
          </select></p>
        <p><button type="submit">Show orders</button></p>
      </form>
      ${errorBox(machines.error)}
      ${s.orders ? html`
        ${table("Orders", [
          ["Order", (o) => link(`#/orders/${o.id}`, o.id)],
          ["Status", (o) => html`<span data-order-status=${o.id}>${badge(o.status)}</span>`],
          ["Service", (o) => html`${o.serviceId}<br><span class="small">${o.operation} · ${o.executionMode}</span>`],
          ["Amount", (o) => money(o.amount, o.currency)],
          ["Payment", (o) => paymentCell(s.payments.get(o.id))],
          ["Pairing", (o) => code(o.agentPairingId)],
          ["Created", (o) => time(o.createdAt)],
        ], s.orders.items, { empty: s.orders.loading ? "" : "This machine has no orders." })}
        ${pager(s.orders, more, "orders")}` : html`<p class="muted">Choose a machine.</p>`}`,
  };
}

export function orderView(ctx, [orderId]) {
  const s = { order: null, payment: undefined, error: null, actionError: null, result: null, busy: false };

  async function reload() {
    const [order, payment] = await Promise.all([
      get(`/market/orders/${orderId}`),
      get(`/market/orders/${orderId}/payment`),
    ]);
    s.order = order.item;
    s.payment = payment.item;
  }

  /** One order action with the platform key; the API's answer (or error) is shown as it came. */
  async function act(label, path, body) {
    s.busy = true;
    s.actionError = null;
    s.result = null;
    ctx.update();
    try {
      await post(`/market/orders/${orderId}/${path}`, body);
      await reload();
      s.result = `${label}: done. The order is now ${s.order.status}${s.payment ? `, its payment ${s.payment.status}` : ""}.`;
      ctx.announce(s.result);
    } catch (error) {
      if (error.isAuth) return ctx.authFailed(error);
      s.actionError = error;
    } finally {
      s.busy = false;
      ctx.update();
    }
  }

  const fields = (event) => {
    event.preventDefault();
    const data = {};
    for (const [name, value] of new FormData(event.target)) if (String(value).trim()) data[name] = String(value).trim();
    return data;
  };

  function actions(order, payment) {
    const status = order.status;
    const pay = payment ? payment.status : null;
    const forms = [];
    if (["created", "payment_pending", "ready"].includes(status)) {
      forms.push(html`<form @submit=${(e) => (e.preventDefault(), act("Execute", "execute", {}))}>
        <button type="submit" ?disabled=${s.busy}>Execute order</button></form>`);
      forms.push(html`<form @submit=${(e) => act("Cancel", "cancel", fields(e))}>
        <label for="cancel-reason">Cancel reason (optional)</label><input id="cancel-reason" name="reason">
        <button type="submit" class="danger" ?disabled=${s.busy}>Cancel order</button></form>`);
    }
    if (status === "failed") {
      forms.push(html`<form @submit=${(e) => (e.preventDefault(), act("Retry", "retry", {}))}>
        <button type="submit" ?disabled=${s.busy}>Retry order</button></form>`);
    }
    if (["delivered", "handoff"].includes(status)) {
      forms.push(html`<form @submit=${(e) => (e.preventDefault(), act("Confirm", "confirm", {}))}>
        <button type="submit" ?disabled=${s.busy}>Confirm delivery</button></form>`);
    }
    if (["delivered", "handoff", "confirmed"].includes(status)) {
      forms.push(html`<form @submit=${(e) => act("Dispute", "dispute", fields(e))}>
        <label for="dispute-reason">Dispute reason</label><input id="dispute-reason" name="reason" required>
        <button type="submit" class="danger" ?disabled=${s.busy}>Open a dispute</button></form>`);
    }
    if (pay === "release_pending") {
      forms.push(html`<form @submit=${(e) => act("Release", "payment/release", fields(e))}>
        <label for="release-tx">Release transaction hash (optional)</label><input id="release-tx" name="transactionHash" spellcheck="false">
        <label for="release-notes">Notes (optional)</label><input id="release-notes" name="notes">
        <button type="submit" ?disabled=${s.busy}>Record release</button></form>`);
    }
    if (["intent_created", "held", "release_pending", "frozen"].includes(pay)) {
      forms.push(html`<form @submit=${(e) => act("Refund", "payment/refund", fields(e))}>
        <label for="refund-tx">Refund transaction hash (optional)</label><input id="refund-tx" name="transactionHash" spellcheck="false">
        <label for="refund-reason">Reason (optional)</label><input id="refund-reason" name="reason">
        <button type="submit" class="danger" ?disabled=${s.busy}>Record refund</button></form>`);
    }
    return html`<section class="panel" aria-labelledby="actions-h"><h2 id="actions-h">Actions</h2>
      <p class="small muted">These are the order's agent actions, sent with the platform key. The
        server accepts them only with <code>PEAQOS_REQUIRE_AGENT_PAIRING_AUTH=false</code>; otherwise it
        answers <code>AGENT_AUTH_REQUIRED</code>, shown here.</p>
      ${s.result ? html`<p class="ok" role="status">${s.result}</p>` : nothing}
      ${errorBox(s.actionError, "The action was refused; nothing changed.")}
      ${forms.length ? html`<div class="action-forms">${forms}</div>` : html`<p class="muted">No action applies to a ${status} order${pay ? ` with a ${pay} payment` : ""}.</p>`}
    </section>`;
  }

  function states(current) {
    const step = (name) => html`<li class=${name === current ? "current" : ""} aria-current=${name === current ? "step" : nothing}>${name}</li>`;
    return html`<ol class="states" aria-label="Order states">${MAIN_PATH.map(step)}</ol>
      <ol class="states side" aria-label="Other order states">${SIDE_STATES.map(step)}</ol>`;
  }

  function paymentFacts(p) {
    if (p === null) return html`<p class="muted">No payment (yet). Free services may execute without one.</p>`;
    const proof = p.proof;
    return facts([
      ["Status", html`<span data-payment-status>${badge(p.status)}</span>`],
      ["Rail", html`${p.rail.type}${p.rail.chain ? ` on ${p.rail.chain}` : ""}${p.rail.token ? ` · ${p.rail.token}` : ""}`],
      ["Amount", money(p.amount, p.currency)],
      ["Payer → payee", html`${code(p.rail.payerAddress)} → ${code(p.rail.payeeAddress)}`],
      ["Proof", proof ? html`${proof.verificationMode}${proof.transactionHash ? html`, tx <code>${proof.transactionHash}</code>` : nothing}${proof.paymentReference ? `, ref ${proof.paymentReference}` : ""} at ${time(proof.verifiedAt)}` : html`<span class="muted">none</span>`],
      ["Release tx", code(p.releaseTransactionHash)],
      ["Refund", p.refundTransactionHash || p.refundReason ? html`${code(p.refundTransactionHash)} ${p.refundReason || ""}` : html`<span class="muted">—</span>`],
      ["Notes", p.notes.length ? p.notes.join("; ") : html`<span class="muted">none</span>`],
      ["Updated", time(p.updatedAt)],
    ]);
  }

  return {
    title: "Order",
    async load() {
      try {
        await reload();
      } catch (error) {
        if (error.isAuth) throw error;
        s.error = error;
      }
    },
    render() {
      const heading = html`<h1 tabindex="-1">Order <code>${orderId}</code> ${s.order ? badge(s.order.status) : nothing}</h1>`;
      if (s.error) return html`${heading}${errorBox(s.error)}`;
      if (!s.order) return html`${heading}<p class="muted">Loading…</p>`;
      const o = s.order;
      return html`${heading}
        <p class="lede"><a href=${`#/orders?machineId=${o.machineId}`}>All orders of this machine</a>
          · <a href=${`#/audit?resourceId=${o.id}`}>Its audit events</a></p>
        ${states(o.status)}
        ${actions(o, s.payment)}
        <section><h2 id="order-h">Order</h2>
        ${facts([
          ["Machine", link(`#/machines/${o.machineId}`, o.machineId)],
          ["Pairing", code(o.agentPairingId)],
          ["Service", html`${o.serviceId} (${o.skillKey}, ${o.providerKey})`],
          ["Operation", `${o.operation} · ${o.executionMode} · ${o.integrationStatus}`],
          ["Amount", money(o.amount, o.currency)],
          ["Budget", o.budget ? JSON.stringify(o.budget) : html`<span class="muted">none</span>`],
          ["Search · quote", html`${o.searchId ? link(`#/searches/${o.searchId}`, o.searchId) : "—"} · ${code(o.quoteId)}`],
          ["Recommended payment", `${o.payment.defaultRail}${o.payment.required ? " (required)" : ""}`],
          ["Task · route · run · outcome", html`${code(o.taskId)} · ${code(o.routeId)} · ${code(o.runId)} · ${code(o.outcomeId)}`],
          ["Handoff", o.handoff ? html`<a href=${o.handoff.url} rel="noreferrer noopener" target="_blank">${o.handoff.label}</a>` : html`<span class="muted">—</span>`],
          ["Error", o.errorMessage || html`<span class="muted">—</span>`],
          ["Cancel reason", o.cancelReason || html`<span class="muted">—</span>`],
          ["Input", json(o.input, "input")],
          ["Created · updated", html`${time(o.createdAt)} · ${time(o.updatedAt)}`],
        ])}</section>
        <section><h2 id="payment-h">Payment</h2>${paymentFacts(s.payment)}</section>`;
    },
  };
}
