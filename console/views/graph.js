// The machine graph: nodes at their stored positions, edges between them, each with its type.
// Dragging a node (or moving it with the arrow keys) saves its position with
// PATCH /machines/{id}/graph/nodes/{nodeId}; the tables below list the same graph as text.
import { html, svg, nothing } from "../vendor/lit-html.js";
import { get, patch } from "../api.js";
import { badge, code, errorBox, table, time } from "../ui.js";

const W = 160;
const H = 56;
const PAD = 60;
const KEY_STEP = 10;

/** Where the segment from a's centre to b's centre leaves a's box. */
function border(cx, cy, dx, dy) {
  const t = Math.min(dx ? (W / 2) / Math.abs(dx) : Infinity, dy ? (H / 2) / Math.abs(dy) : Infinity);
  return [cx + dx * t, cy + dy * t];
}

export function graphView(ctx, [machineId]) {
  const base = `/machines/${machineId}/graph`;
  const s = { machine: null, nodes: [], edges: [], error: null, saveError: null, box: null, drag: null, saved: null };
  let svgElement = null;
  const keyTimers = new Map();

  function fit() {
    if (!s.nodes.length) {
      s.box = [0, 0, 800, 400];
      return;
    }
    const xs = s.nodes.map((n) => n.position.x);
    const ys = s.nodes.map((n) => n.position.y);
    const minX = Math.min(...xs) - PAD;
    const minY = Math.min(...ys) - PAD;
    s.box = [minX, minY, Math.max(...xs) + W + PAD - minX, Math.max(...ys) + H + PAD - minY];
  }

  function toGraph(event) {
    const point = svgElement.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    return point.matrixTransform(svgElement.getScreenCTM().inverse());
  }

  async function save(node, from) {
    const position = { x: Math.round(node.position.x), y: Math.round(node.position.y) };
    try {
      const saved = (await patch(`${base}/nodes/${node.id}`, { position })).item;
      Object.assign(node, saved);
      s.saveError = null;
      s.saved = node.id;
      ctx.announce(`Saved ${node.title} at ${saved.position.x}, ${saved.position.y}.`);
    } catch (error) {
      if (error.isAuth) return ctx.authFailed(error);
      node.position = from;
      s.saveError = error;
      ctx.update();
    }
  }

  function pointerDown(node, event) {
    if (event.button !== 0) return;
    svgElement = event.currentTarget.ownerSVGElement;
    event.currentTarget.setPointerCapture(event.pointerId);
    const start = toGraph(event);
    s.drag = { node, start, from: { ...node.position }, moved: false };
  }

  function pointerMove(node, event) {
    const drag = s.drag;
    if (!drag || drag.node !== node) return;
    const at = toGraph(event);
    const x = Math.round(drag.from.x + at.x - drag.start.x);
    const y = Math.round(drag.from.y + at.y - drag.start.y);
    if (x !== node.position.x || y !== node.position.y) {
      node.position = { x, y };
      drag.moved = true;
      ctx.update();
    }
  }

  function pointerUp(node) {
    const drag = s.drag;
    s.drag = null;
    if (drag && drag.node === node && drag.moved) save(node, drag.from);
  }

  function keyDown(node, event) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const step = event.shiftKey ? KEY_STEP * 5 : KEY_STEP;
    if (!keyTimers.has(node.id)) keyTimers.set(node.id, { from: { ...node.position } });
    node.position = { x: node.position.x + move[0] * step, y: node.position.y + move[1] * step };
    ctx.update();
    // One save after the keys stop, not one per key press.
    const pending = keyTimers.get(node.id);
    clearTimeout(pending.timer);
    pending.timer = setTimeout(() => {
      keyTimers.delete(node.id);
      save(node, pending.from);
    }, 500);
  }

  function drawEdge(edge, byId) {
    const a = byId.get(edge.sourceNodeId);
    const b = byId.get(edge.targetNodeId);
    if (!a || !b) return nothing;
    const ax = a.position.x + W / 2;
    const ay = a.position.y + H / 2;
    const caption = edge.label ? `${edge.type} · ${edge.label}` : edge.type;
    if (a === b) {
      const x = a.position.x + W;
      const y = a.position.y + H / 2;
      return svg`<g class="edge edge-${edge.type}"><path d=${`M ${x} ${y - 10} c 40 -30 40 50 0 20`} marker-end="url(#arrow)"></path>
        <text x=${x + 36} y=${y}>${caption}</text></g>`;
    }
    const dx = b.position.x + W / 2 - ax;
    const dy = b.position.y + H / 2 - ay;
    const [x1, y1] = border(ax, ay, dx, dy);
    const [x2, y2] = border(ax + dx, ay + dy, -dx, -dy);
    return svg`<g class="edge edge-${edge.type}" data-edge=${edge.id}>
      <line x1=${x1} y1=${y1} x2=${x2} y2=${y2} marker-end="url(#arrow)"></line>
      <text x=${(x1 + x2) / 2} y=${(y1 + y2) / 2 - 6} text-anchor="middle">${caption}</text></g>`;
  }

  function drawNode(node) {
    const { x, y } = node.position;
    const dragging = s.drag && s.drag.node === node;
    return svg`<g class="node node-${node.type} ${dragging ? "dragging" : ""}" transform=${`translate(${x} ${y})`}
        tabindex="0" role="button" data-node=${node.id}
        aria-label=${`${node.title}, ${node.type} node at ${x}, ${y}. Drag it, or move it with the arrow keys.`}
        @pointerdown=${(e) => pointerDown(node, e)} @pointermove=${(e) => pointerMove(node, e)}
        @pointerup=${() => pointerUp(node)} @pointercancel=${() => pointerUp(node)}
        @keydown=${(e) => keyDown(node, e)}>
      <rect width=${W} height=${H} rx="8"></rect>
      <text class="title" x="12" y="23">${node.title.length > 20 ? node.title.slice(0, 19) + "…" : node.title}</text>
      <text class="type" x="12" y="42">${node.type} · ${node.status}</text>
    </g>`;
  }

  function picture() {
    const byId = new Map(s.nodes.map((n) => [n.id, n]));
    const types = [...new Set(s.nodes.map((n) => n.type))];
    return html`
      <figure class="graph">
        <svg viewBox=${s.box.join(" ")} role="group" aria-label="Machine graph: ${s.nodes.length} nodes, ${s.edges.length} edges"
          preserveAspectRatio="xMidYMid meet">
          <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z"></path></marker></defs>
          ${s.edges.map((e) => drawEdge(e, byId))}
          ${s.nodes.map(drawNode)}
        </svg>
        <figcaption>
          Node types: ${types.map((t) => html`<span class="legend node-${t}">${t}</span>`)}.
          Positions are the stored <code>position</code> of each node (top-left corner).
        </figcaption>
      </figure>`;
  }

  return {
    title: "Graph",
    async load() {
      try {
        const [machine, graph] = await Promise.all([get(`/machines/${machineId}`), get(base)]);
        s.machine = machine.item;
        s.nodes = graph.nodes;
        s.edges = graph.edges;
        fit();
        document.title = `Graph of ${s.machine.displayName} · peaqOS console`;
      } catch (error) {
        if (error.isAuth) throw error;
        s.error = error;
      }
    },
    render() {
      const name = s.machine ? s.machine.displayName : machineId;
      const heading = html`<h1 tabindex="-1">Graph of ${name}</h1>
        <p class="lede"><a href=${`#/machines/${machineId}`}>Back to the machine</a> · Drag a node to move
          it, or focus it and use the arrow keys (Shift for larger steps); each move is saved.</p>`;
      if (s.error) return html`${heading}${errorBox(s.error)}`;
      if (!s.box) return html`${heading}<p class="muted">Loading…</p>`;
      const byId = new Map(s.nodes.map((n) => [n.id, n]));
      const title = (id) => (byId.get(id) ? byId.get(id).title : id);
      return html`${heading}
        ${errorBox(s.saveError, "The position was not saved; the node is back where it was.")}
        ${s.nodes.length ? picture() : html`<p class="muted empty">This machine has no graph nodes yet.</p>`}
        <section><h2 id="nodes-h">Nodes</h2>
        ${table("Graph nodes", [
          ["Title", (n) => n.title],
          ["Type", (n) => n.type],
          ["Status", (n) => badge(n.status)],
          ["Position", (n) => html`<span data-position=${n.id}>${n.position.x}, ${n.position.y}</span>`],
          ["Reference", (n) => code(n.refId)],
          ["Updated", (n) => time(n.updatedAt)],
        ], s.nodes, { empty: "No nodes." })}</section>
        <section><h2 id="edges-h">Edges</h2>
        ${table("Graph edges", [
          ["From", (e) => title(e.sourceNodeId)],
          ["To", (e) => title(e.targetNodeId)],
          ["Type", (e) => e.type],
          ["Label", (e) => e.label || html`<span class="muted">—</span>`],
          ["Updated", (e) => time(e.updatedAt)],
        ], s.edges, { empty: "No edges." })}</section>`;
    },
    dispose() {
      for (const pending of keyTimers.values()) clearTimeout(pending.timer);
    },
  };
}
