// Seeds a running server through its public API with what the console shows: machines, a
// pairing, an enrolled agent with a leased runtime endpoint (on a fake OpenAI-compatible runtime),
// a graph, a task executed into a route/run/outcome, a search with quotes, orders in several
// states with a payment, and skill credentials. Every secret it creates is returned in
// `secrets`, so the test can look for each one where it must never appear.
import { randomBytes } from "node:crypto";
import http from "node:http";

/** A thin client for one server: every call asserts the status it expects. */
export class Api {
  constructor(base, apiKey) {
    this.base = base;
    this.apiKey = apiKey;
  }

  async call(method, path, { body, expect = [200], headers = {} } = {}) {
    const h = { ...headers };
    if (this.apiKey) h["x-api-key"] = this.apiKey;
    if (body !== undefined) h["content-type"] = "application/json";
    const response = await fetch(this.base + path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    const wanted = Array.isArray(expect) ? expect : [expect];
    if (!wanted.includes(response.status)) {
      throw new Error(`${method} ${path}: HTTP ${response.status} (wanted ${wanted}): ${text}`);
    }
    return json;
  }

  get(path, opts) {
    return this.call("GET", path, opts);
  }
  post(path, body, opts = {}) {
    return this.call("POST", path, { expect: [201], ...opts, body });
  }
  patch(path, body, opts = {}) {
    return this.call("PATCH", path, { ...opts, body });
  }
  put(path, body, opts = {}) {
    return this.call("PUT", path, { expect: [200, 201], ...opts, body });
  }
}

/** A fake machine runtime on loopback: `/v1/models` for probes, OpenAI-style chat completions. */
export async function startFakeRuntime() {
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      if (req.method === "POST" && req.url === "/v1/chat/completions") {
        res.end(JSON.stringify({
          id: "chatcmpl-console",
          object: "chat.completion",
          model: "qvac-local",
          choices: [{ index: 0, finish_reason: "stop",
            message: { role: "assistant", content: "Shift log: two pallets moved, no incidents." } }],
        }));
      } else {
        res.end(JSON.stringify({ object: "list", data: [{ id: "qvac-local", object: "model" }] }));
      }
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

const hex = (bytes) => randomBytes(bytes).toString("hex");
const did = () => `did:peaq:${BigInt("0x" + hex(6))}`;

/** What the console test needs from a seeded server. */
export async function seed(api, runtimeUrl) {
  const secrets = {};

  // Machines: one active with everything on it, one draft (whose sub-resources answer
  // MACHINE_NOT_ACTIVE), one more active one.
  const created = await api.post("/api/v1/machines", {
    displayName: "Forklift 7", ownerId: "owner-hall-b", machineType: "forklift",
    runtimeProfile: "edge", identityRef: did(), capabilities: ["lift", "archive"],
    labels: { site: "Hall B", shift: "night" }, skillKeys: ["qvac-private-inference"],
  });
  const machineId = created.item.id;
  await api.patch(`/api/v1/machines/${machineId}`, { status: "active" });
  const draft = await api.post("/api/v1/machines", {
    displayName: "Drone 3", ownerId: "owner-hall-b", machineType: "drone",
    runtimeProfile: "edge", identityRef: did(),
  });
  const other = await api.post("/api/v1/machines", {
    displayName: "Sorter 2", ownerId: "owner-hall-a", machineType: "sorter",
    runtimeProfile: "cloud", identityRef: did(),
  });
  await api.patch(`/api/v1/machines/${other.item.id}`, { status: "active" });

  // A pairing (proofs are off on the test server) whose token drives the market calls.
  const agentAddress = "0x" + hex(20);
  const pairing = await api.post(`/api/v1/machines/${machineId}/agent-pairings`, {
    agentAddress, agentProvider: "anthropic", agentRole: "buyer",
    description: "Night-shift buyer",
    delegationPolicy: { perTransactionLimit: 5, dailySpendLimit: 20, currency: "USDT" },
  });
  const pairingId = pairing.item.id;
  secrets.pairingToken = pairing.item.pairingToken;
  const asAgent = { "x-agent-pairing-token": secrets.pairingToken };

  // An enrolled runtime agent. Its heartbeat (see `heartbeat`) leases the qvac endpoint.
  const agent = await api.post(`/api/v1/machines/${machineId}/agents/enrollment`, {
    label: "Edge box", allowedProviderKeys: ["qvac"],
  });
  const agentId = agent.item.id;
  secrets.agentToken = agent.item.agentToken;
  secrets.runtimeAuthToken = "runtime-secret-" + hex(8);
  const heartbeat = (leaseSeconds) =>
    api.post("/api/v1/machine-agents/heartbeat", {
      machineId, agentId, agentToken: secrets.agentToken, leaseSeconds,
      endpoints: [{ providerKey: "qvac", endpointBaseUrl: runtimeUrl, networkScope: "loopback",
        authType: "bearer", authToken: secrets.runtimeAuthToken, modelAlias: "qvac-local" }],
    }, { expect: [200] });
  // A long lease for the set-up; the test renews it with a short one before it watches it expire.
  await heartbeat(600);
  // A manual endpoint without a lease, which never expires.
  await api.put(`/api/v1/machines/${machineId}/runtime-endpoints/walrus`, {
    endpointBaseUrl: "http://127.0.0.1:9", label: "Walrus gateway", networkScope: "loopback",
  });

  // The machine graph.
  const node = async (type, title, x, y) =>
    (await api.post(`/api/v1/machines/${machineId}/graph/nodes`, { type, title, position: { x, y } })).item;
  const nodes = {
    machine: await node("machine", "Forklift 7", 40, 160),
    trigger: await node("trigger", "Shift ends", 40, 20),
    skill: await node("skill", "Private inference", 320, 100),
    storage: await node("storage", "Hall archive", 320, 260),
    outcome: await node("outcome", "Shift summary", 600, 160),
  };
  const edge = (source, target, type, label) =>
    api.post(`/api/v1/machines/${machineId}/graph/edges`, {
      sourceNodeId: source.id, targetNodeId: target.id, type, ...(label ? { label } : {}) });
  await edge(nodes.trigger, nodes.machine, "request", "at 06:00");
  await edge(nodes.machine, nodes.skill, "execute");
  await edge(nodes.machine, nodes.storage, "sync");
  await edge(nodes.skill, nodes.outcome, "result", "summary");

  // A task run on the machine's own runtime: a route, a run and an outcome.
  const task = await api.post(`/api/v1/machines/${machineId}/tasks`, {
    serviceType: "compute", taskType: "inference", operation: "run-private-inference",
    input: { prompt: "Summarise the shift log" }, constraints: { requireNativeExecution: true },
  });
  await api.post(`/api/v1/machines/${machineId}/tasks/${task.item.id}/discover`, undefined, { expect: [200] });
  await api.post(`/api/v1/machines/${machineId}/tasks/${task.item.id}/resolve`);
  await api.post(`/api/v1/machines/${machineId}/tasks/${task.item.id}/execute`, {}, { expect: [200] });

  // Stored credentials for the fixture skill: the console must never show them.
  secrets.skillCredential = "hall-credential-" + hex(8);
  await api.patch("/api/v1/skills/console.hall-archive/config", {
    credentials: { apiKey: secrets.skillCredential },
  });

  // A search with quotes, and orders in several states.
  const search = await api.post("/api/v1/market/search", {
    machineId, agentPairingId: pairingId, serviceType: "compute", maxResults: 5,
  }, { headers: asAgent });
  const qvacQuote = search.item.quotes.find((q) => q.serviceId === "qvac-private-inference");
  const order = (serviceId, extra = {}) =>
    api.post("/api/v1/market/orders", { machineId, agentPairingId: pairingId, serviceId, ...extra },
      { headers: asAgent });
  const delivered = await order("qvac-private-inference", {
    searchId: search.item.id, quoteId: qvacQuote.id, input: { prompt: "Summarise the shift log" },
  });
  await api.post(`/api/v1/market/orders/${delivered.item.id}/execute`, {}, { expect: [200], headers: asAgent });
  await api.post(`/api/v1/market/orders/${delivered.item.id}/confirm`, undefined, { expect: [200], headers: asAgent });
  const paid = await order("hall-archive:shift-logs", { input: { log: "night shift" } });
  const intent = await api.post(`/api/v1/market/orders/${paid.item.id}/payment-intent`, {}, { headers: asAgent });
  await api.post(`/api/v1/market/orders/${paid.item.id}/payment-proof`, {
    verificationMode: "recorded", chain: "eip155:3338", token: "USDT",
    payerAddress: intent.item.rail.payerAddress, payeeAddress: intent.item.rail.payeeAddress,
    amount: "0.5", transactionHash: "0x" + hex(32),
  }, { expect: [200, 201], headers: asAgent });
  const open = await order("qvac-private-inference", { input: { prompt: "Plan tomorrow" } });

  return {
    machineId, draftId: draft.item.id, otherMachineId: other.item.id, pairingId, agentId,
    nodes, taskId: task.item.id, searchId: search.item.id,
    orders: { delivered: delivered.item.id, paid: paid.item.id, open: open.item.id },
    heartbeat, secrets,
  };
}
