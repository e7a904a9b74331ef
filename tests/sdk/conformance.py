"""SDK conformance checks, run once per installed `peaq-os-sdk` version.

Usage (run.sh does this):
  PEAQOS_ORCHESTRATION_URL=http://127.0.0.1:PORT FAKE_MCR_URL=http://127.0.0.1:MCRPORT \
    python conformance.py
FAKE_MCR_URL is the fake_mcr.py that the server was started with as PEAQOS_MCR_API_URL.
Optional env: PEAQOS_API_KEY, SDK_CHECKS=<regex on check names>, SDK_TRACE=1.

Add a check with @check("name", since=..., until=...); checks run in file order and may
share data through ctx.state. Checks named "transport:*" use the version's internal
transport because that version has no public method for the call; they still send
exactly the headers/encoding that version sends.
"""

from __future__ import annotations

import re
import secrets
import sys

from harness import (  # harness sets DO_NOT_TRACK first
    TEST_PRIVATE_KEY, Ctx, FakeMcr, check, eventually, expect_api_error, main, step, wire)

from eth_account import Account
from eth_account.messages import encode_defunct

try:  # 0.12.x
    from peaq_os_sdk.orchestration.types.machine import (
        CreateMachineIdentityChallengeRequest, CreateMachineRequest, Machine,
        MachineIdentityProofInput, UpdateMachineRequest)
    from peaq_os_sdk.orchestration.types.agent_pairing import (
        AgentPairing, AgentProofInput, CreateAgentPairingChallengeRequest,
        CreateAgentPairingRequest, CreateAgentPairingSessionRequest, DelegationPolicy,
        UpdateAgentPairingRequest)
    from peaq_os_sdk.orchestration.types.machine_agent import (
        EnrollMachineAgentRequest, HeartbeatEndpointEntry, MachineAgent,
        MachineAgentHeartbeatRequest)
    from peaq_os_sdk.orchestration.types.runtime_endpoint import (
        RuntimeEndpoint, UpsertRuntimeEndpointRequest)
except ImportError:  # 0.2.0
    from peaq_os_sdk.types.orchestration.machine_agent import (
        EnrollMachineAgentRequest, HeartbeatEndpointEntry, MachineAgent,
        MachineAgentHeartbeatRequest)
    from peaq_os_sdk.types.orchestration.runtime_endpoint import (
        RuntimeEndpoint, UpsertRuntimeEndpointRequest)
    from peaq_os_sdk.types.orchestration.machine import (
        CreateMachineIdentityChallengeRequest, CreateMachineRequest, Machine,
        MachineIdentityProofInput, UpdateMachineRequest)
    from peaq_os_sdk.types.orchestration.agent_pairing import (
        AgentPairing, AgentProofInput, CreateAgentPairingChallengeRequest,
        CreateAgentPairingRequest, CreateAgentPairingSessionRequest, DelegationPolicy,
        UpdateAgentPairingRequest)

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --- health / readiness (orchestration.md §6) ------------------------------------------

@check("health", since="0.12.1")
def health(ctx: Ctx) -> None:
    res = ctx.orch.check_health()  # GET /api/v1/health, no headers
    assert res.ok is True, res


@check("transport:health", until="0.2.0")
def health_transport(ctx: Ctx) -> None:
    # 0.2.0 has a HealthResponse type but no method; its transport sends
    # content-type: application/json on this bodyless GET (README C1).
    raw = ctx.api("GET", "/health")
    assert isinstance(raw, dict) and raw.get("ok") is True, raw


def _assert_ready(res) -> None:
    assert isinstance(res.checks, tuple), type(res.checks)
    for c in res.checks:
        assert isinstance(c.name, str) and c.name, c
        assert c.status in ("pass", "fail"), c
    assert res.status == "ready", f"status={res.status} checks={res.checks}"
    assert res.checks and all(c.status == "pass" for c in res.checks), res.checks


@check("readiness", since="0.12.1")
def readiness(ctx: Ctx) -> None:
    # GET /api/v1/readiness, no headers. Retried briefly: checks may settle after start-up.
    eventually(lambda: _assert_ready(ctx.orch.get_readiness()))


@check("transport:readiness", until="0.2.0")
def readiness_transport(ctx: Ctx) -> None:
    from peaq_os_sdk.types.orchestration.observability import ReadinessCheck, ReadinessResponse

    def once() -> None:
        raw = ctx.api("GET", "/readiness")
        _assert_ready(ReadinessResponse(
            status=raw["status"],
            checks=tuple(ReadinessCheck(name=c["name"], status=c["status"],
                                        message=c.get("message")) for c in raw["checks"]),
        ))

    eventually(once)


# --- audit events (orchestration.md §5) ---------------------------------------------------

def _assert_audit_page(page, limit: int | None = None) -> None:
    assert isinstance(page.items, tuple), type(page.items)
    assert page.next_cursor is None or (isinstance(page.next_cursor, str) and page.next_cursor)
    if limit is not None:
        assert len(page.items) <= limit, (len(page.items), limit)
    for ev in page.items:
        assert ev.id.startswith("evt_"), ev
        assert ev.actor in ("api", "system:machine-markets"), ev
        assert ev.type and ev.resource_type and ev.resource_id, ev
        assert isinstance(ev.payload, dict), ev
        assert TS_RE.match(ev.created_at), ev.created_at
    stamps = [ev.created_at for ev in page.items]
    assert stamps == sorted(stamps, reverse=True), "audit events must be newest first"


@check("audit-events:list", since="0.12.1")
def audit_events(ctx: Ctx) -> None:
    _assert_audit_page(ctx.orch.list_audit_events())


@check("audit-events:filters", since="0.12.1")
def audit_events_filtered(ctx: Ctx) -> None:
    # Sends ?machineId=…&resourceType=…&limit=… — every query parameter 0.12.1 knows.
    page = ctx.orch.list_audit_events(machine_id="mach_01J9Z3K4Q7W8X5R2T6Y1V0B3N8",
                                      resource_type="machine", limit=5)
    _assert_audit_page(page, limit=5)
    assert all(ev.resource_type == "machine" for ev in page.items), page.items


# --- error envelope (README C6) -----------------------------------------------------------

@check("transport:unknown-route-envelope")
def unknown_route(ctx: Ctx) -> None:
    # A framework 404 must still be the JSON error envelope, not BAD_RESPONSE.
    expect_api_error(lambda: ctx.api("GET", "/no-such-route"), "NOT_FOUND", 404)


# --- machine identity and machines (identity-and-machines.md §1, §2, §4, §5, §7) -------------
#
# The server resolves identities through fake_mcr.py (ctx.mcr). Every check registers its own
# random DIDs there, so checks and reruns never share an identity. Verification mode is the
# default, `required`.

WALLET = Account.from_key(TEST_PRIVATE_KEY)  # the controller key for decimal identities
ADDR_RE = re.compile(r"^0x[0-9a-f]{40}$")
NONCE_RE = re.compile(r"^[0-9a-f]{64}$")
CHALLENGE_TTL_MS = 600_000  # PEAQOS_MACHINE_IDENTITY_CHALLENGE_TTL_MS default
SOLANA_KEY = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"  # not EVM: never a controller


def _mcr(ctx: Ctx) -> FakeMcr:
    assert ctx.mcr is not None, "FAKE_MCR_URL is not set (run the suite through run.sh)"
    return ctx.mcr


def _decimal() -> str:
    """A random 192-bit machine ID in canonical decimal (no leading zero)."""
    return str(secrets.randbits(192) | (1 << 191))


def _small_decimal() -> str:
    """A random machine ID that fits a JSON number exactly (< 2^53)."""
    return str(secrets.randbelow(2**52) + 2**52)


def _sign(account, message: str) -> str:
    """EIP-191 personal_sign of the exact message; 0x + 130 hex digits."""
    sig = account.sign_message(encode_defunct(text=message)).signature
    return "0x" + bytes(sig).hex()


def _ms(ts: str) -> int:
    from datetime import datetime
    return int(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000 + 0.5)


def _challenge(ctx: Ctx, identity_ref: str):
    return ctx.orch.create_machine_identity_challenge(
        CreateMachineIdentityChallengeRequest(identity_ref=identity_ref)).item


def _assert_challenge(ctx: Ctx, ch, canonical: str, controllers: list[str]) -> None:
    assert ch.challenge_id.startswith("mic_"), ch.challenge_id
    assert ch.identity_ref == canonical, (ch.identity_ref, canonical)
    assert ch.verification_method == "eip191", ch.verification_method
    assert TS_RE.match(ch.expires_at), ch.expires_at
    assert list(ch.controller_addresses) == controllers, (ch.controller_addresses, controllers)
    lines = ch.message.split("\n")
    assert len(lines) == 10, ch.message
    head = [
        "peaqOS machine identity proof",
        "",
        f"Sign this message to prove that you control the peaqOS machine identity {canonical}.",
        "",
        f"Identity: {canonical}",
        f"Orchestrator: {ctx.base_url.rstrip('/')}",  # scheme://Host; PEAQOS_PUBLIC_URL unset
        f"Challenge ID: {ch.challenge_id}",
    ]
    assert lines[:7] == head, (lines[:7], head)
    nonce, issued, expires = lines[7:]
    assert nonce.startswith("Nonce: ") and NONCE_RE.match(nonce[7:]), nonce
    assert issued.startswith("Issued At: ") and TS_RE.match(issued[11:]), issued
    assert expires == f"Expires At: {ch.expires_at}", (expires, ch.expires_at)
    assert _ms(ch.expires_at) - _ms(issued[11:]) == CHALLENGE_TTL_MS, (issued, ch.expires_at)


def _assert_proof(m, canonical: str, signer: str, challenge) -> None:
    p = m.identity_proof
    assert p is not None, "identity_proof is null"
    assert p.method == "eip191", p
    assert p.identity_ref == canonical, p
    assert p.signer_address == signer.lower(), (p.signer_address, signer)
    assert p.challenge_id == challenge.challenge_id, (p.challenge_id, challenge.challenge_id)
    assert p.challenge_expires_at == challenge.expires_at, p
    assert TS_RE.match(p.verified_at), p.verified_at
    assert p.resolution_source == "peaqos-mcr", p
    assert signer.lower() in p.controller_addresses, p.controller_addresses
    assert all(ADDR_RE.match(a) for a in p.controller_addresses), p.controller_addresses


def _create(ctx: Ctx, identity_ref: str, challenge_id: str, signature: str, **fields):
    body = dict(display_name="SDK conformance AMR", owner_id="owner_sdk_conformance",
                machine_type="amr", runtime_profile="ros2-humble")
    body.update(fields)
    return ctx.orch.create_machine(CreateMachineRequest(
        identity_ref=identity_ref,
        identity_proof=MachineIdentityProofInput(challenge_id=challenge_id, signature=signature),
        **body)).item


def _listed(ctx: Ctx) -> list:
    items = list(ctx.orch.list_machines_all(limit=2))  # small pages: exercises next_cursor
    ids = [x.id for x in items]
    assert len(ids) == len(set(ids)), f"duplicate ids across pages: {ids}"
    stamps = [x.created_at for x in items]
    assert stamps == sorted(stamps), "machines must be listed oldest first"
    return items


def _lifecycle(ctx: Ctx, *, identity_input: str, canonical: str, signer,
               controllers: list[str], fresh_proof_on_activate: bool = False) -> str:
    """challenge → sign → create → activate → get → list → update → archive → get."""
    orch = ctx.orch
    with step("challenge"):
        ch = _challenge(ctx, identity_input)
        _assert_challenge(ctx, ch, canonical, controllers)

    labels = {"site_name": "Dock 4", "zone": "a"}
    with step("create"):
        m = _create(ctx, identity_input, ch.challenge_id, _sign(signer, ch.message),
                    display_name=f"AMR {canonical[-6:]}", capabilities=("camera", "lidar", "camera"),
                    labels=labels, skill_keys=("navigate",))
        assert isinstance(m, Machine), type(m)
        assert m.id.startswith("mach_"), m.id
        assert m.status == "draft", m.status
        assert m.identity_ref == canonical, (m.identity_ref, canonical)
        assert (m.display_name, m.owner_id, m.machine_type, m.runtime_profile) == (
            f"AMR {canonical[-6:]}", "owner_sdk_conformance", "amr", "ros2-humble"), m
        assert m.capabilities == ("camera", "lidar"), m.capabilities  # duplicates dropped
        # The client camel-cases label keys on the way out and snake-cases them on the way back.
        assert dict(m.labels) == labels, m.labels
        assert m.policy_ids == () and m.skill_keys == ("navigate",), m
        assert TS_RE.match(m.created_at) and TS_RE.match(m.updated_at), m
        _assert_proof(m, canonical, signer.address, ch)

    with step("stored label keys (raw GET)"):
        status, body = ctx.raw("GET", f"/machines/{m.id}")
        assert status == 200, (status, body)
        assert body["item"]["labels"] == {"siteName": "Dock 4", "zone": "a"}, body["item"]["labels"]

    with step("activate"):
        proof_ch = ch
        if fresh_proof_on_activate:  # 0.12.1 may send a new proof on PATCH
            proof_ch = _challenge(ctx, identity_input)
            _assert_challenge(ctx, proof_ch, canonical, controllers)
            req = UpdateMachineRequest(status="active", identity_proof=MachineIdentityProofInput(
                challenge_id=proof_ch.challenge_id, signature=_sign(signer, proof_ch.message)))
        else:  # re-verifies the stored proof (0.2.0 cannot send one on PATCH)
            req = UpdateMachineRequest(status="active")
        a = orch.update_machine(m.id, req).item
        assert a.status == "active", a.status
        assert a.id == m.id and a.identity_ref == canonical, a
        assert a.created_at == m.created_at and a.updated_at >= m.updated_at, (m, a)
        _assert_proof(a, canonical, signer.address, proof_ch)

    with step("get"):
        g = orch.get_machine(m.id).item
        assert g == a, (g, a)

    with step("list"):
        found = [x for x in _listed(ctx) if x.id == m.id]
        assert len(found) == 1, f"{m.id} not listed"
        assert found[0] == a, (found[0], a)

    new_labels = {"site_name": "Dock 5", "floor_level": "2"}
    with step("update"):
        u = orch.update_machine(m.id, UpdateMachineRequest(
            display_name=f"AMR {canonical[-6:]} (renamed)", labels=new_labels,
            capabilities=("lidar",))).item
        assert u.display_name == f"AMR {canonical[-6:]} (renamed)", u.display_name
        assert dict(u.labels) == new_labels, u.labels  # maps replace as a whole
        assert u.capabilities == ("lidar",), u.capabilities
        assert u.skill_keys == ("navigate",), u.skill_keys  # absent: unchanged
        assert u.status == "active" and u.identity_ref == canonical, u
        _assert_proof(u, canonical, signer.address, proof_ch)
        assert orch.get_machine(m.id).item == u

    with step("archive"):
        assert orch.archive_machine(m.id) is None
        g = orch.get_machine(m.id).item
        assert g.status == "archived", g.status
        assert g.identity_ref == canonical and g.display_name == u.display_name, g
        assert m.id not in {x.id for x in _listed(ctx)}, "archived machines are not listed"
        orch.archive_machine(m.id)  # already archived: 204, no change
        assert orch.get_machine(m.id).item.status == "archived"
        expect_api_error(lambda: orch.update_machine(m.id, UpdateMachineRequest(display_name="x")),
                         "MACHINE_NOT_ACTIVE", 409)
    return m.id


@check("machines:lifecycle:hex-did", until="0.2.0")
def machines_hex_did(ctx: Ctx) -> None:
    # 0.12.1 refuses hex DIDs client-side. The DID's own address is the first controller,
    # then the MCR operator. Sent in checksum case; stored and returned lower-case.
    signer = Account.create()
    operator = Account.create().address
    did_input = "did:peaq:" + signer.address
    canonical = "did:peaq:" + signer.address.lower()
    _mcr(ctx).register(did_input, operator=operator, machine_id=int(_small_decimal()))
    _lifecycle(ctx, identity_input=did_input, canonical=canonical, signer=signer,
               controllers=[signer.address.lower(), operator.lower()])
    with step("MCR request"):
        seen = [r for r in _mcr(ctx).requests() if r["path"] == f"/machine/{canonical}"]
        assert seen, f"server never asked the MCR for {canonical}"
        assert all("application/json" in (r["accept"] or "") for r in seen), seen


@check("machines:lifecycle:decimal-did")
def machines_decimal_did(ctx: Ctx) -> None:
    # Controllers: operator, then controller; a Solana owner key is skipped. machine_id is a
    # canonical decimal string, as the real MCR sends it.
    did = f"did:peaq:{_decimal()}"
    controller = Account.create().address
    _mcr(ctx).register(did, operator=WALLET.address, controller=controller, owner=SOLANA_KEY)
    ctx.state["lifecycle_machine_id"] = _lifecycle(
        ctx, identity_input=did, canonical=did, signer=WALLET,
        controllers=[WALLET.address.lower(), controller.lower()],
        fresh_proof_on_activate=ctx.v >= (0, 12, 1))


@check("audit-events:machine-lifecycle", since="0.12.1")
def audit_machine_lifecycle(ctx: Ctx) -> None:
    # The decimal-did lifecycle above: create, activate, update, archive (newest first).
    mid = ctx.state.get("lifecycle_machine_id")
    assert mid, "machines:lifecycle:decimal-did did not complete"
    page = ctx.orch.list_audit_events(machine_id=mid, resource_type="machine", limit=50)
    _assert_audit_page(page)
    got = [(ev.type, ev.resource_id) for ev in page.items]
    want = [("machine.archived", mid), ("machine.updated", mid), ("machine.updated", mid),
            ("machine.created", mid)]
    assert got == want, got


@check("machines:lifecycle:alias")
def machines_alias(ctx: Ctx) -> None:
    # peaqos:machine:<n> in, did:peaq:<n> out. The operator is given as a hex DID; its address
    # is the controller. machine_id is a JSON number here.
    n = _small_decimal()
    did = f"did:peaq:{n}"
    _mcr(ctx).register(did, operator="did:peaq:" + WALLET.address, machine_id=int(n))
    _lifecycle(ctx, identity_input=f"peaqos:machine:{n}", canonical=did, signer=WALLET,
               controllers=[WALLET.address.lower()])


@check("machine-identity:mcr-uint256-machine-id")
def mcr_uint256_machine_id(ctx: Ctx) -> None:
    # §2: machine_id may be any non-negative JSON integer; uint256 IDs exceed 64 bits.
    n = _decimal()
    did = f"did:peaq:{n}"
    _mcr(ctx).register(did, operator=WALLET.address, machine_id=int(n))
    ch = _challenge(ctx, did)
    _assert_challenge(ctx, ch, did, [WALLET.address.lower()])


@check("machines:error:non-controller-signature")
def machines_non_controller(ctx: Ctx) -> None:
    did = f"did:peaq:{_decimal()}"
    _mcr(ctx).register(did, operator=WALLET.address)
    ch = _challenge(ctx, did)
    stranger = Account.create()
    with step("stranger signs"):
        e = expect_api_error(lambda: _create(ctx, did, ch.challenge_id, _sign(stranger, ch.message)),
                             "MACHINE_IDENTITY_PROOF_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "signer-not-controller", \
            e.details
    with step("failed proof left the challenge unconsumed"):
        m = _create(ctx, did, ch.challenge_id, _sign(WALLET, ch.message))
        assert m.status == "draft" and m.identity_proof is not None, m
    with step("same identity again"):
        e = expect_api_error(lambda: _create(ctx, did, ch.challenge_id, _sign(WALLET, ch.message)),
                             "MACHINE_IDENTITY_EXISTS", 409)
    with step("consumed challenge after archive"):
        ctx.orch.archive_machine(m.id)  # an archived machine's identity may be registered again
        e = expect_api_error(lambda: _create(ctx, did, ch.challenge_id, _sign(WALLET, ch.message)),
                             "MACHINE_IDENTITY_PROOF_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "challenge-consumed", \
            e.details


@check("machines:error:unknown-identity")
def machines_unknown_identity(ctx: Ctx) -> None:
    did = f"did:peaq:{_decimal()}"  # never registered: the fake MCR answers 404
    expect_api_error(lambda: _challenge(ctx, did), "MACHINE_NOT_ACTIVATED", 403)


@check("machines:error:mcr-unavailable")
def machines_mcr_unavailable(ctx: Ctx) -> None:
    did = f"did:peaq:{_decimal()}"
    _mcr(ctx).put(did, {"error": "maintenance"}, status=503)
    expect_api_error(lambda: _challenge(ctx, did), "PEAQOS_IDENTITY_UNAVAILABLE", 503)


@check("machines:error:unknown-machine")
def machines_unknown_machine(ctx: Ctx) -> None:
    e = expect_api_error(lambda: ctx.orch.get_machine("mach_01J9Z3K4Q7W8X5R2T6Y1V0B3N8"),
                         "NOT_FOUND", 404)
    assert isinstance(e.details, dict) and e.details.get("resource") == "machine", e.details



# --- agent pairings (pairings-and-auth.md §3–§9) -------------------------------------------
#
# Each check registers and activates its own machine (decimal DID: 0.12.1 accepts only
# did:peaq:<decimal> as a challenge's machine_identity_ref). Each agent is a fresh eth_account
# wallet that signs its own pairing challenges (EIP-191 personal_sign). Verification mode is the
# default, `required`.

SESSION_TTL_S = 3600  # PEAQOS_AGENT_PAIRING_SESSION_TTL_MS default / 1000
PAIRING_CHALLENGE_TTL_MS = 600_000  # PEAQOS_AGENT_PAIRING_CHALLENGE_TTL_MS default
JWT_CLAIMS = {"machineId", "pairingId", "sessionId", "agentAddress", "agentDid",
              "delegationPolicyHash", "iat", "exp", "jti", "iss"}


def _epoch_ms(ts: str) -> int:
    from datetime import datetime, timezone
    dt = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return round(dt.timestamp() * 1000)


def _machine(ctx: Ctx, *, activate: bool = True) -> tuple[str, str]:
    """Register a decimal DID in the MCR and create its machine (activated): (id, DID)."""
    did = f"did:peaq:{_decimal()}"
    _mcr(ctx).register(did, operator=WALLET.address)
    ch = _challenge(ctx, did)
    m = _create(ctx, did, ch.challenge_id, _sign(WALLET, ch.message),
                display_name=f"Pairing host {did[-6:]}")
    if activate:  # re-verifies the stored proof (both clients)
        a = ctx.orch.update_machine(m.id, UpdateMachineRequest(status="active")).item
        assert a.status == "active" and a.identity_proof is not None, a
    return m.id, did


def _pairing_challenge(ctx: Ctx, mid: str, address: str, provider: str, role: str,
                       did: str | None = None):
    return ctx.orch.create_agent_pairing_challenge(mid, CreateAgentPairingChallengeRequest(
        agent_address=address, agent_provider=provider, agent_role=role, agent_did=did)).item


def _agent_proof(account, ch) -> AgentProofInput:
    return AgentProofInput(challenge_id=ch.challenge_id, signature=_sign(account, ch.message))


def _derived_did(agent) -> str:
    return f"did:pkh:eip155:1:{agent.address}"  # eth_account's .address is EIP-55


def _assert_pairing_challenge(ctx: Ctx, ch, *, mid: str, did: str, agent, provider: str,
                              role: str, agent_did: str) -> None:
    assert ch.challenge_id.startswith("apc_"), ch.challenge_id
    assert ch.agent_address == agent.address, (ch.agent_address, agent.address)  # EIP-55
    assert ch.verification_method == "eip191", ch.verification_method
    assert TS_RE.match(ch.expires_at), ch.expires_at
    # 0.2.0 reads these three with .get(); the server sends all ten fields (§4.4).
    assert (ch.machine_id, ch.machine_identity_ref, ch.agent_did) == (mid, did, agent_did), ch
    if hasattr(ch, "agent_provider"):  # 0.12.1 only
        assert (ch.agent_provider, ch.agent_role) == (provider, role), ch
    lines = ch.message.split("\n")
    head = [
        "peaqOS machine agent pairing",
        "",
        "Sign this message to pair the agent below with the peaqOS machine below.",
        "",
        f"Machine ID: {mid}",
        f"Machine Identity: {did}",
        f"Agent Address: {agent.address}",
        f"Agent DID: {agent_did}",
        f"Agent Provider: {provider}",
        f"Agent Role: {role}",
        f"Orchestrator: {ctx.base_url.rstrip('/')}",
        f"Challenge ID: {ch.challenge_id}",
    ]
    assert len(lines) == 15, ch.message
    assert lines[:12] == head, (lines[:12], head)
    nonce, issued, expires = lines[12:]
    assert nonce.startswith("Nonce: ") and NONCE_RE.match(nonce[7:]), nonce
    assert issued.startswith("Issued At: ") and TS_RE.match(issued[11:]), issued
    assert expires == f"Expires At: {ch.expires_at}", (expires, ch.expires_at)
    assert _ms(ch.expires_at) - _ms(issued[11:]) == PAIRING_CHALLENGE_TTL_MS, (issued, ch.expires_at)


def _policy(**kw) -> DelegationPolicy:
    base = dict(allowed_skill_keys=(), denied_skill_keys=(), allowed_service_ids=(),
                denied_service_ids=())
    base.update(kw)
    return DelegationPolicy(**base)


def _policy_hash(pol) -> str:
    """§3.2: sha256 of the JCS form of the normalised wire policy (5.0 serialises as 5)."""
    import hashlib
    import json

    def num(x):
        return None if x is None else (int(x) if float(x).is_integer() else float(x))

    wire = {
        "allowedSkillKeys": list(pol.allowed_skill_keys),
        "deniedSkillKeys": list(pol.denied_skill_keys),
        "allowedServiceIds": list(pol.allowed_service_ids),
        "deniedServiceIds": list(pol.denied_service_ids),
        "perTransactionLimit": num(pol.per_transaction_limit),
        "dailySpendLimit": num(pol.daily_spend_limit),
        "currency": pol.currency,
    }
    canon = json.dumps(wire, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def _jwt(token: str) -> tuple[dict, dict]:
    import base64
    import json

    parts = token.split(".")
    assert len(parts) == 3 and all(parts), f"not a compact JWS: {len(parts)} parts"

    def dec(part: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return dec(parts[0]), dec(parts[1])


def _assert_pairing(p, *, mid: str, agent, provider: str, role: str, description, policy,
                    status: str, has_token: bool, challenge, with_token: bool) -> None:
    """Decoded AgentPairing fields (§4.1, §4.3). `challenge` is the last one verified."""
    assert isinstance(p, AgentPairing), type(p)
    assert p.id.startswith("apr_"), p.id
    assert p.machine_id == mid, (p.machine_id, mid)
    assert p.agent_address == agent.address, (p.agent_address, agent.address)  # EIP-55
    assert p.agent_did == _derived_did(agent), p.agent_did
    assert (p.agent_provider, p.agent_role, p.description) == (provider, role, description), p
    assert p.status == status, (p.status, status)
    assert p.has_auth_token is has_token, (p.has_auth_token, has_token)
    assert p.delegation_policy == policy, (p.delegation_policy, policy)
    assert TS_RE.match(p.created_at) and TS_RE.match(p.updated_at), p
    v = p.verification
    assert v is not None, "verification is null in mode required"
    assert v.method == "eip191", v
    assert v.signer_address == agent.address, (v.signer_address, agent.address)
    assert TS_RE.match(v.verified_at), v
    assert v.challenge_expires_at == challenge.expires_at, (v, challenge.expires_at)
    assert p.session_id and p.session_id.startswith("aps_"), p.session_id
    assert p.session_token_id and p.session_token_id.startswith("apt_"), p.session_token_id
    assert TS_RE.match(p.session_issued_at) and TS_RE.match(p.session_expires_at), p
    assert isinstance(p.token_last_four, str) and len(p.token_last_four) == 4, p.token_last_four
    if with_token:
        assert isinstance(p.pairing_token, str) and p.pairing_token, "pairing_token missing"
        assert p.token_last_four == p.pairing_token[-4:], (p.token_last_four, "token[-4:]")
    else:
        assert p.pairing_token is None, "pairing_token must only come with create/sessions"


def _assert_token(p, agent) -> None:
    """The pairing JWT (§3.1) carries the pairing's current session and policy hash."""
    header, claims = _jwt(p.pairing_token)
    assert header == {"alg": "HS256", "typ": "JWT"}, header
    assert set(claims) == JWT_CLAIMS, sorted(claims)
    assert claims["iss"] == "peaqos-orchestrator", claims["iss"]
    want = {"machineId": p.machine_id, "pairingId": p.id, "sessionId": p.session_id,
            "jti": p.session_token_id, "agentAddress": agent.address, "agentDid": p.agent_did,
            "delegationPolicyHash": _policy_hash(p.delegation_policy)}
    got = {k: claims[k] for k in want}
    assert got == want, (got, want)
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int), claims
    assert claims["exp"] - claims["iat"] == SESSION_TTL_S, claims
    assert claims["iat"] == _epoch_ms(p.session_issued_at) // 1000, (claims, p.session_issued_at)
    assert claims["exp"] == _epoch_ms(p.session_expires_at) // 1000, (claims, p.session_expires_at)


def _listed_pairings(ctx: Ctx, mid: str) -> list:
    items = list(ctx.orch.list_agent_pairings_all(mid, limit=1))  # one per page: uses the cursor
    ids = [x.id for x in items]
    assert len(ids) == len(set(ids)), f"duplicate ids across pages: {ids}"
    stamps = [x.created_at for x in items]
    assert stamps == sorted(stamps), "pairings must be listed oldest first"
    for x in items:
        assert x.pairing_token is None, f"{x.id}: list item carries a pairing token"
        assert x.has_auth_token in (True, False), x.has_auth_token
    return items


def _raw_pairing(ctx: Ctx, mid: str, pid: str, tokens: list[str]) -> dict:
    """The wire list item: no pairingToken key, no token anywhere in the page."""
    import json
    status, body = ctx.raw("GET", f"/machines/{mid}/agent-pairings")
    assert status == 200, (status, body)
    text = json.dumps(body)
    for t in tokens:
        assert t not in text, "a pairing token appears in the list response"
    found = [x for x in body["items"] if x["id"] == pid]
    assert len(found) == 1, f"{pid} listed {len(found)} times"
    item = found[0]
    assert "pairingToken" not in item, sorted(item)
    return item


def _only(items: list, pid: str):
    found = [x for x in items if x.id == pid]
    assert len(found) == 1, f"{pid} listed {len(found)} times"
    return found[0]


@check("agent-pairings:lifecycle")
def pairings_lifecycle(ctx: Ctx) -> None:
    """challenge → create → list → rotate → update policy → rotate → pause → resume → revoke."""
    import dataclasses
    orch = ctx.orch
    mid, did = _machine(ctx)
    agent = Account.create()
    provider, role, description = "anthropic", "buyer", "SDK conformance agent"
    agent_did = _derived_did(agent)
    tokens: list[str] = []
    sessions: list[str] = []

    with step("challenge"):
        # All-lower-case hex is accepted and returned in EIP-55 form (§5); agentDid is derived.
        ch = _pairing_challenge(ctx, mid, agent.address.lower(), provider, role)
        _assert_pairing_challenge(ctx, ch, mid=mid, did=did, agent=agent, provider=provider,
                                  role=role, agent_did=agent_did)

    # The clients send limits as floats (5.0) and all four lists; duplicates are dropped and
    # the currency upper-cased (§4.2).
    sent_policy = _policy(allowed_skill_keys=("navigate", "inspect", "navigate"),
                          denied_skill_keys=("teleop",), allowed_service_ids=(),
                          denied_service_ids=("svc_blocked", "svc_blocked"),
                          per_transaction_limit=5.0, daily_spend_limit=25.5, currency="usdc")
    policy = _policy(allowed_skill_keys=("navigate", "inspect"), denied_skill_keys=("teleop",),
                     denied_service_ids=("svc_blocked",), per_transaction_limit=5.0,
                     daily_spend_limit=25.5, currency="USDC")
    with step("create"):
        p = orch.create_agent_pairing(mid, CreateAgentPairingRequest(
            agent_address=agent.address, agent_provider=provider, agent_role=role,
            agent_proof=_agent_proof(agent, ch), description=description,
            delegation_policy=sent_policy)).item
        _assert_pairing(p, mid=mid, agent=agent, provider=provider, role=role,
                        description=description, policy=policy, status="active", has_token=True,
                        challenge=ch, with_token=True)
        _assert_token(p, agent)
        pid = p.id
        tokens.append(p.pairing_token)
        sessions.append(p.session_id)
        created = p

    with step("list"):
        got = _only(_listed_pairings(ctx, mid), pid)
        assert got == dataclasses.replace(created, pairing_token=None), (got, created)
        item = _raw_pairing(ctx, mid, pid, tokens)
        assert item["hasAuthToken"] is True, item["hasAuthToken"]
        assert item["verification"]["challengeId"] == ch.challenge_id, item["verification"]
        assert item["delegationPolicy"]["perTransactionLimit"] == 5, item["delegationPolicy"]

    def rotate(current, *, expect_policy):
        rc = _pairing_challenge(ctx, mid, current.agent_address, current.agent_provider,
                                current.agent_role, current.agent_did)
        _assert_pairing_challenge(ctx, rc, mid=mid, did=did, agent=agent, provider=provider,
                                  role=role, agent_did=agent_did)
        r = orch.create_agent_pairing_session(mid, pid, CreateAgentPairingSessionRequest(
            agent_proof=_agent_proof(agent, rc))).item
        _assert_pairing(r, mid=mid, agent=agent, provider=provider, role=role,
                        description=description, policy=expect_policy, status="active",
                        has_token=True, challenge=rc, with_token=True)
        _assert_token(r, agent)
        assert r.id == pid and r.created_at == current.created_at, (r, current)
        assert r.pairing_token not in tokens, "rotation returned a token seen before"
        assert r.session_id not in sessions, "rotation kept the session id"
        assert r.session_token_id != current.session_token_id, r.session_token_id
        item = _raw_pairing(ctx, mid, pid, tokens + [r.pairing_token])
        assert item["verification"]["challengeId"] == rc.challenge_id, item["verification"]
        tokens.append(r.pairing_token)
        sessions.append(r.session_id)
        return r, rc

    with step("rotate session"):
        r1, rc1 = rotate(created, expect_policy=policy)
        assert _only(_listed_pairings(ctx, mid), pid) == dataclasses.replace(r1, pairing_token=None)

    with step("rotation proof errors"):
        # The challenge just used is consumed (§7 check 3).
        e = expect_api_error(lambda: orch.create_agent_pairing_session(
            mid, pid, CreateAgentPairingSessionRequest(agent_proof=_agent_proof(agent, rc1))),
            "AGENT_PAIRING_PROOF_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "challenge-consumed", \
            e.details
        # A challenge for another role does not bind to the stored pairing (§7 check 6).
        other = _pairing_challenge(ctx, mid, agent.address, provider, "ops")
        e = expect_api_error(lambda: orch.create_agent_pairing_session(
            mid, pid, CreateAgentPairingSessionRequest(agent_proof=_agent_proof(agent, other))),
            "AGENT_PAIRING_PROOF_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "binding-mismatch" \
            and e.details.get("field") == "agentRole", e.details

    new_policy = _policy(allowed_service_ids=("svc_a", "svc_b"), per_transaction_limit=7.5,
                         currency="eur")  # the daily limit is left out: it becomes null
    policy2 = _policy(allowed_service_ids=("svc_a", "svc_b"), per_transaction_limit=7.5,
                      currency="EUR")
    with step("update policy"):
        u = orch.update_agent_pairing(mid, pid, UpdateAgentPairingRequest(
            delegation_policy=new_policy)).item
        _assert_pairing(u, mid=mid, agent=agent, provider=provider, role=role,
                        description=description, policy=policy2, status="active", has_token=True,
                        challenge=rc1, with_token=False)
        assert (u.session_id, u.session_token_id, u.token_last_four) == (
            r1.session_id, r1.session_token_id, r1.token_last_four), (u, r1)
        assert _policy_hash(policy2) != _policy_hash(policy)
        assert _only(_listed_pairings(ctx, mid), pid) == u

    with step("rotate after policy change"):
        r2, rc2 = rotate(u, expect_policy=policy2)  # the new token carries the new policy hash

    with step("pause"):
        pz = orch.update_agent_pairing(mid, pid, UpdateAgentPairingRequest(status="paused")).item
        _assert_pairing(pz, mid=mid, agent=agent, provider=provider, role=role,
                        description=description, policy=policy2, status="paused",
                        has_token=False, challenge=rc2, with_token=False)
        assert pz.session_id == r2.session_id and pz.token_last_four == r2.token_last_four, pz

    with step("rotate paused"):
        pc = _pairing_challenge(ctx, mid, agent.address, provider, role, agent_did)
        expect_api_error(lambda: orch.create_agent_pairing_session(
            mid, pid, CreateAgentPairingSessionRequest(agent_proof=_agent_proof(agent, pc))),
            "AGENT_PAIRING_INACTIVE", 403)

    with step("resume"):
        rs = orch.update_agent_pairing(mid, pid, UpdateAgentPairingRequest(status="active")).item
        _assert_pairing(rs, mid=mid, agent=agent, provider=provider, role=role,
                        description=description, policy=policy2, status="active", has_token=True,
                        challenge=rc2, with_token=False)
        assert rs.session_id == r2.session_id, "resuming must keep the session"

    with step("revoke"):
        assert orch.revoke_agent_pairing(mid, pid) is None
        rv = _only(_listed_pairings(ctx, mid), pid)
        _assert_pairing(rv, mid=mid, agent=agent, provider=provider, role=role,
                        description=description, policy=policy2, status="revoked",
                        has_token=False, challenge=rc2, with_token=False)
        # Session fields are kept for history (§4.1).
        assert (rv.session_id, rv.session_token_id, rv.token_last_four) == (
            r2.session_id, r2.session_token_id, r2.token_last_four), rv
        item = _raw_pairing(ctx, mid, pid, tokens)
        assert item["hasAuthToken"] is False, item["hasAuthToken"]

    with step("after revoke"):
        assert orch.revoke_agent_pairing(mid, pid) is None  # already revoked: 204, no change
        again = orch.update_agent_pairing(mid, pid, UpdateAgentPairingRequest(status="revoked"))
        assert again.item == rv, (again.item, rv)  # only status: revoked → 200, no change
        expect_api_error(lambda: orch.update_agent_pairing(
            mid, pid, UpdateAgentPairingRequest(description="x")), "AGENT_PAIRING_INACTIVE", 403)
        expect_api_error(lambda: orch.update_agent_pairing(
            mid, pid, UpdateAgentPairingRequest(status="active")), "AGENT_PAIRING_INACTIVE", 403)
        assert _only(_listed_pairings(ctx, mid), pid) == rv

    ctx.state["pairing_lifecycle"] = dict(
        machine_id=mid, pairing_id=pid, tokens=tokens, sessions=sessions, agent=agent.address,
        agent_did=agent_did, provider=provider, role=role,
        hashes=[_policy_hash(policy), _policy_hash(policy2)])


@check("audit-events:agent-pairing-lifecycle", since="0.12.1")
def audit_pairing_lifecycle(ctx: Ctx) -> None:
    import json
    st = ctx.state.get("pairing_lifecycle")
    assert st, "agent-pairings:lifecycle did not complete"
    mid, pid, tokens = st["machine_id"], st["pairing_id"], st["tokens"]
    h1, h2 = st["hashes"]
    s0, s1, s2 = st["sessions"]

    with step("client list"):
        page = ctx.orch.list_audit_events(machine_id=mid, resource_type="agent-pairing", limit=50)
        _assert_audit_page(page)
        got = [(ev.type, ev.resource_id) for ev in page.items]
        want = [(t, pid) for t in (
            "agent-pairing.revoked",          # DELETE (the second DELETE and the no-op PATCH: none)
            "agent-pairing.updated",          # resume
            "agent-pairing.updated",          # pause
            "agent-pairing.session-rotated",  # after the policy change
            "agent-pairing.updated",          # policy
            "agent-pairing.session-rotated",
            "agent-pairing.created")]
        assert got == want, got
        text = json.dumps([dict(ev.payload) for ev in page.items])
        for t in tokens:
            assert t not in text, "a pairing token appears in an audit payload"

    with step("wire payloads"):
        status, body = ctx.raw("GET", f"/audit-events?machineId={mid}&resourceType=agent-pairing"
                                      f"&limit=50")
        assert status == 200, (status, body)
        text = json.dumps(body)
        for t in tokens:
            assert t not in text, "a pairing token appears in the audit events response"
        assert "pairingToken" not in text, "an audit payload names a pairingToken"
        evs = body["items"]
        assert [e["type"] for e in evs] == [t for t, _ in want], [e["type"] for e in evs]
        assert all(e.get("machineId") == mid for e in evs), [e.get("machineId") for e in evs]
        revoked, resumed, paused, rot2, upd, rot1, created = (e["payload"] for e in evs)

        def has(payload: dict, **kv) -> None:
            sub = {k: payload.get(k) for k in kv}
            assert sub == kv, (payload, kv)

        has(created, agentAddress=st["agent"], agentDid=st["agent_did"],
            agentProvider=st["provider"], agentRole=st["role"], sessionId=s0,
            delegationPolicyHash=h1, verified=True)
        has(rot1, sessionId=s1, previousSessionId=s0, delegationPolicyHash=h1)
        has(upd, changedFields=["delegationPolicy"], delegationPolicyHash=h2)
        has(rot2, sessionId=s2, previousSessionId=s1, delegationPolicyHash=h2)
        has(paused, changedFields=["status"], statusFrom="active", statusTo="paused",
            delegationPolicyHash=h2)
        has(resumed, changedFields=["status"], statusFrom="paused", statusTo="active",
            delegationPolicyHash=h2)
        has(revoked, statusFrom="active")


@check("agent-pairings:error:foreign-signature")
def pairings_foreign_signature(ctx: Ctx) -> None:
    mid, did = _machine(ctx)
    agent, stranger = Account.create(), Account.create()
    # A supplied agentDid (another chain, lower-case address) is stored with the EIP-55 address;
    # the create request omits it and gets the challenge's value (§5, §8.3).
    supplied_did = f"did:pkh:eip155:8453:{agent.address.lower()}"
    ch = _pairing_challenge(ctx, mid, agent.address, "openai", "ops", supplied_did)
    _assert_pairing_challenge(ctx, ch, mid=mid, did=did, agent=agent, provider="openai",
                              role="ops", agent_did=f"did:pkh:eip155:8453:{agent.address}")

    def create(signer):
        return ctx.orch.create_agent_pairing(mid, CreateAgentPairingRequest(
            agent_address=agent.address, agent_provider="openai", agent_role="ops",
            agent_proof=_agent_proof(signer, ch))).item

    with step("another wallet signs"):
        e = expect_api_error(lambda: create(stranger), "AGENT_PAIRING_PROOF_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "signer-mismatch", \
            e.details
    with step("failed proof left the challenge unconsumed"):
        p = create(agent)
        assert p.status == "active" and p.verification is not None, p
        assert p.verification.signer_address == agent.address, p.verification
        # No delegationPolicy sent: the empty policy (§4.2).
        assert p.delegation_policy == _policy(), p.delegation_policy
        assert p.agent_did == f"did:pkh:eip155:8453:{agent.address}", p.agent_did
        assert p.description is None, p.description


@check("agent-pairings:error:draft-machine")
def pairings_draft_machine(ctx: Ctx) -> None:
    mid, _ = _machine(ctx, activate=False)
    agent = Account.create()
    with step("challenge"):
        e = expect_api_error(lambda: _pairing_challenge(ctx, mid, agent.address, "teneo", "buyer"),
                             "MACHINE_NOT_ACTIVE", 409)
        assert isinstance(e.details, dict) and e.details.get("status") == "draft", e.details
    with step("create"):
        proof = AgentProofInput(challenge_id="apc_01J9Z3K4Q7W8X5R2T6Y1V0B3N8",
                                signature="0x" + "11" * 65)
        e = expect_api_error(lambda: ctx.orch.create_agent_pairing(mid, CreateAgentPairingRequest(
            agent_address=agent.address, agent_provider="teneo", agent_role="buyer",
            agent_proof=proof)), "MACHINE_NOT_ACTIVE", 409)
        assert isinstance(e.details, dict) and e.details.get("status") == "draft", e.details
    with step("list (Gate A only)"):
        assert list(ctx.orch.list_agent_pairings_all(mid)) == []


# --- machine agents and runtime endpoints (agents-and-runtime.md §1, §2, §4, §5) ---------------
#
# Each check registers and activates its own machine (Gate B). Endpoints point at ctx.runtime, a
# stdlib HTTP server on loopback that answers 200 to every GET, so the prober (run.sh sets
# PEAQOS_RUNTIME_PROBE_INTERVAL_MS=1000) finds them healthy.

AGENT_TOKEN_RE = re.compile(r"^mat_[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url, no padding
AGENT_ID_RE = re.compile(r"^mag_")
ENDPOINT_ID_RE = re.compile(r"^rep_")
DEFAULT_LEASE_S = 120


def _secret(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(16)}"


def _enroll(ctx: Ctx, mid: str, params=None):
    return ctx.orch.enroll_machine_agent(mid, params).item


def _heartbeat(ctx: Ctx, mid: str, agent_id: str, token: str, endpoints, lease=None):
    return ctx.orch.machine_agent_heartbeat(MachineAgentHeartbeatRequest(
        machine_id=mid, agent_id=agent_id, agent_token=token, endpoints=tuple(endpoints),
        lease_ttl_seconds=lease)).item


def _one(exchanges: list, method: str, suffix: str):
    found = [x for x in exchanges if x.method == method and x.path.endswith(suffix)]
    assert len(found) == 1, (method, suffix, exchanges)
    return found[0]


def _no_secret(exchanges: list, secrets_: list[str], *, skip=()) -> None:
    """No secret string appears in any recorded response (except the exchanges in skip)."""
    for x in exchanges:
        if x in skip:
            continue
        for s in secrets_:
            assert s not in x.text, f"a secret appears in the response of {x}"


def _raw_ok(ctx: Ctx, path: str, secrets_: list[str]) -> dict:
    """Plain GET: 200, no secret anywhere and no authToken/agentToken/provisioningToken key."""
    import json
    status, body = ctx.raw("GET", path)
    assert status == 200, (path, status, body)
    text = json.dumps(body)
    for s in secrets_:
        assert s not in text, f"a secret appears in GET {path}"
    for k in ('"authToken"', '"agentToken"', '"provisioningToken"'):
        assert k not in text, f"GET {path} carries a {k} key"
    return body


def _lease_s(ep, observed_at: str) -> float:
    return (_epoch_ms(ep.lease_expires_at) - _epoch_ms(observed_at)) / 1000


def _assert_agent(a, *, mid: str, label: str, keys: tuple, status: str, seen: bool) -> None:
    assert isinstance(a, MachineAgent), type(a)
    assert AGENT_ID_RE.match(a.id), a.id
    assert a.machine_id == mid, (a.machine_id, mid)
    assert a.label == label, (a.label, label)
    assert a.allowed_provider_keys == keys, (a.allowed_provider_keys, keys)
    assert a.status == status, (a.status, status)
    assert TS_RE.match(a.created_at) and TS_RE.match(a.updated_at), a
    if seen:
        assert a.last_seen_at and TS_RE.match(a.last_seen_at), a.last_seen_at
    else:
        assert a.last_seen_at is None, a.last_seen_at


def _assert_endpoint(e, **want) -> None:
    assert isinstance(e, RuntimeEndpoint), type(e)
    assert ENDPOINT_ID_RE.match(e.id), e.id
    assert TS_RE.match(e.created_at) and TS_RE.match(e.updated_at), e
    got = {k: getattr(e, k) for k in want}
    assert got == want, (got, want)


def _stable(e) -> tuple:
    """Fields that the prober does not touch (it updates status and the check stamps)."""
    return (e.id, e.machine_id, e.provider_key, e.source, e.agent_id, e.label,
            e.endpoint_base_url, e.auth_type, e.has_auth_token, e.model_alias, e.network_scope,
            e.probe_path, e.lease_expires_at, e.created_at)


def _listed_agents(ctx: Ctx, mid: str) -> list:
    items = list(ctx.orch.list_machine_agents(mid).items)
    stamps = [x.created_at for x in items]
    assert stamps == sorted(stamps), "agents must be listed oldest first"
    for x in items:
        assert x.provisioning_token is None, f"{x.id}: list item carries a token"
    return items


def _listed_endpoints(ctx: Ctx, mid: str) -> list:
    items = list(ctx.orch.list_runtime_endpoints_all(mid, limit=1))  # one per page: the cursor
    ids = [x.id for x in items]
    assert len(ids) == len(set(ids)), f"duplicate ids across pages: {ids}"
    stamps = [x.created_at for x in items]
    assert stamps == sorted(stamps), "runtime endpoints must be listed oldest first"
    return items


@check("machine-agents:lifecycle")
def machine_agents_lifecycle(ctx: Ctx) -> None:
    """enrol → heartbeat → list → endpoints → heartbeat → prober → revoke → heartbeat refused."""
    orch = ctx.orch
    mid, _ = _machine(ctx)
    rt = ctx.runtime
    auth_token = _secret("rt-bearer")
    with wire(ctx) as ex:
        with step("enrol (no parameters)"):
            a = _enroll(ctx, mid)
            _assert_agent(a, mid=mid, label="Machine runtime agent", keys=("qvac",),
                          status="provisioned", seen=False)
            token = a.provisioning_token  # what both clients read (§4.2 Compatibility)
            assert isinstance(token, str) and AGENT_TOKEN_RE.match(token), "token format (§2)"
            x = _one(ex, "POST", f"/machines/{mid}/agents/enrollment")
            assert x.request_body == {}, x.request_body  # the clients send {} without params
            assert x.status == 201, x.status
            item = x.body["item"]
            assert item["agentToken"] == item["provisioningToken"] == token, "agentToken"
            assert item["hasAgentToken"] is True, item.get("hasAgentToken")
            enrol_x = x
            aid = a.id

        with step("list agents (provisioned)"):
            got = _only(_listed_agents(ctx, mid), aid)
            _assert_agent(got, mid=mid, label="Machine runtime agent", keys=("qvac",),
                          status="provisioned", seen=False)

        entry = HeartbeatEndpointEntry(
            provider_key="qvac", endpoint_base_url=f"{rt.origin}/v1/chat?x=1#frag",
            auth_type="bearer", auth_token=auth_token, model_alias="llama-3.2-1b")
        with step("heartbeat (default lease)"):
            hb = _heartbeat(ctx, mid, aid, token, [entry])
            assert (hb.machine_id, hb.agent_id) == (mid, aid), hb
            assert type(hb.lease_ttl_seconds) is int and hb.lease_ttl_seconds == DEFAULT_LEASE_S, \
                hb.lease_ttl_seconds
            assert TS_RE.match(hb.observed_at), hb.observed_at
            assert len(hb.endpoints) == 1, hb.endpoints
            he = hb.endpoints[0]
            assert (he.provider_key, he.endpoint_base_url, he.status) == (
                "qvac", rt.origin, "active"), he  # path, query and fragment dropped (§3)
            assert TS_RE.match(he.lease_expires_at), he.lease_expires_at
            assert abs(_lease_s(he, hb.observed_at) - DEFAULT_LEASE_S) <= 1, \
                (he.lease_expires_at, hb.observed_at)
            x = _one(ex, "POST", "/machine-agents/heartbeat")
            # What the clients send (§4.4 Compatibility): leaseTtlSeconds null, endpoint keys in
            # snake_case with every optional key an explicit null.
            assert x.request_body["leaseTtlSeconds"] is None, x.request_body
            assert x.request_body["endpoints"][0]["probe_path"] is None, x.request_body["endpoints"]
            assert x.status == 200, x.status
            assert "x-api-key" not in x.request_headers, "the heartbeat sends no API key"
            assert "agentToken" in x.request_body, sorted(x.request_body)  # token in the body
            item = x.body["item"]
            assert item["id"] == item["agentId"] == aid, item
            assert item["status"] == "active" and item["lastSeenAt"], item
            assert item["hasAgentToken"] is True, item
            assert [e["id"] for e in item["endpoints"]] == [e["id"] for e in x.body["endpoints"]], \
                "item.endpoints and endpoints must list the same records"
            for e in item["endpoints"] + x.body["endpoints"]:
                assert e["hasAuthToken"] is True and e["source"] == "agent", e
                assert e["agentId"] == aid, e
            first_hb = hb

        with step("list agents (active)"):
            got = _only(_listed_agents(ctx, mid), aid)
            _assert_agent(got, mid=mid, label="Machine runtime agent", keys=("qvac",),
                          status="active", seen=True)
            assert got.last_seen_at == hb.observed_at, (got.last_seen_at, hb.observed_at)
            body = _raw_ok(ctx, f"/machines/{mid}/agents", [token, auth_token])
            assert body["items"][0]["hasAgentToken"] is True, body["items"][0]

        want = dict(machine_id=mid, provider_key="qvac", source="agent", agent_id=aid,
                    label="QVAC runtime", endpoint_base_url=rt.origin, auth_type="bearer",
                    has_auth_token=True, model_alias="llama-3.2-1b", network_scope="loopback",
                    probe_path="/v1/models", lease_expires_at=he.lease_expires_at)
        with step("list/get runtime endpoints"):
            eps = _listed_endpoints(ctx, mid)
            assert len(eps) == 1, eps
            _assert_endpoint(eps[0], **want)
            g = orch.get_runtime_endpoint(mid, "qvac").item
            _assert_endpoint(g, **want)
            assert g.id == item["endpoints"][0]["id"], (g.id, item["endpoints"])
            body = _raw_ok(ctx, f"/machines/{mid}/runtime-endpoints", [token, auth_token])
            assert body["items"][0]["hasAuthToken"] is True, body["items"][0]
            body = _raw_ok(ctx, f"/machines/{mid}/runtime-endpoints/qvac", [token, auth_token])
            assert body["item"]["hasAuthToken"] is True, body["item"]

        with step("second heartbeat (lease 300, token retained)"):
            # authToken left out with the same authType: the stored token is kept (§5.3).
            entry2 = HeartbeatEndpointEntry(
                provider_key="qvac", endpoint_base_url=f"{rt.origin}/v2", auth_type="bearer",
                model_alias="llama-3.2-3b")
            hb2 = _heartbeat(ctx, mid, aid, token, [entry2], lease=300)
            assert hb2.lease_ttl_seconds == 300 and hb2.agent_id == aid, hb2
            assert hb2.observed_at >= first_hb.observed_at, (hb2.observed_at, first_hb.observed_at)
            he2 = hb2.endpoints[0]
            assert (he2.provider_key, he2.endpoint_base_url, he2.status) == (
                "qvac", rt.origin, "active"), he2
            assert abs(_lease_s(he2, hb2.observed_at) - 300) <= 1, (he2, hb2.observed_at)
            g2 = orch.get_runtime_endpoint(mid, "qvac").item
            _assert_endpoint(g2, **dict(want, model_alias="llama-3.2-3b",
                                        lease_expires_at=he2.lease_expires_at))
            assert g2.id == g.id and g2.created_at == g.created_at, (g2, g)
            got = _only(_listed_agents(ctx, mid), aid)
            assert got.status == "active" and got.last_seen_at == hb2.observed_at, got

        with step("prober (bearer token, healthy)"):
            def probed() -> None:
                hits = [h for p, h in rt.requests() if p == "/v1/models"
                        and h.get("authorization") == f"Bearer {auth_token}"]
                assert hits, f"no bearer probe of /v1/models yet: {[p for p, _ in rt.requests()]}"
                e = orch.get_runtime_endpoint(mid, "qvac").item
                assert e.status == "active" and e.last_healthy_at and e.last_checked_at, e
                assert TS_RE.match(e.last_healthy_at) and TS_RE.match(e.last_checked_at), e
            eventually(probed, timeout=15)

        with step("revoke"):
            assert orch.revoke_machine_agent(mid, aid) is None
            x = [e for e in ex if e.method == "DELETE"][-1]
            assert x.status == 204, x
            got = _only(_listed_agents(ctx, mid), aid)
            assert got.status == "revoked", got.status
            body = _raw_ok(ctx, f"/machines/{mid}/agents", [token, auth_token])
            assert body["items"][0]["hasAgentToken"] is False, body["items"][0]
            assert orch.revoke_machine_agent(mid, aid) is None  # already revoked: 204
            assert _only(_listed_agents(ctx, mid), aid) == got

        with step("heartbeat after revoke"):
            expect_api_error(lambda: _heartbeat(ctx, mid, aid, token, [entry2]),
                             "AGENT_PAIRING_INACTIVE", 403)

        with step("endpoint after revoke"):
            e = orch.get_runtime_endpoint(mid, "qvac").item
            assert e.status == "unreachable", e.status  # its lease ended with the agent (§4.3)
            assert e.lease_expires_at and e.lease_expires_at <= hb2.endpoints[0].lease_expires_at, e
            assert _only(_listed_endpoints(ctx, mid), e.id).status == "unreachable"

        with step("no token in any response"):
            _no_secret(ex, [token], skip=(enrol_x,))
            _no_secret(ex, [auth_token])
    ctx.state["agent_lifecycle"] = dict(machine_id=mid, agent_id=aid, endpoint_id=g.id,
                                        secrets=[token, auth_token])


@check("runtime-endpoints:manual-lifecycle")
def runtime_endpoints_manual(ctx: Ctx) -> None:
    """upsert (create) → get → upsert (update, token kept) → upsert (authType none) → list → delete."""
    orch = ctx.orch
    mid, _ = _machine(ctx)
    rt = ctx.runtime
    api_token = _secret("rt-api-key")
    with wire(ctx) as ex:
        with step("create (upper-case key)"):
            c = orch.upsert_runtime_endpoint(mid, "OLLAMA", UpsertRuntimeEndpointRequest(
                endpoint_base_url=f"HTTP://127.0.0.1:{rt.port}/api/tags?q=1", label="Ollama dock",
                auth_type="api-key", auth_token=api_token, model_alias="llama3",
                network_scope="vpn", probe_path="/api/tags")).item
            x = _one(ex, "PUT", f"/machines/{mid}/runtime-endpoints/OLLAMA")
            assert x.status == 201, f"create must answer 201, got {x.status}"
            want = dict(machine_id=mid, provider_key="ollama", source="manual", agent_id=None,
                        label="Ollama dock", endpoint_base_url=rt.origin, auth_type="api-key",
                        has_auth_token=True, model_alias="llama3", network_scope="vpn",
                        probe_path="/api/tags", status="active", lease_expires_at=None)
            _assert_endpoint(c, **want)

        with step("get (lower-cased key)"):
            g = orch.get_runtime_endpoint(mid, "ollama").item
            assert _stable(g) == _stable(c), (g, c)
            assert _stable(orch.get_runtime_endpoint(mid, "Ollama").item) == _stable(c)
            body = _raw_ok(ctx, f"/machines/{mid}/runtime-endpoints/ollama", [api_token])
            assert body["item"]["hasAuthToken"] is True, body["item"]

        with step("update (token kept)"):
            # No authToken, same authType: the stored token is kept; absent fields reset (§5.3).
            u = orch.upsert_runtime_endpoint(mid, "ollama", UpsertRuntimeEndpointRequest(
                endpoint_base_url=f"{rt.origin}/other", auth_type="api-key",
                status="degraded")).item
            x = [e for e in ex if e.method == "PUT"][-1]
            assert x.status == 200, f"update must answer 200, got {x.status}"
            _assert_endpoint(u, **dict(want, label="OLLAMA runtime", model_alias=None,
                                       network_scope="loopback", probe_path="/health",
                                       status="degraded"))
            assert u.id == c.id and u.created_at == c.created_at, (u, c)

        with step("update (authType none clears the token)"):
            n = orch.upsert_runtime_endpoint(mid, "ollama", UpsertRuntimeEndpointRequest(
                endpoint_base_url=rt.origin, auth_type="none")).item
            assert [e for e in ex if e.method == "PUT"][-1].status == 200
            assert n.id == c.id and n.auth_type == "none" and n.has_auth_token is False, n

        with step("list"):
            eps = _listed_endpoints(ctx, mid)
            assert [e.id for e in eps] == [c.id], eps
            assert _stable(eps[0]) == _stable(n), (eps[0], n)
            _raw_ok(ctx, f"/machines/{mid}/runtime-endpoints", [api_token])

        with step("delete"):
            assert orch.delete_runtime_endpoint(mid, "ollama") is None
            assert [e for e in ex if e.method == "DELETE"][-1].status == 204
            e = expect_api_error(lambda: orch.get_runtime_endpoint(mid, "ollama"), "NOT_FOUND", 404)
            assert isinstance(e.details, dict) and e.details.get("resource") == "runtime-endpoint", \
                e.details
            expect_api_error(lambda: orch.delete_runtime_endpoint(mid, "ollama"), "NOT_FOUND", 404)
            assert _listed_endpoints(ctx, mid) == []

        with step("no token in any response"):
            _no_secret(ex, [api_token])
    ctx.state["manual_endpoint"] = dict(machine_id=mid, endpoint_id=c.id, secrets=[api_token])


@check("machine-agents:error:wrong-token")
def machine_agents_wrong_token(ctx: Ctx) -> None:
    mid, _ = _machine(ctx)
    a = _enroll(ctx, mid)
    entry = HeartbeatEndpointEntry(provider_key="qvac", endpoint_base_url=ctx.runtime.origin)
    with step("wrong token"):
        wrong = "mat_" + secrets.token_urlsafe(32)[:43]
        expect_api_error(lambda: _heartbeat(ctx, mid, a.id, wrong, [entry]),
                         "AGENT_AUTH_INVALID", 401)
    with step("unknown agent"):
        expect_api_error(lambda: _heartbeat(ctx, mid, "mag_01J9Z3K4Q7W8X5R2T6Y1V0B3N8",
                                            a.provisioning_token, [entry]), "NOT_FOUND", 404)
    with step("nothing applied"):
        got = _only(_listed_agents(ctx, mid), a.id)
        assert got.status == "provisioned" and got.last_seen_at is None, got
        assert _listed_endpoints(ctx, mid) == []


@check("machine-agents:error:provider-not-allowed")
def machine_agents_policy_denied(ctx: Ctx) -> None:
    mid, _ = _machine(ctx)
    with step("enrol with keys"):
        # Lower-cased and de-duplicated (§4.2).
        a = _enroll(ctx, mid, EnrollMachineAgentRequest(
            label="Edge runtime", allowed_provider_keys=("QVAC", "qvac", "llamacpp")))
        _assert_agent(a, mid=mid, label="Edge runtime", keys=("qvac", "llamacpp"),
                      status="provisioned", seen=False)
    with step("heartbeat with a key outside allowedProviderKeys"):
        eps = [HeartbeatEndpointEntry(provider_key="qvac", endpoint_base_url=ctx.runtime.origin),
               HeartbeatEndpointEntry(provider_key="ollama", endpoint_base_url=ctx.runtime.origin)]
        e = expect_api_error(lambda: _heartbeat(ctx, mid, a.id, a.provisioning_token, eps),
                             "AGENT_POLICY_DENIED", 403)
        assert isinstance(e.details, dict) and e.details.get("provider_key") == "ollama", e.details
    with step("nothing applied"):
        got = _only(_listed_agents(ctx, mid), a.id)
        assert got.status == "provisioned" and got.last_seen_at is None, got
        assert _listed_endpoints(ctx, mid) == []


@check("machine-agents:error:draft-machine")
def machine_agents_draft_machine(ctx: Ctx) -> None:
    mid, _ = _machine(ctx, activate=False)

    def not_active(fn) -> None:
        e = expect_api_error(fn, "MACHINE_NOT_ACTIVE", 409)
        assert isinstance(e.details, dict) and e.details.get("status") == "draft", e.details

    with step("enrol"):
        not_active(lambda: _enroll(ctx, mid))
    with step("list agents"):
        not_active(lambda: ctx.orch.list_machine_agents(mid))
    with step("list runtime endpoints"):
        not_active(lambda: ctx.orch.list_runtime_endpoints(mid))
    with step("upsert runtime endpoint"):
        not_active(lambda: ctx.orch.upsert_runtime_endpoint(
            mid, "qvac", UpsertRuntimeEndpointRequest(endpoint_base_url=ctx.runtime.origin)))


@check("audit-events:machine-agents-and-endpoints", since="0.12.1")
def audit_agents_endpoints(ctx: Ctx) -> None:
    import json
    ag = ctx.state.get("agent_lifecycle")
    me = ctx.state.get("manual_endpoint")
    assert ag and me, "machine-agents:lifecycle or runtime-endpoints:manual-lifecycle did not complete"

    def api_events(mid: str, resource_type: str) -> list:
        page = ctx.orch.list_audit_events(machine_id=mid, resource_type=resource_type, limit=100)
        _assert_audit_page(page)
        # Prober/sweeper status changes (actor system:machine-markets) may interleave (§6).
        return [ev for ev in page.items if ev.actor == "api"]

    def wire_payloads(mid: str, resource_type: str, secrets_: list[str]) -> list[dict]:
        status, body = ctx.raw("GET", f"/audit-events?machineId={mid}&resourceType={resource_type}"
                                      f"&limit=100")
        assert status == 200, (status, body)
        text = json.dumps(body)
        for s in secrets_:
            assert s not in text, "a token appears in the audit events response"
        for k in ('"authToken"', '"agentToken"', '"provisioningToken"'):
            assert k not in text, f"an audit payload names {k}"
        evs = [e for e in body["items"] if e["actor"] == "api"]
        assert all(e.get("machineId") == mid for e in evs), [e.get("machineId") for e in evs]
        return [e["payload"] for e in evs]

    def has(payload: dict, **kv) -> None:
        sub = {k: payload.get(k) for k in kv}
        assert sub == kv, (payload, kv)

    with step("machine-agent events"):
        mid, aid = ag["machine_id"], ag["agent_id"]
        evs = api_events(mid, "machine-agent")
        got = [(ev.type, ev.resource_id) for ev in evs]
        want = [(t, aid) for t in ("machine-agent.revoked", "machine-agent.heartbeat",
                                   "machine-agent.heartbeat", "machine-agent.enrolled")]
        assert got == want, got  # the second revoke and the refused heartbeat: none
        revoked, hb2, hb1, enrolled = wire_payloads(mid, "machine-agent", ag["secrets"])
        has(enrolled, label="Machine runtime agent", allowedProviderKeys=["qvac"])
        has(hb1, leaseSeconds=120, endpoints=["qvac"])
        has(hb2, leaseSeconds=300, endpoints=["qvac"])
        has(revoked, endpointsExpired=["qvac"])

    with step("runtime-endpoint events"):
        mid, eid = me["machine_id"], me["endpoint_id"]
        evs = api_events(mid, "runtime-endpoint")
        got = [(ev.type, ev.resource_id) for ev in evs]
        # The spec does not fix resourceId for runtime-endpoint events. The server uses the rep_
        # id for upserts and the provider key for deletes (README: findings); either is accepted.
        if got and got[0] == ("runtime-endpoint.deleted", "ollama"):
            got[0] = ("runtime-endpoint.deleted", eid)
        want = [("runtime-endpoint.deleted", eid)] + [("runtime-endpoint.upserted", eid)] * 3
        assert got == want, got
        deleted, none, kept, created = wire_payloads(mid, "runtime-endpoint", me["secrets"])
        has(created, providerKey="ollama", source="manual", hasAuthToken=True, created=True,
            networkScope="vpn", status="active")
        has(kept, providerKey="ollama", source="manual", hasAuthToken=True, created=False,
            status="degraded")
        has(none, providerKey="ollama", source="manual", hasAuthToken=False, created=False)
        has(deleted, providerKey="ollama", source="manual")

    with step("agent lifecycle machine: no token in any event"):
        wire_payloads(ag["machine_id"], "runtime-endpoint", ag["secrets"])


if __name__ == "__main__":
    sys.exit(main())
