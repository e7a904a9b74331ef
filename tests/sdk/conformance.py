"""SDK conformance checks, run once per installed `peaq-os-sdk` version.

Usage (run.sh does this):
  PEAQOS_ORCHESTRATION_URL=http://127.0.0.1:PORT FAKE_MCR_URL=http://127.0.0.1:MCRPORT \
    python conformance.py
FAKE_MCR_URL is the fake_mcr.py that the server was started with as PEAQOS_MCR_API_URL.
The order and payment checks also need FAKE_PROVIDER_URL (fake_provider.py), ANVIL_URL (the
node the server verifies payments on) and SDK_CATALOG_DIR (the server's PEAQOS_CATALOG_DIR).
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
from collections.abc import Mapping

from harness import (  # harness sets DO_NOT_TRACK first
    TEST_PRIVATE_KEY, Ctx, FakeMcr, check, eventually, expect_api_error, main, step, wire)

from peaq_os_sdk.orchestration.market_services import (  # same module in both versions
    GetMarketServiceOptions, ListMarketServicesOptions)
from peaq_os_sdk.orchestration.skills import ListSkillsOptions

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
    from peaq_os_sdk.orchestration.types.skill import (
        SkillConfigResponse, SkillManifest, SkillManifestInput, SkillManifestOutput, SkillSummary,
        UpdateSkillConfigRequest)
    from peaq_os_sdk.orchestration.types.market_service import (
        MarketQuote, MarketService, QuotePricing)
    from peaq_os_sdk.orchestration.types.market_search import (
        MarketSearch, MarketSearchBudget, MarketSearchRequest, NormalizedTask)
    from peaq_os_sdk.orchestration.types.common import (
        ExternalHandoff, MarketPaymentRailRecommendation, ProviderCredentials, WalrusCredentials,
        WorldIdCredentials)
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
    from peaq_os_sdk.types.orchestration.skill import (
        SkillConfigResponse, SkillManifest, SkillManifestInput, SkillManifestOutput, SkillSummary,
        UpdateSkillConfigRequest)
    from peaq_os_sdk.types.orchestration.market_service import (
        MarketQuote, MarketService, QuotePricing)
    from peaq_os_sdk.types.orchestration.market_search import (
        MarketSearch, MarketSearchBudget, MarketSearchRequest, NormalizedTask)
    from peaq_os_sdk.types.orchestration.common import (
        ExternalHandoff, MarketPaymentRailRecommendation, ProviderCredentials, WalrusCredentials,
        WorldIdCredentials)

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


def _machine(ctx: Ctx, *, activate: bool = True, bond_status: str = "bonded") -> tuple[str, str]:
    """Register a decimal DID in the MCR and create its machine (activated): (id, DID)."""
    did = f"did:peaq:{_decimal()}"
    _mcr(ctx).register(did, operator=WALLET.address, bond_status=bond_status)
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


# --- catalogue: skills, services, adapters (catalogue-and-search.md §1–§7) -------------------
#
# The suite's server loads the built-in catalogue plus tests/sdk/catalog (PEAQOS_CATALOG_DIR, set
# by run.sh): 24 loopback compute services sdk-pool:node-01..24 (so `compute` has more than 25
# candidates), sdk-store:blob (api-key skill, storage) and sdk-desk:console (external handoff).
# Expected keys, ids and filter results are computed from those same files, so a new built-in
# entry does not break the checks. Platform calls carry the run's API key (the server requires
# it, run.sh); agent calls show what each version sends.

FIXTURE_UPDATED_AT = "2026-01-01T00:00:00.000Z"  # catalog/generate.py
QUOTE_TTL_MS = 300_000  # PEAQOS_MARKET_QUOTE_TTL_MS default
SCORE_FACTORS = {"execution", "capabilities", "region", "skill", "price", "maturity"}
ALIASES = {"storage": "storage.object", "compute": "compute.marketplace",
           "identity": "identity.proof-of-person", "location": "data.location",
           "rtk": "data.location", "gnss": "data.location", "defi": "oracle.price-feed",
           "commerce": "machine.commerce"}


def _catalog() -> dict:
    """The catalogue files the server loaded: {"skills"|"manifests"|"services"|"adapters":
    {key or id: entry}}."""
    import json
    from pathlib import Path
    cached = _catalog.__dict__.get("value")
    if cached is None:
        import os
        here = Path(__file__).resolve().parent
        files = sorted((here.parent.parent / "catalog").glob("*.json"))
        # run.sh's per-run PEAQOS_CATALOG_DIR: catalog/*.json plus the order services
        files += sorted(Path(os.environ.get("SDK_CATALOG_DIR") or here / "catalog").glob("*.json"))
        cached = {"skills": {}, "manifests": {}, "services": {}, "adapters": {}}
        for f in files:
            doc = json.loads(f.read_text())
            for kind, key in (("skills", "key"), ("manifests", "key"), ("services", "id"),
                              ("adapters", "providerKey")):
                for entry in doc.get(kind, []):
                    cached[kind][entry[key]] = entry
        assert "sdk-pool:node-24" in cached["services"], "tests/sdk/catalog is missing"
        _catalog.value = cached
    return cached


def _skill_keys(**filters) -> list[str]:
    return sorted(k for k, s in _catalog()["skills"].items()
                  if all(s[f] == v for f, v in filters.items()))


def _service_ids(**filters) -> list[str]:
    return sorted(k for k, s in _catalog()["services"].items()
                  if all(s[f] == v for f, v in filters.items()))


def _query(x) -> dict:
    import urllib.parse
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(x.url).query,
                                       keep_blank_values=True))


def _gets(exchanges: list, path: str) -> list:
    return [x for x in exchanges if x.method == "GET" and x.path == f"/api/v1{path}"]


def _assert_cursor_chain(pages: list, *, limit: int, filters: dict) -> None:
    """What a *_all iterator sent and got: the filters and limit on every page, each page's
    cursor the previous nextCursor, full pages until the last, and no nextCursor on the last."""
    assert pages, "no GET was made"
    for i, x in enumerate(pages):
        assert x.status == 200, (i, x.status, x.text[:300])
        want = {k: str(v) for k, v in filters.items()}
        want["limit"] = str(limit)
        if i:
            want["cursor"] = pages[i - 1].body["nextCursor"]
        assert _query(x) == want, (f"page {i + 1}", _query(x), want)
        n = len(x.body["items"])
        if i == len(pages) - 1:
            assert "nextCursor" not in x.body, f"last page carries nextCursor {x.body['nextCursor']!r}"
            assert n <= limit, (n, limit)
        else:
            nc = x.body.get("nextCursor")
            assert isinstance(nc, str) and nc, f"page {i + 1}: nextCursor {nc!r}"
            assert n == limit, f"page {i + 1} has {n} items, not {limit}, and a nextCursor"


def _pages_for(n: int, limit: int) -> int:
    return max(1, -(-n // limit))


def _assert_skill(s, entry: dict, *, auth_state: str) -> None:
    assert isinstance(s, SkillSummary), type(s)
    want = dict(key=entry["key"], provider_key=entry["providerKey"], label=entry["label"],
                description=entry["description"], direction=entry["direction"],
                scope=entry["scope"], source=entry["source"], listed_by=entry["listedBy"],
                last_verified_at=entry.get("lastVerifiedAt"), kind=entry["kind"],
                service_types=tuple(entry.get("serviceTypes", ())),
                operations=tuple(entry.get("operations", ())), auth_type=entry["authType"],
                auth_state=auth_state, access_mode=entry["accessMode"],
                distribution=entry["distribution"], maturity=entry["maturity"],
                execution_mode=entry["executionMode"],
                integration_status=entry["integrationStatus"],
                required_env=tuple(entry.get("requiredEnv", ())),
                requires_human_enablement=entry["requiresHumanEnablement"],
                reference_url=entry.get("referenceUrl"), artifact_url=entry.get("artifactUrl"))
    got = {k: getattr(s, k) for k in want}
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    h = entry.get("handoff")
    if h is None:
        assert s.handoff is None, s.handoff
    else:
        assert isinstance(s.handoff, ExternalHandoff), s.handoff
        assert (s.handoff.label, s.handoff.url, tuple(s.handoff.notes)) == (
            h["label"], h["url"], tuple(h.get("notes", ()))), s.handoff


def _default_auth_state(entry: dict) -> str:
    return "configured" if entry["authType"] in ("none", "local") else "unconfigured"


@check("skills:list")
def skills_list(ctx: Ctx) -> None:
    orch = ctx.orch
    cat = _catalog()["skills"]
    keys = sorted(cat)
    with step("list_skills (one page)"):
        page = orch.list_skills()
        assert isinstance(page.items, tuple), type(page.items)
        assert [s.key for s in page.items] == keys, [s.key for s in page.items]
        assert page.next_cursor is None, page.next_cursor
        for s in page.items:
            _assert_skill(s, cat[s.key], auth_state=_default_auth_state(cat[s.key]))

    with wire(ctx) as ex:
        with step("list_skills_all(limit=2) follows nextCursor"):
            items = list(orch.list_skills_all(limit=2))
            assert [s.key for s in items] == keys, [s.key for s in items]
            assert items == list(page.items), "the pages differ from the single page"
            pages = _gets(ex, "/skills")
            assert len(pages) == _pages_for(len(keys), 2), len(pages)
            _assert_cursor_chain(pages, limit=2, filters={})
        with step("wire fields"):
            for x in pages:
                for w in x.body["items"]:
                    assert w["enabled"] is True, w
                    assert TS_RE.match(w["updatedAt"]), w["updatedAt"]
                    assert w["authState"] in ("configured", "unconfigured"), w
            fixture = [w for x in pages for w in x.body["items"] if w["key"] == "sdk.compute-pool"]
            assert fixture[0]["updatedAt"] == FIXTURE_UPDATED_AT, fixture[0]["updatedAt"]

    with step("qvac-private-inference (spec §1 minimum)"):
        q = [s for s in page.items if s.key == "qvac-private-inference"]
        assert q, "qvac-private-inference is not listed"
        q = q[0]
        assert (q.provider_key, q.kind, q.service_types, q.operations) == (
            "qvac", "runtime", ("compute.marketplace",), ("run-private-inference",)), q
        assert (q.auth_type, q.auth_state, q.access_mode, q.distribution, q.maturity) == (
            "local", "configured", "local", "peaq-native", "beta"), q
        assert (q.execution_mode, q.integration_status) == ("native", "native"), q

    with wire(ctx) as ex:
        with step("filters"):
            for field, values in (("scope", ("core-product", "bootstrap-reference", "ecosystem")),
                                  ("direction", ("machine-offers", "machine-consumes")),
                                  ("source", ("peaq", "partner", "clawhub",
                                              "external-marketplace"))):
                for v in values:
                    got = [s.key for s in orch.list_skills_all(ListSkillsOptions(**{field: v}))]
                    assert got == _skill_keys(**{field: v}), (field, v, got)
            for x in _gets(ex, "/skills"):
                assert len(_query(x)) == 1, _query(x)  # only the filter that was set
        with step("three filters, one per page"):
            opts = ListSkillsOptions(scope="ecosystem", direction="machine-consumes",
                                     source="peaq")
            want = _skill_keys(scope="ecosystem", direction="machine-consumes", source="peaq")
            assert len(want) >= 2, want
            n = len(ex)
            got = [s.key for s in orch.list_skills_all(opts, limit=1)]
            assert got == want, got
            _assert_cursor_chain(_gets(ex[n:], "/skills"), limit=1, filters=dict(
                scope="ecosystem", direction="machine-consumes", source="peaq"))

    with step("unknown filter value"):
        e = expect_api_error(lambda: orch.list_skills(ListSkillsOptions(scope="everything")),
                             "VALIDATION_ERROR", 400)
        assert isinstance(e.details, dict) and e.details.get("field") == "scope", e.details
    with step("cursor with other filters"):
        first = orch.list_skills(limit=2)
        assert first.next_cursor, "no cursor on a page of 2"
        expect_api_error(lambda: orch.list_skills(ListSkillsOptions(source="peaq"), limit=2,
                                                  cursor=first.next_cursor),
                         "VALIDATION_ERROR", 400)
    with step("no API key"):
        expect_api_error(lambda: ctx.client_with_key(None).orchestration.list_skills(),
                         "AUTH_REQUIRED", 401)


@check("skills:get-and-manifest")
def skills_get(ctx: Ctx) -> None:
    orch = ctx.orch
    cat = _catalog()
    listed = {s.key: s for s in orch.list_skills_all()}
    for key in sorted(cat["skills"]):
        with step(f"get_skill {key}"):
            g = orch.get_skill(key).item
            assert g == listed[key], (g, listed[key])
        with step(f"get_skill_manifest {key}"):
            m = orch.get_skill_manifest(key).item
            want = cat["manifests"][key]
            assert isinstance(m, SkillManifest), type(m)
            assert (m.key, m.provider_key, m.label, m.summary) == (
                key, want["providerKey"], want["label"], want["summary"]), m
            assert isinstance(m.inputs, tuple) and isinstance(m.outputs, tuple), m
            assert all(isinstance(i, SkillManifestInput) for i in m.inputs), m.inputs
            assert all(isinstance(o, SkillManifestOutput) for o in m.outputs), m.outputs
            assert [(i.key, i.type, i.required, i.description) for i in m.inputs] == [
                (i["key"], i["type"], i["required"], i["description"]) for i in want["inputs"]]
            assert [(o.key, o.type, o.description) for o in m.outputs] == [
                (o["key"], o["type"], o["description"]) for o in want["outputs"]]
    with step("unknown key"):
        for fn in (orch.get_skill, orch.get_skill_manifest):
            e = expect_api_error(lambda: fn("sdk.no-such-skill"), "NOT_FOUND", 404)
            assert isinstance(e.details, dict) and e.details.get("resource") == "skill", e.details


@check("skills:config")
def skills_config(ctx: Ctx) -> None:
    """{} → credentials + settings → disable → {} again → invalid → re-enable; audit events."""
    import json
    orch = ctx.orch
    key = "sdk.credentialed-store"  # authType api-key; nothing else touches it
    entry = _catalog()["skills"][key]
    secret = _secret("skill-api-key")

    def config(c, *, enabled: bool, settings: dict, has_credentials: bool) -> None:
        assert isinstance(c, SkillConfigResponse), type(c)
        assert (c.skill_key, c.provider_key) == (key, entry["providerKey"]), c
        assert c.enabled is enabled and c.has_credentials is has_credentials, c
        assert dict(c.settings) == settings, c.settings
        assert TS_RE.match(c.updated_at), c.updated_at

    def wire_enabled() -> bool:
        status, body = ctx.raw("GET", f"/skills/{key}")
        assert status == 200, (status, body)
        return body["item"]["enabled"]

    settings_sent = {"max_tokens": 256, "mode": "fast", "verbose": True, "ratio": 0.5}
    with wire(ctx) as ex:
        with step("empty update (body {})"):
            c0 = orch.update_skill_config(key, UpdateSkillConfigRequest()).item
            config(c0, enabled=True, settings={}, has_credentials=False)
            assert c0.updated_at == FIXTURE_UPDATED_AT, c0.updated_at  # never written yet
            x = ex[-1]
            assert (x.method, x.path, x.status, x.request_body) == (
                "PATCH", f"/api/v1/skills/{key}/config", 200, {}), x
            assert orch.get_skill(key).item.auth_state == "unconfigured"

        with step("credentials and settings"):
            c1 = orch.update_skill_config(key, UpdateSkillConfigRequest(
                credentials={"api_key": secret}, settings=settings_sent)).item
            # The client camel-cases both maps; the server stores them as received (spec §4.4)
            # and the client snake-cases the settings again on the way back.
            x = ex[-1]
            assert x.request_body == {"credentials": {"apiKey": secret}, "settings": {
                "maxTokens": 256, "mode": "fast", "verbose": True, "ratio": 0.5}}, x.request_body
            assert x.body["item"]["settings"] == x.request_body["settings"], x.body
            assert x.body["item"]["hasCredentials"] is True, x.body
            config(c1, enabled=True, settings=settings_sent, has_credentials=True)
            assert c1.updated_at > c0.updated_at, (c1.updated_at, c0.updated_at)
            s = orch.get_skill(key).item
            _assert_skill(s, entry, auth_state="configured")

        with step("disable"):
            c2 = orch.update_skill_config(key, UpdateSkillConfigRequest(enabled=False)).item
            config(c2, enabled=False, settings=settings_sent, has_credentials=True)
            assert wire_enabled() is False
            # Services of disabled skills are still listed (§3).
            ids = [s.id for s in orch.list_market_services_all(
                ListMarketServicesOptions(provider_key=entry["providerKey"]))]
            assert ids == _service_ids(skillKey=key), ids

        with step("credentials {} is dropped by the client"):
            # strip_nones removes the empty map: clearing is unreachable from the clients (D1).
            c3 = orch.update_skill_config(key, UpdateSkillConfigRequest(credentials={})).item
            assert ex[-1].request_body == {}, ex[-1].request_body
            assert c3 == c2, (c3, c2)

        with step("invalid values"):
            e = expect_api_error(lambda: orch.update_skill_config(key, UpdateSkillConfigRequest(
                credentials={"api_key": "   "})), "VALIDATION_ERROR", 400)
            assert isinstance(e.details, dict) and e.details.get("field") == "credentials.apiKey", \
                e.details
            e = expect_api_error(lambda: orch.update_skill_config(key, UpdateSkillConfigRequest(
                settings={"nested": {"a": 1}})), "VALIDATION_ERROR", 400)
            assert isinstance(e.details, dict) and e.details.get("field") == "settings.nested", \
                e.details
            e = expect_api_error(lambda: orch.update_skill_config(
                "sdk.no-such-skill", UpdateSkillConfigRequest(enabled=True)), "NOT_FOUND", 404)
            assert isinstance(e.details, dict) and e.details.get("resource") == "skill", e.details

        with step("re-enable"):
            c4 = orch.update_skill_config(key, UpdateSkillConfigRequest(enabled=True)).item
            config(c4, enabled=True, settings=settings_sent, has_credentials=True)
            assert wire_enabled() is True

        with step("credentials never returned"):
            for x in ex:
                assert secret not in x.text, f"the credential appears in the response of {x}"
                if x.method == "PATCH" and x.status == 200:
                    assert "credentials" not in x.body["item"], x.body["item"]

    with step("audit events"):
        status, body = ctx.raw("GET", "/audit-events?resourceType=skill&limit=100")
        assert status == 200, (status, body)
        assert secret not in json.dumps(body), "a skill credential appears in an audit event"
        evs = [e for e in body["items"] if e["resourceId"] == key]
        assert [e["type"] for e in evs] == ["skill.config-updated"] * 3, [e["type"] for e in evs]
        enable, disable, first = (e["payload"] for e in evs)  # newest first; no-ops add nothing
        for p, enabled in ((first, True), (disable, False), (enable, True)):
            assert p["enabled"] is enabled and p["hasCredentials"] is True, p
            assert sorted(p["settingsKeys"]) == ["maxTokens", "mode", "ratio", "verbose"], p
            assert p["credentialKeys"] == ["apiKey"], p


def _assert_service(svc, entry: dict, *, integration_status: str | None = None) -> None:
    """A decoded MarketService against its catalogue entry (§2.4)."""
    assert isinstance(svc, MarketService), type(svc)
    want = dict(id=entry["id"], skill_key=entry["skillKey"], provider_key=entry["providerKey"],
                provider_id=entry["providerId"], provider_label=entry["providerLabel"],
                service_type=entry["serviceType"], name=entry["name"],
                description=entry["description"], operations=tuple(entry["operations"]),
                auth_type=entry["authType"], access_mode=entry["accessMode"],
                execution_mode=entry["executionMode"],
                integration_status=integration_status or entry["integrationStatus"],
                distribution=entry["distribution"], maturity=entry["maturity"],
                kind=entry["kind"], capabilities=tuple(entry.get("capabilities", ())),
                region=entry["region"], requires_human_enablement=entry["requiresHumanEnablement"],
                reference_url=entry.get("referenceUrl"), artifact_url=entry.get("artifactUrl"))
    got = {k: getattr(svc, k) for k in want}
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert type(svc.freshness_seconds) is int and svc.freshness_seconds >= 0, svc.freshness_seconds
    assert TS_RE.match(svc.updated_at), svc.updated_at
    if "updatedAt" in entry:
        assert svc.updated_at == entry["updatedAt"], svc.updated_at
        age_s = (_epoch_ms(_now_ts()) - _epoch_ms(entry["updatedAt"])) // 1000
        assert abs(svc.freshness_seconds - age_s) <= 5, (svc.freshness_seconds, age_s)
    assert isinstance(svc.metadata, Mapping), type(svc.metadata)
    h = entry.get("handoff")
    if h is None:
        assert svc.handoff is None, svc.handoff
    else:
        assert isinstance(svc.handoff, ExternalHandoff), svc.handoff
        assert (svc.handoff.label, svc.handoff.url, tuple(svc.handoff.notes)) == (
            h["label"], h["url"], tuple(h.get("notes", ()))), svc.handoff
    if hasattr(svc, "operation_contracts"):  # 0.12.1
        contracts = entry.get("operationContracts", [])
        assert [c.operation for c in svc.operation_contracts] == [
            c["operation"] for c in contracts], svc.operation_contracts
        for c, w in zip(svc.operation_contracts, contracts):
            assert [(f.key, f.type, f.description) for f in c.input_fields] == [
                (f["key"], f["type"], f.get("description")) for f in w.get("inputFields", [])], c
            assert [(f.key, f.type) for f in c.output_fields] == [
                (f["key"], f["type"]) for f in w.get("outputFields", [])], c
            assert dict(c.example_input) == w.get("exampleInput", {}), c.example_input  # verbatim
            assert c.summary == w.get("summary") and tuple(c.notes) == tuple(w.get("notes", ()))


def _now_ts() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _assert_service_wire(w: dict, entry: dict) -> None:
    """Fields the clients drop but the spec requires on the wire (§2.4)."""
    sid = entry["id"]
    assert w["consumption"] == {
        "adapterSetupPath": f"/api/v1/market/adapters/{entry['providerKey']}",
        "serviceDetailPath": f"/api/v1/market/services/{sid}",
        "marketSearchPath": "/api/v1/market/search"}, w.get("consumption")
    assert isinstance(w["endpoints"], list), w.get("endpoints")
    assert w["endpoint"] == (w["endpoints"][0] if w["endpoints"] else None), w.get("endpoint")
    assert w["pricing"]["mode"] in ("provider-defined", "fixed", "quote-required"), w["pricing"]
    assert isinstance(w["payment"]["defaultRail"], str), w["payment"]
    assert w["payment"]["required"] in (True, False), w["payment"]
    assert type(w["freshnessSeconds"]) is int, w["freshnessSeconds"]
    if "pricing" in entry:
        assert w["pricing"]["mode"] == entry["pricing"]["mode"], w["pricing"]
        if entry["pricing"].get("amount") is not None:
            assert w["pricing"]["amount"] == entry["pricing"]["amount"], w["pricing"]
    if "payment" in entry:
        for k in ("defaultRail", "required", "chain", "token", "tokenDecimals"):
            if k in entry["payment"]:
                assert w["payment"][k] == entry["payment"][k], (k, w["payment"])


def _fixture_node_checks(ctx: Ctx, svc) -> None:
    """sdk-pool:node-01: metadata keys and the exampleInput's mixed-case keys."""
    if ctx.v >= (0, 12, 1):  # exampleInput values are kept verbatim
        ex = dict(svc.operation_contracts[0].example_input)
        assert ex == {"job": {"image_ref": "busybox", "argV": ["true"]}, "max_seconds": 5}, ex
        assert svc.operation_contracts[0].provider_request == {"method": "POST", "path": "/jobs"}
    assert dict(svc.metadata) == {"fixture": True, "node_index": 1}, svc.metadata


@check("market-services:list")
def market_services_list(ctx: Ctx) -> None:
    orch = ctx.orch
    cat = _catalog()["services"]
    ids = sorted(cat)
    with step("list_market_services (one page, no machine)"):
        page = orch.list_market_services()
        assert [s.id for s in page.items] == ids, [s.id for s in page.items]
        assert page.next_cursor is None, page.next_cursor
        for s in page.items:
            _assert_service(s, cat[s.id])  # catalogue values unchanged without a machine (§3)
        _fixture_node_checks(ctx, [s for s in page.items if s.id == "sdk-pool:node-01"][0])

    with wire(ctx) as ex:
        with step("list_market_services_all(limit=2) follows nextCursor"):
            items = list(orch.list_market_services_all(limit=2))
            assert [s.id for s in items] == ids, [s.id for s in items]
            pages = _gets(ex, "/market/services")
            assert len(pages) == _pages_for(len(ids), 2), len(pages)
            _assert_cursor_chain(pages, limit=2, filters={})
            for x in pages:
                assert x.request_headers.get("x-api-key") == ctx.api_key, "platform auth"
                assert "x-agent-pairing-token" not in x.request_headers
                for w in x.body["items"]:
                    _assert_service_wire(w, cat[w["id"]])

        with step("service type, canonical and alias"):
            want = _service_ids(serviceType="compute.marketplace")
            assert len(want) > 25, want
            for st in ("compute.marketplace", "compute"):
                n = len(ex)
                got = [s.id for s in orch.list_market_services_all(
                    ListMarketServicesOptions(service_type=st), limit=10)]
                assert got == want, (st, got)
                _assert_cursor_chain(_gets(ex[n:], "/market/services"), limit=10,
                                     filters={"serviceType": st})
            for alias in ("gnss", "storage", "defi"):
                got = [s.id for s in orch.list_market_services_all(
                    ListMarketServicesOptions(service_type=alias))]
                assert got == _service_ids(serviceType=ALIASES[alias]), (alias, got)

        with step("execution mode"):
            for mode in ("native", "external-handoff"):
                got = [s.id for s in orch.list_market_services_all(
                    ListMarketServicesOptions(execution_mode=mode))]
                assert got == _service_ids(executionMode=mode), (mode, got)

        with step("provider key (lower-cased)"):
            got = [s.id for s in orch.list_market_services_all(
                ListMarketServicesOptions(provider_key="SDK-Pool"), limit=7)]
            assert got == _service_ids(providerKey="sdk-pool"), got

        with step("unknown provider key onem2m: empty list"):
            n = len(ex)
            p = orch.list_market_services(ListMarketServicesOptions(provider_key="onem2m"))
            assert p.items == () and p.next_cursor is None, p
            assert ex[n].body == {"items": []}, ex[n].text  # no nextCursor key (C5)

        with step("all four filters"):
            got = [s.id for s in orch.list_market_services_all(ListMarketServicesOptions(
                service_type="compute", execution_mode="native", provider_key="qvac"))]
            assert got == ["qvac-private-inference"], got

    with step("invalid filters"):
        for opts, field in ((ListMarketServicesOptions(service_type="teleport"), "serviceType"),
                            (ListMarketServicesOptions(execution_mode="remote"), "executionMode")):
            e = expect_api_error(lambda: orch.list_market_services(opts), "VALIDATION_ERROR", 400)
            assert isinstance(e.details, dict) and e.details.get("field") == field, e.details
    with step("unknown machine"):
        e = expect_api_error(lambda: orch.list_market_services(ListMarketServicesOptions(
            machine_id="mach_01J9Z3K4Q7W8X5R2T6Y1V0B3N8")), "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "machine", e.details


@check("market-services:get")
def market_services_get(ctx: Ctx) -> None:
    import dataclasses
    orch = ctx.orch
    cat = _catalog()["services"]
    listed = {s.id: s for s in orch.list_market_services_all()}
    with wire(ctx) as ex:
        for sid in sorted(cat):  # ids with ':' and '.' go into the path unencoded
            with step(f"get_market_service {sid}"):
                g = orch.get_market_service(sid).item
                _assert_service(g, cat[sid])
                want = dataclasses.replace(listed[sid], freshness_seconds=g.freshness_seconds)
                assert g == want, (g, want)
                assert g.freshness_seconds >= listed[sid].freshness_seconds
                x = ex[-1]
                assert x.path == f"/api/v1/market/services/{sid}" and _query(x) == {}, x.url
                _assert_service_wire(x.body["item"], cat[sid])
    _fixture_node_checks(ctx, orch.get_market_service("sdk-pool:node-01").item)
    with step("unknown service"):
        e = expect_api_error(lambda: orch.get_market_service("sdk-pool:no-such-node"),
                             "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "service", e.details


@check("transport:market-adapters")
def market_adapters(ctx: Ctx) -> None:
    """GET /market/adapters[/{providerKey}] (§6): no client method calls them; the version's
    transport does, with platform auth."""
    cat = _catalog()["adapters"]
    keys = sorted(cat)
    with step("list, two per page"):
        got, cursor, pages = [], None, 0
        while True:
            query = {"limit": "2"} if cursor is None else {"limit": "2", "cursor": cursor}
            page = ctx.api("GET", "/market/adapters", "list", auth="platform", query=query)
            pages += 1
            got += page["items"]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        assert [a["provider_key"] for a in got] == keys, [a["provider_key"] for a in got]
        assert pages == _pages_for(len(keys), 2), pages
    with step("each adapter, key lower-cased"):
        for key in keys:
            item = ctx.api("GET", f"/market/adapters/{key.upper()}", "item",
                           auth="platform")["item"]
            w = cat[key]
            assert (item["provider_key"], item["label"], item["integration_status"],
                    item["execution_mode"]) == (key, w["label"], w["integrationStatus"],
                                                w["executionMode"]), item
            assert item["credential_keys"] == w.get("credentialKeys", []), item
            assert item["docs_url"] == w.get("docsUrl"), item
            rt = w.get("runtimeEndpoint")
            assert item["runtime_endpoint"] == (None if rt is None else {
                "required": rt["required"], "probe_path": rt["probePath"]}), item
    with step("qvac (spec §1 minimum)"):
        q = ctx.api("GET", "/market/adapters/qvac", "item", auth="platform")["item"]
        assert q["runtime_endpoint"] == {"required": True, "probe_path": "/v1/models"}, q
        assert q["credential_keys"] == [] and q["docs_url"] == "https://robotic.sh/services/qvac"
    with step("unknown provider"):
        e = expect_api_error(lambda: ctx.api("GET", "/market/adapters/no-such-provider", "item",
                                             auth="platform"), "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "adapter", e.details


def _qvac_lease(ctx: Ctx, mid: str, lease: int = 3600):
    """Enrol a machine agent and heartbeat a qvac endpoint on ctx.runtime: (agent, endpoint)."""
    a = _enroll(ctx, mid)
    hb = _heartbeat(ctx, mid, a.id, a.provisioning_token, [HeartbeatEndpointEntry(
        provider_key="qvac", endpoint_base_url=ctx.runtime.origin, model_alias="llama-3.2-1b")],
        lease=lease)
    assert hb.endpoints and hb.endpoints[0].status == "active", hb
    return a, hb.endpoints[0]


def _paired(ctx: Ctx, mid: str, policy=None):
    """An active pairing on `mid` with a fresh agent wallet: (pairing, token)."""
    agent = Account.create()
    ch = _pairing_challenge(ctx, mid, agent.address, "sdk-market", "buyer")
    p = ctx.orch.create_agent_pairing(mid, CreateAgentPairingRequest(
        agent_address=agent.address, agent_provider="sdk-market", agent_role="buyer",
        agent_proof=_agent_proof(agent, ch), delegation_policy=policy)).item
    assert p.status == "active" and p.pairing_token, p
    return p, p.pairing_token


def _market_machine(ctx: Ctx) -> dict:
    """One active machine with a heartbeat-leased qvac endpoint (lease 1 h) and a pairing, made
    on first use and shared by the search and CLI checks (they only read it)."""
    mm = ctx.state.get("market_machine")
    if mm is None:
        mid, did = _machine(ctx)
        agent, endpoint = _qvac_lease(ctx, mid)
        p, token = _paired(ctx, mid)
        mm = dict(machine_id=mid, did=did, pairing_id=p.id, token=token, agent_id=agent.id)
        ctx.state["market_machine"] = mm
    return mm


def _integration(items, sid: str) -> str:
    found = [s for s in items if s.id == sid]
    assert len(found) == 1, f"{sid} listed {len(found)} times"
    return found[0].integration_status


@check("market-services:machine-scoped")
def market_services_machine_scoped(ctx: Ctx) -> None:
    """qvac is `native` only on a machine whose qvac runtime endpoint is effectively active."""
    import dataclasses
    orch = ctx.orch
    cat = _catalog()["services"]
    qvac = "qvac-private-inference"
    with step("machines"):
        mid, _ = _machine(ctx)
        other, _ = _machine(ctx)  # no runtime endpoint
        agent, _ = _qvac_lease(ctx, mid, lease=600)
    unscoped = {s.id: s for s in orch.list_market_services_all()}

    with wire(ctx) as ex:
        with step("list with machineId (qvac leased)"):
            items = list(orch.list_market_services_all(ListMarketServicesOptions(machine_id=mid),
                                                       limit=10))
            assert [s.id for s in items] == sorted(cat), [s.id for s in items]
            for s in items:
                want = "native" if s.id == qvac else cat[s.id]["integrationStatus"]
                if cat[s.id]["kind"] == "runtime" and s.id != qvac:
                    want = "local-config-required"
                _assert_service(s, cat[s.id], integration_status=want)
                if s.id != qvac:  # only runtime services change (§3)
                    assert s == dataclasses.replace(unscoped[s.id],
                                                    freshness_seconds=s.freshness_seconds), s.id
            _assert_cursor_chain(_gets(ex, "/market/services"), limit=10,
                                 filters={"machineId": mid})
        with step("list with machineId (no endpoint)"):
            items = list(orch.list_market_services_all(ListMarketServicesOptions(
                machine_id=other, provider_key="qvac")))
            assert _integration(items, qvac) == "local-config-required", items
        with step("get with and without machineId"):
            opts = GetMarketServiceOptions(machine_id=mid)
            assert orch.get_market_service(qvac, opts).item.integration_status == "native"
            assert _query(ex[-1]) == {"machineId": mid}, ex[-1].url
            assert orch.get_market_service(qvac, GetMarketServiceOptions(
                machine_id=other)).item.integration_status == "local-config-required"
            assert orch.get_market_service(qvac).item.integration_status == \
                cat[qvac]["integrationStatus"]  # catalogue value without a machine
            assert orch.get_market_service("walrus:blob-storage", opts).item.integration_status \
                == cat["walrus:blob-storage"]["integrationStatus"]

    if ctx.v >= (0, 12, 1):
        p, token = _paired(ctx, mid)
        with wire(ctx) as ex:
            with step("pairing token: list scoped to the token's machine"):
                items = list(orch.list_market_services_all(pairing_token=token, limit=10))
                assert [s.id for s in items] == sorted(cat), [s.id for s in items]
                assert _integration(items, qvac) == "native", items
                pages = _gets(ex, "/market/services")
                _assert_cursor_chain(pages, limit=10, filters={})  # no machineId in the query
                for x in pages:  # the token on every page, and the key beside it (C2)
                    assert x.request_headers.get("x-agent-pairing-token") == token, x
                    assert x.request_headers.get("x-api-key") == ctx.api_key, x
            with step("pairing token: machineId of the token"):
                items = list(orch.list_market_services_all(ListMarketServicesOptions(
                    machine_id=mid, provider_key="qvac"), pairing_token=token))
                assert _integration(items, qvac) == "native", items
            with step("pairing token: get"):
                g = orch.get_market_service(qvac, pairing_token=token).item
                assert isinstance(g, MarketService) and g.integration_status == "native", g
                assert ex[-1].request_headers.get("x-agent-pairing-token") == token
                g = orch.get_market_service(qvac, GetMarketServiceOptions(machine_id=mid),
                                            pairing_token=token).item
                assert g.integration_status == "native", g
            with step("pairing token: no API key (token only)"):
                bare = ctx.client_with_key(None)
                with wire(ctx, bare) as bx:
                    assert bare.orchestration.get_market_service(qvac, pairing_token=token) \
                        .item.integration_status == "native"
                    items = list(bare.orchestration.list_market_services_all(
                        ListMarketServicesOptions(provider_key="qvac"), pairing_token=token))
                    assert _integration(items, qvac) == "native", items
                    assert len(bx) == 2 and all(
                        "x-api-key" not in x.request_headers and x.status == 200 for x in bx), bx
            with step("pairing token: another machine"):
                e = expect_api_error(lambda: orch.get_market_service(
                    qvac, GetMarketServiceOptions(machine_id=other), pairing_token=token),
                    "AGENT_AUTH_INVALID", 401)
                assert isinstance(e.details, dict) and \
                    e.details.get("reason") == "machine-mismatch", e.details
                expect_api_error(lambda: orch.list_market_services(ListMarketServicesOptions(
                    machine_id=other), pairing_token=token), "AGENT_AUTH_INVALID", 401)
            with step("pairing token: not a token"):
                expect_api_error(lambda: orch.list_market_services(pairing_token="not-a-token"),
                                 "AGENT_AUTH_INVALID", 401)

    with step("lease ended (agent revoked)"):
        assert orch.revoke_machine_agent(mid, agent.id) is None
        items = list(orch.list_market_services_all(ListMarketServicesOptions(machine_id=mid)))
        assert _integration(items, qvac) == "local-config-required", items
        assert orch.get_market_service(qvac, GetMarketServiceOptions(
            machine_id=mid)).item.integration_status == "local-config-required"


# --- market search (catalogue-and-search.md §8, §9) -----------------------------------------

def _search(ctx: Ctx, token: str, client=None, **kw):
    orch = (client or ctx.client).orchestration
    return orch.search_market(MarketSearchRequest(**kw), token).item


def _assert_search(s, *, mid: str, pairing_id: str, service_type: str, status: str = "completed",
                   **task) -> None:
    """A decoded MarketSearch (§2.6) and each of its quotes against the catalogue."""
    cat = _catalog()["services"]
    assert isinstance(s, MarketSearch), type(s)
    assert s.id.startswith("srch_"), s.id
    assert (s.machine_id, s.agent_pairing_id, s.status) == (mid, pairing_id, status), s
    assert TS_RE.match(s.created_at), s.created_at
    nt = s.normalized_task
    assert isinstance(nt, NormalizedTask), type(nt)
    want = dict(service_type=service_type, required_capabilities=(), allow_external_handoff=True,
                require_native_execution=False, operation=None, region=None)
    want.update(task)
    got = {k: getattr(nt, k) for k in want}
    assert got == want, (got, want)
    assert isinstance(s.quotes, tuple), type(s.quotes)
    if status == "no_match":
        assert s.quotes == (), s.quotes
    else:
        assert s.quotes, "completed without quotes"
    ranked = [(-q.score, q.service_id) for q in s.quotes]
    assert ranked == sorted(ranked), f"quotes not ordered by score, then id: {ranked}"
    assert len({q.id for q in s.quotes}) == len(s.quotes), "duplicate quote ids"
    for q in s.quotes:
        assert isinstance(q, MarketQuote), type(q)
        e = cat[q.service_id]
        assert q.id.startswith("quo_"), q.id
        assert e["serviceType"] == service_type, (q.service_id, e["serviceType"])
        assert (q.skill_key, q.provider_key, q.execution_mode) == (
            e["skillKey"], e["providerKey"], e["executionMode"]), q
        assert q.operation == (nt.operation or e["operations"][0]), (q.operation, e["operations"])
        assert isinstance(q.score, float) and 0 <= q.score <= 1, q.score
        assert q.score == round(q.score, 4), q.score
        assert isinstance(q.reasons, tuple) and len(q.reasons) == len(SCORE_FACTORS), q.reasons
        assert {r.split(":", 1)[0] for r in q.reasons} == SCORE_FACTORS, q.reasons
        assert isinstance(q.pricing, QuotePricing), type(q.pricing)
        assert q.pricing.mode == e.get("pricing", {}).get("mode", "provider-defined"), q.pricing
        assert isinstance(q.payment, MarketPaymentRailRecommendation), type(q.payment)
        pay = e.get("payment", {"defaultRail": "not-required", "required": False})
        assert (q.payment.default_rail, q.payment.required) == (
            pay["defaultRail"], pay["required"]), q.payment
        assert TS_RE.match(q.expires_at), q.expires_at
        assert _epoch_ms(q.expires_at) - _epoch_ms(s.created_at) == QUOTE_TTL_MS, \
            (q.expires_at, s.created_at)
        if e["executionMode"] == "external-handoff":
            assert isinstance(q.handoff, ExternalHandoff), q.handoff
            assert (q.handoff.label, q.handoff.url) == (e["handoff"]["label"],
                                                        e["handoff"]["url"]), q.handoff
        else:
            assert q.handoff is None, q.handoff
        if nt.require_native_execution or not nt.allow_external_handoff:
            assert q.execution_mode == "native", q


def _quote(s, sid: str):
    found = [q for q in s.quotes if q.service_id == sid]
    assert len(found) == 1, f"{sid} quoted {len(found)} times: {[q.service_id for q in s.quotes]}"
    return found[0]


def _reason(q, factor: str) -> str:
    return [r for r in q.reasons if r.startswith(factor + ":")][0]


@check("market-search:token-only")
def market_search_token_only(ctx: Ctx) -> None:
    """0.2.0 sends only the token (even with an API key); 0.12.1 does without an API key.
    The server requires API keys on platform routes, and still accepts this (README C2)."""
    mm = _market_machine(ctx)
    mid, pid, token = mm["machine_id"], mm["pairing_id"], mm["token"]
    # 0.2.0's own client, which has the run's API key; 0.12.1 would send it, so use one without.
    client = ctx.client if ctx.v < (0, 12, 1) else ctx.client_with_key(None)
    with wire(ctx, client) as ex:
        with step("search (alias, maxResults above 25)"):
            s = _search(ctx, token, client, service_type="compute", max_results=40)
        with step("wire"):
            x = _one(ex, "POST", "/market/search")
            assert x.status == 201, x.status
            assert x.request_headers.get("x-agent-pairing-token") == token, x.request_headers
            assert "x-api-key" not in x.request_headers, "token only"
            assert x.request_body == {"serviceType": "compute", "maxResults": 40}, x.request_body
            wire_item = x.body["item"]
            assert wire_item["requestPayload"] == x.request_body, wire_item["requestPayload"]
            assert wire_item["normalizedTask"]["maxResults"] == 25, wire_item["normalizedTask"]
            assert wire_item["agentPairingId"] == pid, wire_item
            assert all(q["searchId"] == s.id for q in wire_item["quotes"]), "quote searchId"
    with step("decoded search"):
        _assert_search(s, mid=mid, pairing_id=pid, service_type="compute.marketplace")
        assert dict(s.request_payload) == {"service_type": "compute", "max_results": 40}, \
            s.request_payload  # the client snake-cases the stored request
        assert len(s.quotes) == 25, f"maxResults 40 must be clamped to 25, got {len(s.quotes)}"
    with step("qvac ranks first (native on the machine's active runtime endpoint)"):
        q = s.quotes[0]
        assert q.service_id == "qvac-private-inference", [x.service_id for x in s.quotes[:3]]
        assert (q.execution_mode, q.integration_status) == ("native", "native"), q
        assert q.pricing.mode == "fixed" and q.pricing.amount == 0, q.pricing
        assert (q.payment.default_rail, q.payment.required) == ("not-required", False), q.payment
        assert "active" in _reason(q, "execution"), q.reasons
    with step("get_market_search"):
        with wire(ctx) as ex:
            g = ctx.orch.get_market_search(s.id).item
            assert g == s, (g, s)
            x = ex[-1]
            assert x.request_headers.get("x-api-key") == ctx.api_key, "platform auth"
        status, body = ctx.raw("GET", f"/market/searches/{s.id}")
        assert status == 200, (status, body)
        assert body["item"] == wire_item, "GET must return the search exactly as created"
        e = expect_api_error(lambda: ctx.orch.get_market_search("srch_01J9Z3K4Q7W8X5R2T6Y1V0B3N8"),
                             "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "market-search", \
            e.details
    with step("audit event"):
        status, body = ctx.raw("GET", f"/audit-events?machineId={mid}&resourceType=market-search"
                                      f"&limit=100")
        assert status == 200, (status, body)
        evs = [e for e in body["items"] if e["resourceId"] == s.id]
        assert [e["type"] for e in evs] == ["market.search.created"], evs
        p = evs[0]["payload"]
        assert p == {"machineId": mid, "agentPairingId": pid, "serviceType": "compute.marketplace",
                     "status": "completed", "quoteCount": 25}, p
    ctx.state["market_search"] = s.id


@check("market-search:token-and-key", since="0.12.1")
def market_search_token_and_key(ctx: Ctx) -> None:
    """0.12.1 sends the API key beside the token when it has one; the key is checked too."""
    mm = _market_machine(ctx)
    mid, pid, token = mm["machine_id"], mm["pairing_id"], mm["token"]
    with wire(ctx) as ex:
        s = _search(ctx, token, service_type="compute.marketplace", max_results=3)
        x = _one(ex, "POST", "/market/search")
        assert x.status == 201, x.status
        assert x.request_headers.get("x-agent-pairing-token") == token, x.request_headers
        assert x.request_headers.get("x-api-key") == ctx.api_key, x.request_headers
    _assert_search(s, mid=mid, pairing_id=pid, service_type="compute.marketplace")
    assert len(s.quotes) == 3 and s.quotes[0].service_id == "qvac-private-inference", s.quotes
    assert ctx.orch.get_market_search(s.id).item == s
    with step("a wrong API key beside a valid token"):
        expect_api_error(lambda: _search(ctx, token, ctx.client_with_key("sdk-wrong-key"),
                                         service_type="compute"), "AUTH_INVALID", 401)


@check("market-search:criteria")
def market_search_criteria(ctx: Ctx) -> None:
    import json
    mm = _market_machine(ctx)
    mid, pid, token = mm["machine_id"], mm["pairing_id"], mm["token"]
    orch = ctx.orch
    with step("capabilities, region, operation (default maxResults 10), ids of the token"):
        s = _search(ctx, token, service_type="compute.marketplace", required_capabilities=("fast",),
                    region="EU-West", operation="run-job", machine_id=mid, agent_pairing_id=pid)
        _assert_search(s, mid=mid, pairing_id=pid, service_type="compute.marketplace",
                       required_capabilities=("fast",), region="EU-West", operation="run-job")
        want = [k for k, e in _catalog()["services"].items()
                if e["serviceType"] == "compute.marketplace" and "fast" in e.get("capabilities", [])
                and "run-job" in e["operations"]
                and e["region"].lower() in ("eu-west", "global")]
        assert len(want) > 10, want
        assert len(s.quotes) == 10 and {q.service_id for q in s.quotes} <= set(want), s.quotes
        for q in s.quotes:
            assert _reason(q, "capabilities") and q.operation == "run-job", q
    with step("maxResults 3"):
        s = _search(ctx, token, service_type="compute", max_results=3)
        assert len(s.quotes) == 3, s.quotes
    with step("requireNativeExecution"):
        s = _search(ctx, token, service_type="compute", require_native_execution=True,
                    max_results=25)
        _assert_search(s, mid=mid, pairing_id=pid, service_type="compute.marketplace",
                       require_native_execution=True)
        assert "aethir:gpu-cloud" not in {q.service_id for q in s.quotes}, s.quotes
    with step("external handoff allowed and refused"):
        s = _search(ctx, token, service_type="gnss")
        _assert_search(s, mid=mid, pairing_id=pid, service_type="data.location")
        h = _quote(s, "sdk-desk:console")
        assert h.execution_mode == "external-handoff" and h.handoff.label == "Open SDK desk", h
        assert h.payment.default_rail == "not-required" and h.pricing.mode == "quote-required", h
        s = _search(ctx, token, service_type="rtk", allow_external_handoff=False)
        _assert_search(s, mid=mid, pairing_id=pid, service_type="data.location",
                       allow_external_handoff=False)
        assert "sdk-desk:console" not in {q.service_id for q in s.quotes}, s.quotes
    with wire(ctx) as ex:
        with step("budget"):
            s = _search(ctx, token, service_type="compute", max_results=25,
                        budget=MarketSearchBudget(max=0.05, currency="USDC"))
            _assert_search(s, mid=mid, pairing_id=pid, service_type="compute.marketplace")
            x = _one(ex, "POST", "/market/search")
            assert x.request_body["budget"] == {"max": 0.05, "currency": "USDC"}, x.request_body
            assert x.body["item"]["normalizedTask"]["budget"] == {
                "max": 0.05, "amount": None, "preferred": None, "currency": "USDC"}, x.body["item"]
            for q in s.quotes:
                if q.pricing.mode == "fixed" and q.pricing.currency in (None, "USDC"):
                    assert q.pricing.amount <= 0.05, (q.service_id, q.pricing)
            pool = sorted(q.service_id for q in s.quotes if q.provider_key == "sdk-pool")
            assert pool == [f"sdk-pool:node-0{i}" for i in range(1, 6)], pool
        n = len(ex)
        with step("provider credentials (redacted)"):
            secret = _secret("walrus-token")
            creds = ProviderCredentials(walrus=WalrusCredentials(
                aggregator_url="http://127.0.0.1:9/aggregator", publisher_token=secret))
            s = _search(ctx, token, service_type="storage", provider_credentials=creds)
            _assert_search(s, mid=mid, pairing_id=pid, service_type="storage.object")
            x = _one(ex[n:], "POST", "/market/search")
            assert x.request_body["providerCredentials"] == {"walrus": {
                "aggregatorUrl": "http://127.0.0.1:9/aggregator", "publisherToken": secret}}, \
                x.request_body
            stored = x.body["item"]["requestPayload"]["providerCredentials"]
            assert stored == {"walrus": {"aggregatorUrl": "[REDACTED]",
                                         "publisherToken": "[REDACTED]"}}, stored
            assert dict(s.request_payload)["provider_credentials"] == {"walrus": {
                "aggregator_url": "[REDACTED]", "publisher_token": "[REDACTED]"}}, s.request_payload
            assert secret not in x.text and "127.0.0.1:9/aggregator" not in x.text, "not redacted"
            w = _quote(s, "walrus:blob-storage")
            assert "not found" not in _reason(w, "execution"), w.reasons  # credentials found
            # Stored skill credentials count too (skills:config may have set them).
            stored_creds = orch.get_skill("sdk.credentialed-store").item.auth_state == "configured"
            assert ("not found" in _reason(_quote(s, "sdk-store:blob"), "execution")) is \
                (not stored_creds), (stored_creds, _quote(s, "sdk-store:blob").reasons)
            g = orch.get_market_search(s.id).item
            assert g == s, (g, s)
            status, body = ctx.raw("GET", f"/market/searches/{s.id}")
            assert secret not in json.dumps(body), "a provider credential is stored"
        with step("provider credentials: worldId matches world-id"):
            creds = ProviderCredentials(world_id=WorldIdCredentials(
                app_id="app_sdk", rp_id="rp_sdk", verify_base_url="http://127.0.0.1:9/verify"))
            s = _search(ctx, token, service_type="identity", provider_credentials=creds)
            _assert_search(s, mid=mid, pairing_id=pid, service_type="identity.proof-of-person")
            x = [e for e in ex if e.method == "POST"][-1]
            assert set(x.request_body["providerCredentials"]) == {"worldId"}, x.request_body
            w = _quote(s, "world-id:verify-proof")
            assert "not found" not in _reason(w, "execution"), w.reasons  # §8.1 Compatibility
    with step("disabled skill is left out"):
        key = "sdk.credentialed-store"
        orch.update_skill_config(key, UpdateSkillConfigRequest(enabled=False))
        try:
            s = _search(ctx, token, service_type="storage")
            assert "sdk-store:blob" not in {q.service_id for q in s.quotes}, s.quotes
        finally:
            orch.update_skill_config(key, UpdateSkillConfigRequest(enabled=True))
        s = _search(ctx, token, service_type="storage")
        _quote(s, "sdk-store:blob")
    with step("delegation policy filters"):
        p2, token2 = _paired(ctx, mid, _policy(
            allowed_service_ids=("qvac-private-inference", "akash:console-deployments",
                                 "sdk-pool:node-01"),
            denied_skill_keys=("akash-console-compute",)))
        s = _search(ctx, token2, service_type="compute")
        _assert_search(s, mid=mid, pairing_id=p2.id, service_type="compute.marketplace")
        assert [q.service_id for q in s.quotes] == ["qvac-private-inference", "sdk-pool:node-01"], \
            [q.service_id for q in s.quotes]
    with step("no match"):
        s = _search(ctx, token, service_type="compute", required_capabilities=("no-such-cap",))
        _assert_search(s, mid=mid, pairing_id=pid, service_type="compute.marketplace",
                       status="no_match", required_capabilities=("no-such-cap",))
        assert orch.get_market_search(s.id).item == s


@check("market-search:errors")
def market_search_errors(ctx: Ctx) -> None:
    mm = _market_machine(ctx)
    mid, token = mm["machine_id"], mm["token"]

    def invalid(field: str, **kw) -> None:
        e = expect_api_error(lambda: _search(ctx, token, **kw), "VALIDATION_ERROR", 400)
        assert isinstance(e.details, dict) and e.details.get("field") == field, e.details

    with step("no serviceType"):
        invalid("serviceType")
    with step("unknown serviceType"):
        invalid("serviceType", service_type="teleport")
    with step("maxResults 0"):
        invalid("maxResults", service_type="compute", max_results=0)
    with step("another machine than the token's"):
        other, _ = _machine(ctx)
        e = expect_api_error(lambda: _search(ctx, token, service_type="compute", machine_id=other),
                             "AGENT_AUTH_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "machine-mismatch", \
            e.details
    with step("another pairing than the token's"):
        e = expect_api_error(lambda: _search(ctx, token, service_type="compute", machine_id=mid,
                                             agent_pairing_id="apr_01J9Z3K4Q7W8X5R2T6Y1V0B3N8"),
                             "AGENT_AUTH_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "pairing-mismatch", \
            e.details
    with step("not a token"):
        e = expect_api_error(lambda: _search(ctx, "not-a-token", service_type="compute"),
                             "AGENT_AUTH_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "malformed", e.details
    with step("no token (the version's transport, platform auth)"):
        expect_api_error(lambda: ctx.api("POST", "/market/search", "item", auth="platform",
                                         body={"machineId": mid, "serviceType": "compute"}),
                         "AGENT_AUTH_REQUIRED", 401)
    with step("paused pairing"):
        p, paused_token = _paired(ctx, mid)
        ctx.orch.update_agent_pairing(mid, p.id, UpdateAgentPairingRequest(status="paused"))
        e = expect_api_error(lambda: _search(ctx, paused_token, service_type="compute"),
                             "AGENT_PAIRING_INACTIVE", 403)
        assert isinstance(e.details, dict) and e.details.get("status") == "paused", e.details
        if ctx.v >= (0, 12, 1):  # agent-optional routes validate a token in full too
            expect_api_error(lambda: ctx.orch.get_market_service(
                "qvac-private-inference", pairing_token=paused_token),
                "AGENT_PAIRING_INACTIVE", 403)
            expect_api_error(lambda: ctx.orch.list_market_services(pairing_token=paused_token),
                             "AGENT_PAIRING_INACTIVE", 403)
    with step("machine not bonded (Gate C)"):
        unbonded, _ = _machine(ctx, bond_status="unbonded")
        _, unbonded_token = _paired(ctx, unbonded)  # pairing needs Gate B only
        e = expect_api_error(lambda: _search(ctx, unbonded_token, service_type="compute"),
                             "MACHINE_NOT_ACTIVATED", 403)
        assert isinstance(e.details, dict) and e.details.get("reason") == "not-bonded", e.details


@check("market-search:max-results-above-int64")
def market_search_huge_max_results(ctx: Ctx) -> None:
    # §8.1: "Values above 25 are clamped to 25 (the CLI passes any integer through)". Python ints
    # are unbounded; `peaqos scale search --max-results 99999999999999999999` sends this too.
    mm = _market_machine(ctx)
    s = _search(ctx, mm["token"], service_type="compute", max_results=10**20)
    assert len(s.quotes) == 25, len(s.quotes)


# --- orders and payments (orders-and-payments.md §4, §5, §7, §8, §9) -------------------------
#
# The sdk-shop services (shop.py, catalog/generate.py --orders) run on fake_provider.py, whose
# x402 paywall verifies and settles EIP-3009 authorizations on the suite's Anvil node (evm.py).
# The server verifies every transfer proof on that node: run.sh sets
# PEAQOS_REQUIRE_PAYMENT_RPC_VERIFICATION=true, so even a `recorded` proof is checked over RPC,
# and each proof below is a real ERC-20 transfer made for it. One machine and pairing (`_shop`)
# carry the orders; its agent wallet is the payer of the transfer rails.

import shop  # noqa: E402  (tests/sdk/shop.py)
from evm import DEPLOYER, calldata, transfer_logs  # noqa: E402  (tests/sdk/evm.py)

try:  # 0.12.x
    from peaq_os_sdk.orchestration.types.market_order import (
        ConfirmMarketOrderResponse, CreateMarketOrderRequest, DisputeMarketOrderRequest,
        DisputeMarketOrderResponse, ExecuteMarketOrderRequest, HandoffExecutionResponse,
        MarketOrder, NativeExecutionResponse, OrderDispute)
    from peaq_os_sdk.orchestration.types.payment import (
        CreatePaymentIntentRequest, LockEscrowPaymentRequest, MarketPayment,
        PaymentIntentRailOptions, RefundPaymentRequest, ReleasePaymentRequest,
        SubmitPaymentProofRequest)
except ImportError:  # 0.2.0
    from peaq_os_sdk.types.orchestration.market_order import (
        ConfirmMarketOrderResponse, CreateMarketOrderRequest, DisputeMarketOrderRequest,
        DisputeMarketOrderResponse, ExecuteMarketOrderRequest, HandoffExecutionResponse,
        MarketOrder, NativeExecutionResponse, OrderDispute)
    from peaq_os_sdk.types.orchestration.payment import (
        CreatePaymentIntentRequest, LockEscrowPaymentRequest, MarketPayment,
        PaymentIntentRailOptions, RefundPaymentRequest, ReleasePaymentRequest,
        SubmitPaymentProofRequest)

ORDER_RE = re.compile(r"^ord_[0-9A-Za-z]+$")
HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")


def _shop(ctx: Ctx) -> dict:
    """The machine and pairing the order checks share (made on first use): its agent wallet is
    known, so it can pay. No delegation policy, hence no spend limits."""
    s = ctx.state.get("shop")
    if s is None:
        mid, did = _machine(ctx)
        agent = Account.create()
        ch = _pairing_challenge(ctx, mid, agent.address, "sdk-shop", "buyer")
        p = ctx.orch.create_agent_pairing(mid, CreateAgentPairingRequest(
            agent_address=agent.address, agent_provider="sdk-shop", agent_role="buyer",
            agent_proof=_agent_proof(agent, ch))).item
        assert p.status == "active" and p.pairing_token, p
        s = dict(machine_id=mid, did=did, pairing_id=p.id, token=p.pairing_token, agent=agent)
        ctx.state["shop"] = s
    return s


def _order(ctx: Ctx, service_id: str, client=None, **kw) -> MarketOrder:
    s = _shop(ctx)
    orch = (client or ctx.client).orchestration
    return orch.create_market_order(CreateMarketOrderRequest(
        machine_id=s["machine_id"], agent_pairing_id=s["pairing_id"], service_id=service_id,
        **kw), s["token"]).item


def _raw_order(ctx: Ctx, oid: str) -> dict:
    status, body = ctx.raw("GET", f"/market/orders/{oid}")
    assert status == 200, (status, body)
    return body["item"]


def _raw_payment(ctx: Ctx, oid: str) -> dict | None:
    status, body = ctx.raw("GET", f"/market/orders/{oid}/payment")
    assert status == 200, (status, body)
    return body["item"]


def _assert_order(o, service_id: str, *, status: str, operation: str | None = None) -> None:
    """A decoded MarketOrder (§2.1) of the shop machine for a catalogue service."""
    e = _catalog()["services"][service_id]
    assert isinstance(o, MarketOrder), type(o)
    assert ORDER_RE.match(o.id), o.id
    assert (o.service_id, o.skill_key, o.provider_key, o.service_type) == (
        service_id, e["skillKey"], e["providerKey"], e["serviceType"]), o
    assert o.operation == (operation or e["operations"][0]), (o.operation, e["operations"])
    assert (o.execution_mode, o.status) == (e["executionMode"], status), (o.execution_mode,
                                                                         o.status, status)
    pay = e.get("payment", {"defaultRail": "not-required", "required": False})
    assert isinstance(o.payment, MarketPaymentRailRecommendation), type(o.payment)
    assert (o.payment.default_rail, o.payment.required) == (pay["defaultRail"], pay["required"]), \
        o.payment
    assert TS_RE.match(o.created_at) and TS_RE.match(o.updated_at), o


def _wire_auth(ctx: Ctx, x, token: str) -> None:
    """Agent auth as each version sends it: 0.2.0 the token only (its client has the run's API
    key), 0.12.1 the token and the key (README C2)."""
    assert x.request_headers.get("x-agent-pairing-token") == token, x.request_headers
    if ctx.v < (0, 12, 1):
        assert "x-api-key" not in x.request_headers, f"{x}: 0.2.0 sends the token only"
    else:
        assert x.request_headers.get("x-api-key") == ctx.api_key, x.request_headers


def _bodyless(ctx: Ctx, x) -> None:
    """A POST without parameters: 0.2.0 sends no body with a JSON content type, 0.12.1 no body
    and no content type (clients.md §0.1)."""
    assert x.request_body is None, (x, x.request_body)
    ctype = x.request_headers.get("content-type")
    if ctx.v < (0, 12, 1):
        assert ctype == "application/json", (x, ctype)
    else:
        assert ctype is None, (x, ctype)


def _order_events(ctx: Ctx, oid: str) -> list[str]:
    """The market.order.* event types of an order, oldest first."""
    status, body = ctx.raw("GET", f"/audit-events?resourceType=market-order&limit=500")
    assert status == 200, (status, body)
    return [e["type"] for e in reversed(body["items"]) if e["resourceId"] == oid]


def _pay_wallet(ctx: Ctx, raw: int = shop.WALLET_RAW, payee: str = shop.WALLET_PAYEE):
    """A real ERC-20 transfer from the shop agent (minted first): (tx hash, receipt)."""
    agent = _shop(ctx)["agent"]
    node = ctx.evm
    node.mint(agent.address, raw)
    r = node.transfer(agent, payee, raw)
    return r["transactionHash"], r


def _wallet_proof(ctx: Ctx, tx: str, **kw) -> SubmitPaymentProofRequest:
    agent = _shop(ctx)["agent"]
    fields = dict(verification_mode="recorded", chain=shop.CHAIN, token=shop.TOKEN_SYMBOL,
                  payer_address=agent.address, payee_address=shop.WALLET_PAYEE,
                  amount=str(shop.WALLET_PRICE), transaction_hash=tx,
                  token_address=shop.TOKEN_ADDRESS, token_decimals=shop.TOKEN_DECIMALS,
                  raw_amount=str(shop.WALLET_RAW))
    fields.update(kw)
    return SubmitPaymentProofRequest(**fields)


def _held_wallet_order(ctx: Ctx, **proof) -> tuple[MarketOrder, MarketPayment, str]:
    """A wallet order paid on chain and proven: (order, held payment, tx hash)."""
    s = _shop(ctx)
    o = _order(ctx, shop.WALLET)
    ctx.orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), s["token"])
    tx, _ = _pay_wallet(ctx)
    p = ctx.orch.submit_payment_proof(o.id, _wallet_proof(ctx, tx, **proof), s["token"]).item
    assert p.status == "held", p.status
    return o, p, tx


@check("orders:free-lifecycle")
def orders_free_lifecycle(ctx: Ctx) -> None:
    """create → get (platform, and token in 0.12.1) → list → execute (with input) → confirm
    (bodyless in 0.2.0) → dispute, on a free native HTTP service."""
    s = _shop(ctx)
    orch, token, mid = ctx.orch, s["token"], s["machine_id"]
    sent = {"note_text": "hello", "nested": {"inner_key": 1, "gone": None}, "empty": {}}
    # 0.2.0 camel-cases keys inside input, 0.12.1 sends them verbatim; both drop nulls and empty
    # objects (clients.md §0.3, §0.4).
    wire_input = ({"noteText": "hello", "nested": {"innerKey": 1}} if ctx.v < (0, 12, 1) else
                  {"note_text": "hello", "nested": {"inner_key": 1}})
    with wire(ctx) as ex:
        with step("create"):
            o = _order(ctx, shop.ECHO, input_payload=sent)
            x = _one(ex, "POST", "/market/orders")
            assert x.status == 201, x.status
            _wire_auth(ctx, x, token)
            assert x.request_body == {"machineId": mid, "agentPairingId": s["pairing_id"],
                                      "serviceId": shop.ECHO, "input": wire_input}, x.request_body
            _assert_order(o, shop.ECHO, status="created")
            assert (o.machine_id, o.agent_pairing_id) == (mid, s["pairing_id"]), o
            assert (o.search_id, o.quote_id, o.handoff, o.error_message) == (None,) * 4, o
            item = x.body["item"]
            assert item["input"] == wire_input, item["input"]  # stored as received
            assert item["amount"] == 0 and item["currency"] == "USDC", item
            assert item["payment"]["defaultRail"] == "not-required", item["payment"]
            assert dict(o.input_payload) == {"note_text": "hello", "nested": {"inner_key": 1}}, \
                o.input_payload  # snake-cased back by both
    with step("get (platform)"):
        with wire(ctx) as ex:
            g = orch.get_market_order(o.id)
            assert ex[-1].request_headers.get("x-api-key") == ctx.api_key, "platform auth"
            assert "x-agent-pairing-token" not in ex[-1].request_headers
        assert g.item == o, (g.item, o)
    if ctx.v >= (0, 12, 1):
        with step("get (pairing token)"):
            with wire(ctx) as ex:
                scoped = orch.get_market_order(o.id, pairing_token=token)
                assert ex[-1].request_headers.get("x-agent-pairing-token") == token
            assert scoped.item == o and scoped.execution is None, scoped
    with step("list"):
        second = _order(ctx, shop.ECHO)  # at least two pages
        with wire(ctx) as ex:
            items = list(orch.list_market_orders_all(machine_id=mid, limit=1))
            _assert_cursor_chain(_gets(ex, "/market/orders"), limit=1,
                                 filters={"machineId": mid})
        ids = [x.id for x in items]
        assert ids.count(o.id) == 1 and len(ids) == len(set(ids)), ids
        assert ids.index(o.id) < ids.index(second.id), ids
        stamps = [x.created_at for x in items]
        assert stamps == sorted(stamps), "orders must be listed oldest first"
        assert [x for x in items if x.id == o.id][0] == o
    run_input = {"run_id": 7}
    with wire(ctx) as ex:
        with step("execute (input replaces the order's)"):
            r = orch.execute_market_order(o.id, ExecuteMarketOrderRequest(input=run_input), token)
            x = _one(ex, "POST", f"/{o.id}/execute")
            _wire_auth(ctx, x, token)
            want_input = {"runId": 7} if ctx.v < (0, 12, 1) else {"run_id": 7}
            assert x.request_body == {"input": want_input}, x.request_body
            assert x.status == 200 and x.body["execution"]["statusCode"] == 200, x.body
            assert isinstance(r, NativeExecutionResponse), type(r)
            assert r.execution.status_code == 200, r.execution
            _assert_order(r.order, shop.ECHO, status="delivered")
            assert r.order.id == o.id and dict(r.order.input_payload) == run_input, r.order
            run, out = r.execution.run, r.execution.outcome
            assert run.status == "completed" and run.id, run
            assert (out.status, out.service_id, out.skill_key, out.execution_mode) == (
                "completed", shop.ECHO, shop.SKILL, "native"), out
            assert out.error_message is None, out
            result = x.body["execution"]["outcome"]["result"]
            assert result == {"ok": True, "method": "POST", "path": "/echo/orders", "query": {},
                              "body": want_input}, result
            seen = ctx.provider.requests("/echo/orders")[-1]
            assert seen["body"] == want_input and seen["method"] == "POST", seen
            assert not {"payment-signature", "x-payment"} & set(seen["headers"]), seen["headers"]
        with step("execute again"):
            e = expect_api_error(lambda: orch.execute_market_order(
                o.id, ExecuteMarketOrderRequest(), token), "ORDER_CLOSED", 409)
    with wire(ctx) as ex:
        with step("confirm"):
            c = orch.confirm_market_order(o.id, token)
            x = _one(ex, "POST", f"/{o.id}/confirm")
            _wire_auth(ctx, x, token)
            if ctx.v < (0, 12, 1):
                _bodyless(ctx, x)  # 0.2.0: no body, JSON content type (§4.5 Compatibility)
            else:
                assert x.request_body == {}, x.request_body
            assert x.status == 200, x.status
            assert isinstance(c, ConfirmMarketOrderResponse), type(c)
            _assert_order(c.order, shop.ECHO, status="confirmed")
            assert c.payment is None and x.body["payment"] is None, x.body  # no payment record
        with step("confirm again"):
            expect_api_error(lambda: orch.confirm_market_order(o.id, token), "ORDER_CLOSED", 409)
        with step("dispute"):
            d = orch.dispute_market_order(o.id, DisputeMarketOrderRequest(
                reason="  wrong echo ", evidence={"log_line": "x", "n": 2}), token)
            x = _one(ex, "POST", f"/{o.id}/dispute")
            _wire_auth(ctx, x, token)
            assert x.request_body == {"reason": "  wrong echo ",
                                      "evidence": {"logLine": "x", "n": 2}}, x.request_body
            assert isinstance(d, DisputeMarketOrderResponse), type(d)
            _assert_order(d.order, shop.ECHO, status="disputed")
            assert d.payment is None, d.payment
            assert isinstance(d.dispute, OrderDispute), type(d.dispute)
            dd = d.dispute
            assert dd.id.startswith("dsp_") and dd.status == "open", dd
            assert (dd.order_id, dd.machine_id) == (o.id, mid), dd
            assert dict(dd.evidence) == {"log_line": "x", "n": 2}, dd.evidence
            assert dd.reason.strip() == "wrong echo", dd.reason
            assert TS_RE.match(dd.created_at) and TS_RE.match(dd.updated_at), dd
    with step("audit events"):
        assert _order_events(ctx, o.id) == ["market.order.created", "market.order.executed",
                                            "market.order.confirmed", "market.order.disputed"], \
            _order_events(ctx, o.id)


@check("orders:from-quote")
def orders_from_quote(ctx: Ctx) -> None:
    """Orders from a search (§4.2 step 5): `quoteId` alone (its search is the quote's),
    `searchId` alone (that search's quote for the service), both; a quote of another service
    gives `quote-mismatch`."""
    s = _shop(ctx)
    srch = _search(ctx, s["token"], service_type="commerce", max_results=25)
    q = _quote(srch, shop.ECHO)
    other = _quote(srch, shop.WALLET)
    for kw in ({"quote_id": q.id}, {"search_id": srch.id},
               {"search_id": srch.id, "quote_id": q.id}):
        o = _order(ctx, shop.ECHO, **kw)
        assert (o.search_id, o.quote_id) == (srch.id, q.id), (kw, o.search_id, o.quote_id)
        assert o.operation == q.operation, o.operation
    for kw in ({"quote_id": other.id}, {"search_id": srch.id, "quote_id": other.id}):
        e = expect_api_error(lambda: _order(ctx, shop.ECHO, **kw), "VALIDATION_ERROR", 400)
        assert isinstance(e.details, dict) and e.details.get("reason") == "quote-mismatch", \
            (kw, e.details)


@check("orders:handoff")
def orders_handoff(ctx: Ctx) -> None:
    """A free external-handoff service: execute answers 202 with the handoff (0.12.1 decodes the
    union's 202 branch), the order reads `handoff` and can be confirmed."""
    s = _shop(ctx)
    sid = "sdk-desk:console"
    e = _catalog()["services"][sid]
    o = _order(ctx, sid)
    _assert_order(o, sid, status="created")
    with wire(ctx) as ex:
        r = ctx.orch.execute_market_order(o.id, ExecuteMarketOrderRequest(), s["token"])
        x = _one(ex, "POST", f"/{o.id}/execute")
        assert x.request_body == {} and x.status == 202, (x.request_body, x.status)
        assert x.body["execution"]["statusCode"] == 202, x.body["execution"]
    assert isinstance(r, HandoffExecutionResponse), type(r)
    assert r.execution.status_code == 202, r.execution
    assert (r.execution.handoff.label, r.execution.handoff.url) == (
        e["handoff"]["label"], e["handoff"]["url"]), r.execution.handoff
    _assert_order(r.order, sid, status="handoff")
    assert r.order.handoff is not None and r.order.handoff.url == e["handoff"]["url"], r.order
    raw = _raw_order(ctx, o.id)
    assert raw["status"] == "handoff" and raw["handoff"]["url"] == e["handoff"]["url"], raw
    c = ctx.orch.confirm_market_order(o.id, s["token"])
    _assert_order(c.order, sid, status="confirmed")
    assert c.payment is None, c.payment


@check("orders:errors")
def orders_errors(ctx: Ctx) -> None:
    s = _shop(ctx)
    orch, token = ctx.orch, s["token"]
    with step("unknown service"):
        e = expect_api_error(lambda: _order(ctx, "sdk-shop:no-such-service"), "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "service", e.details
    with step("unknown operation"):
        e = expect_api_error(lambda: _order(ctx, shop.ECHO, operation="teleport"),
                             "VALIDATION_ERROR", 400)
    with step("another machine than the token's"):
        other, _ = _machine(ctx)
        e = expect_api_error(lambda: orch.create_market_order(CreateMarketOrderRequest(
            machine_id=other, agent_pairing_id=s["pairing_id"], service_id=shop.ECHO), token),
            "AGENT_AUTH_INVALID", 401)
        assert isinstance(e.details, dict) and e.details.get("reason") == "machine-mismatch", \
            e.details
    with step("unknown order"):
        e = expect_api_error(lambda: orch.get_market_order("ord_01J9Z3K4Q7W8X5R2T6Y1V0B3N8"),
                             "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "market-order", \
            e.details
        expect_api_error(lambda: orch.get_market_payment("ord_01J9Z3K4Q7W8X5R2T6Y1V0B3N8"),
                         "NOT_FOUND", 404)
    o = _order(ctx, shop.ECHO)
    with step("confirm and dispute before delivery"):
        expect_api_error(lambda: orch.confirm_market_order(o.id, token), "ORDER_NOT_DELIVERED", 409)
        expect_api_error(lambda: orch.dispute_market_order(
            o.id, DisputeMarketOrderRequest(reason="early"), token), "ORDER_NOT_DELIVERED", 409)
    if ctx.v >= (0, 12, 1):
        with step("another machine's token on get"):
            other_mid, _ = _machine(ctx)
            _, other_token = _paired(ctx, other_mid)
            expect_api_error(lambda: orch.get_market_order(o.id, pairing_token=other_token),
                             "AGENT_AUTH_INVALID", 401)
    with step("no token (the version's transport, platform auth)"):
        expect_api_error(lambda: ctx.api("POST", f"/market/orders/{o.id}/execute", "raw",
                                         auth="platform", body={}), "AGENT_AUTH_REQUIRED", 401)
    with step("provider failure: 200 with a failed outcome, order failed"):
        f = _order(ctx, shop.FLAKY)
        with wire(ctx) as ex:
            r = orch.execute_market_order(f.id, ExecuteMarketOrderRequest(), token)
            assert ex[-1].status == 200, ex[-1]
        assert isinstance(r, NativeExecutionResponse) and r.execution.status_code == 200, r
        assert r.execution.outcome.status == "failed", r.execution.outcome
        assert r.execution.run.status == "failed", r.execution.run
        assert ex[-1].body["execution"]["outcome"]["errorCode"] == "PROVIDER_ERROR", ex[-1].body
        assert r.order.status == "failed" and r.order.error_message, r.order


@check("transport:orders:cancel-retry")
def orders_cancel_retry(ctx: Ctx) -> None:
    """Neither client has cancel or retry (clients.md §4.1); the version's transport sends them
    as that version would (0.2.0: a bodyless retry still carries a JSON content type)."""
    s = _shop(ctx)
    token = s["token"]
    with step("a failed order"):
        fid = _order(ctx, shop.FLAKY).id
        assert ctx.orch.execute_market_order(fid, ExecuteMarketOrderRequest(), token) \
            .order.status == "failed"
    with step("retry a failed order"):
        o = ctx.api("POST", f"/market/orders/{fid}/retry", "item", auth=token)["item"]
        # the transport snake-cases the response (clients.md §0.5)
        assert o["status"] == "ready" and o["error_message"] is None, o
        expect_api_error(lambda: ctx.api("POST", f"/market/orders/{fid}/retry", "item",
                                         auth=token), "ORDER_CLOSED", 409)
        r = ctx.orch.execute_market_order(fid, ExecuteMarketOrderRequest(), token)
        assert r.order.status == "failed", r.order  # the provider still answers 500
    with step("cancel a created order"):
        o = _order(ctx, shop.ECHO)
        c = ctx.api("POST", f"/market/orders/{o.id}/cancel", "item", auth=token,
                    body={"reason": "changed my mind"})["item"]
        assert c["status"] == "cancelled" and c["cancel_reason"] == "changed my mind", c
        expect_api_error(lambda: ctx.api("POST", f"/market/orders/{o.id}/cancel", "item",
                                         auth=token), "ORDER_CLOSED", 409)
        expect_api_error(lambda: ctx.orch.execute_market_order(
            o.id, ExecuteMarketOrderRequest(), token), "ORDER_CLOSED", 409)
    with step("cancel with a held payment"):
        o, _, _ = _held_wallet_order(ctx)
        e = expect_api_error(lambda: ctx.api("POST", f"/market/orders/{o.id}/cancel", "item",
                                             auth=token), "ORDER_CLOSED", 409)
        assert isinstance(e.details, dict) and e.details.get("reason") == "payment-held", e.details
    assert _order_events(ctx, fid)[-3:] == ["market.order.failed", "market.order.retried",
                                            "market.order.failed"], _order_events(ctx, fid)


def _direct_read_body(s: dict) -> dict:
    return {"machineId": s["machine_id"], "agentPairingId": s["pairing_id"],
            "operation": "read-item", "input": {"itemId": "a b/c", "verbose": "yes"}}


@check("direct-read", since="0.12.1")
def direct_read(ctx: Ctx) -> None:
    """execute_market_service on a free native service: the `{itemId}` placeholder is filled
    from input (one encoded path segment), the rest of input goes in the GET's query (§5, §6.2)."""
    import dataclasses
    from peaq_os_sdk.orchestration.types.market_service import (
        ExecuteMarketServiceRequest, ExecuteMarketServiceResponse)
    s = _shop(ctx)
    req = ExecuteMarketServiceRequest(machine_id=s["machine_id"], agent_pairing_id=s["pairing_id"],
                                      operation="read-item",
                                      input_payload={"itemId": "a b/c", "verbose": "yes"})
    with wire(ctx) as ex:
        r = ctx.orch.execute_market_service(shop.ECHO, req, s["token"])
        x = _one(ex, "POST", f"/market/services/{shop.ECHO}/execute")
        _wire_auth(ctx, x, s["token"])
        assert x.request_body == _direct_read_body(s), x.request_body
        assert x.status == 200 and type(x.body["execution"]["statusCode"]) is int, x.body
    assert isinstance(r, ExecuteMarketServiceResponse), type(r)
    assert isinstance(r.service, MarketService) and r.service.id == shop.ECHO, r.service
    ex_ = r.execution
    assert ex_.status_code == 200 and ex_.outcome.status == "completed", ex_
    assert isinstance(ex_.task, Mapping) and isinstance(ex_.route, Mapping), ex_
    assert ex_.outcome.result == {"ok": True, "method": "GET", "path": "/echo/items/a%20b%2Fc",
                                  "query": {"verbose": "yes"}, "body": None}, ex_.outcome.result
    seen = ctx.provider.requests("/echo/items/a%20b%2Fc")
    assert seen and seen[-1]["query"] == {"verbose": "yes"}, seen
    with step("paid and handoff services need an order"):
        for sid in (shop.WALLET, "sdk-desk:console"):
            e = expect_api_error(lambda: ctx.orch.execute_market_service(sid, dataclasses.replace(
                req, operation=_catalog()["services"][sid]["operations"][0]), s["token"]),
                "EXECUTION_UNSUPPORTED", 422)
    with step("missing placeholder value"):
        e = expect_api_error(lambda: ctx.orch.execute_market_service(shop.ECHO, dataclasses.replace(
            req, input_payload={"verbose": "yes"}), s["token"]), "VALIDATION_ERROR", 400)
        assert isinstance(e.details, dict) and e.details.get("field") == "input.itemId", e.details


@check("transport:direct-read", until="0.2.0")
def direct_read_transport(ctx: Ctx) -> None:
    # 0.2.0 has no execute_market_service; its transport sends the token only.
    s = _shop(ctx)
    raw = ctx.api("POST", f"/market/services/{shop.ECHO}/execute", "raw", auth=s["token"],
                  body={"machine_id": s["machine_id"], "agent_pairing_id": s["pairing_id"],
                        "operation": "read-item", "input": {"item_id": "z"}})
    ex_ = raw["execution"]  # snake-cased by the transport
    assert ex_["status_code"] == 200 and ex_["outcome"]["status"] == "completed", ex_
    # `item_id` went out as itemId (0.2.0 camel-cases every body key)
    assert ex_["outcome"]["result"]["path"] == "/echo/items/z", ex_["outcome"]
    assert raw["service"]["id"] == shop.ECHO, raw["service"]


# --- payments: wallet rail (§7.2–§7.7, §8) ------------------------------------------------------

@check("payments:wallet-rpc")
def payments_wallet_rpc(ctx: Ctx) -> None:
    """create → payment None → intent (empty body) → RPC-verified proofs of real transfers →
    execute → confirm → release (no parameters: bodyless)."""
    s = _shop(ctx)
    orch, token, agent = ctx.orch, s["token"], s["agent"]
    node = ctx.evm
    with step("create"):
        o = _order(ctx, shop.WALLET)
        _assert_order(o, shop.WALLET, status="created")
        assert (o.payment.chain, o.payment.token, o.payment.token_address) == (
            shop.CHAIN, shop.TOKEN_SYMBOL, shop.TOKEN_ADDRESS), o.payment
        assert o.payment.payee_address == shop.WALLET_PAYEE, o.payment
    with step("no payment yet"):
        with wire(ctx) as ex:
            assert orch.get_market_payment(o.id).item is None
            assert ex[-1].body == {"item": None}, ex[-1].body
            assert ex[-1].request_headers.get("x-api-key") == ctx.api_key, "platform auth"
    with wire(ctx) as ex:
        with step("intent"):
            p = orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), token).item
            x = _one(ex, "POST", f"/{o.id}/payment-intent")
            _wire_auth(ctx, x, token)
            assert x.request_body == {} and x.status == 201, (x.request_body, x.status)
            assert isinstance(p, MarketPayment), type(p)
            assert p.id.startswith("pay_") and (p.order_id, p.machine_id) == (o.id, s["machine_id"])
            assert p.status == "intent_created", p.status
            assert (p.amount, p.currency) == (shop.WALLET_PRICE, "USDC"), (p.amount, p.currency)
            rail = p.rail
            assert rail.rail_type == "wallet", rail
            assert (rail.chain, rail.token, rail.token_address) == (
                shop.CHAIN, shop.TOKEN_SYMBOL, shop.TOKEN_ADDRESS), rail
            assert rail.payer_address.lower() == agent.address.lower(), rail  # the pairing's agent
            assert rail.payee_address.lower() == shop.WALLET_PAYEE.lower(), rail
            meta = x.body["item"]["rail"]["metadata"]
            assert meta["rawAmount"] == str(shop.WALLET_RAW) and meta["tokenDecimals"] == 6, meta
            assert _raw_order(ctx, o.id)["status"] == "payment_pending"
        with step("intent again (idempotent)"):
            again = orch.create_payment_intent(o.id, CreatePaymentIntentRequest(
                amount=5.0, currency="EUR"), token).item
            assert ex[-1].status == 200 and again == p, (ex[-1].status, again)
        with step("get_market_payment"):
            assert orch.get_market_payment(o.id).item == p
    with step("proof of a transaction that is not mined"):
        unmined = "0x" + secrets.token_hex(32)
        expect_api_error(lambda: orch.submit_payment_proof(o.id, _wallet_proof(ctx, unmined),
                                                           token), "PAYMENT_NOT_MINED", 409)
    with step("proof of a transfer with another amount"):
        tx_small, _ = _pay_wallet(ctx, raw=1)
        expect_api_error(lambda: orch.submit_payment_proof(
            o.id, _wallet_proof(ctx, tx_small), token), "PAYMENT_TRANSFER_NOT_FOUND", 400)
        assert orch.get_market_payment(o.id).item.status == "intent_created"
    with step("proof of a reverted transaction"):
        # A transfer beyond the agent's balance reverts on chain: receipt status 0x0.
        bad = node.call("eth_sendTransaction", {
            "from": DEPLOYER, "to": shop.TOKEN_ADDRESS, "gas": hex(100_000),
            "data": calldata("transfer(address,uint256)", shop.WALLET_PAYEE, 10**30)})
        assert node.receipt(bad)["status"] == "0x0"
        expect_api_error(lambda: orch.submit_payment_proof(
            o.id, _wallet_proof(ctx, bad, payer_address=DEPLOYER), token),
            "PAYMENT_TX_FAILED", 402)
    tx, receipt = _pay_wallet(ctx)
    with step("proofs the server must refuse before any RPC call"):
        for kw, field in (({"payee_address": shop.X402_PAY_TO}, "payeeAddress"),
                          ({"amount": "0.03"}, None),  # disagrees with rawAmount
                          ({"amount": "0"}, "amount"),
                          ({"amount": "-0.02", "raw_amount": None}, "amount"),
                          ({"transaction_hash": "0x1234"}, "transactionHash")):
            e = expect_api_error(lambda: orch.submit_payment_proof(
                o.id, _wallet_proof(ctx, tx, **kw), token), "VALIDATION_ERROR", 400)
            if field:
                assert isinstance(e.details, dict) and e.details.get("field") == field, \
                    (kw, e.details)
        assert orch.get_market_payment(o.id).item.status == "intent_created"
    with wire(ctx) as ex:
        with step("proof (recorded, forced to rpc)"):
            p = orch.submit_payment_proof(o.id, _wallet_proof(ctx, tx.upper().replace("0X", "0x")),
                                          token).item
            x = _one(ex, "POST", f"/{o.id}/payment-proof")
            _wire_auth(ctx, x, token)
            assert x.request_body == {
                "verificationMode": "recorded", "chain": shop.CHAIN, "token": "USDC",
                "payerAddress": agent.address, "payeeAddress": shop.WALLET_PAYEE,
                "amount": "0.02", "transactionHash": tx.upper().replace("0X", "0x"),
                "tokenAddress": shop.TOKEN_ADDRESS, "tokenDecimals": 6, "rawAmount": "20000"}, \
                x.request_body
            assert x.status == 200, x.status
            assert p.status == "held", p.status
            assert p.rail.rail_type == "wdk-usdt-transfer", p.rail  # EVM proof upgrades wallet
            proof = x.body["item"]["proof"]
            assert proof["verificationMode"] == "rpc", proof
            assert proof["transactionHash"] == tx.lower(), proof
            assert HASH_RE.match(proof["transactionHash"]), proof
            assert proof["blockNumber"] == int(receipt["blockNumber"], 16), proof
            assert proof["rawAmount"] == "20000" and proof["amount"] == "0.02", proof
            assert TS_RE.match(proof["verifiedAt"]), proof
            if ctx.v >= (0, 12, 1):
                assert p.proof is not None and p.proof.verification_mode == "rpc", p.proof
                assert p.proof.transaction_hash == tx.lower(), p.proof
                assert p.proof.payer_address.lower() == agent.address.lower(), p.proof
            assert _raw_order(ctx, o.id)["status"] == "ready"
        with step("the same proof again (idempotent)"):
            again = orch.submit_payment_proof(o.id, _wallet_proof(ctx, tx), token).item
            assert again == p, (again, p)
    with step("the same transaction for another order"):
        other = _order(ctx, shop.WALLET)
        e = expect_api_error(lambda: orch.submit_payment_proof(other.id, _wallet_proof(ctx, tx),
                                                               token), "IDEMPOTENCY_CONFLICT", 409)
        assert isinstance(e.details, dict) and \
            e.details.get("reason") == "transaction-already-used", e.details
    with step("release before delivery"):
        expect_api_error(lambda: orch.release_payment(o.id, None, token),
                         "ORDER_NOT_DELIVERED", 409)
        expect_api_error(lambda: orch.release_payment(o.id, ReleasePaymentRequest(), token),
                         "ORDER_NOT_DELIVERED", 409)
    with step("execute"):
        r = orch.execute_market_order(o.id, ExecuteMarketOrderRequest(), token)
        assert isinstance(r, NativeExecutionResponse) and r.order.status == "delivered", r.order
        assert ctx.provider.requests("/echo/wallet"), "the provider was not called"
    with step("confirm: held → release_pending"):
        c = orch.confirm_market_order(o.id, token)
        assert c.order.status == "confirmed" and c.payment.status == "release_pending", c
    with wire(ctx) as ex:
        with step("release (no parameters)"):
            rel = orch.release_payment(o.id, None, token).item
            x = _one(ex, "POST", f"/{o.id}/payment/release")
            _wire_auth(ctx, x, token)
            _bodyless(ctx, x)
            assert x.status == 200 and rel.status == "released", (x.status, rel.status)
            assert x.body["item"]["releaseTransactionHash"] is None, x.body["item"]
        with step("release again (unchanged)"):
            assert orch.release_payment(o.id, None, token).item == rel
        with step("refund after release"):
            expect_api_error(lambda: orch.refund_payment(o.id, None, token), "ORDER_CLOSED", 409)
    with step("on chain"):
        logs = transfer_logs(receipt)
        assert logs == [(agent.address.lower(), shop.WALLET_PAYEE.lower(), shop.WALLET_RAW)], logs
    with step("audit events"):
        status, body = ctx.raw("GET", "/audit-events?resourceType=market-payment&limit=500")
        types = [e["type"] for e in reversed(body["items"]) if e["resourceId"] == p.id]
        assert types == ["market.payment.intent-created", "market.payment.proof-recorded",
                         "market.payment.released"], types


@check("payments:release-refund-params")
def payments_release_refund_params(ctx: Ctx) -> None:
    """release and refund with parameters, with all-None parameters (`{}`), and refund without
    parameters; a dispute freezes a held payment, and a refund resolves it."""
    s = _shop(ctx)
    orch, token = ctx.orch, s["token"]
    release_tx, refund_tx = "0x" + secrets.token_hex(32), "0x" + secrets.token_hex(32)
    with wire(ctx) as ex:
        with step("release with a transaction hash and notes"):
            o, p, _ = _held_wallet_order(ctx)
            orch.execute_market_order(o.id, ExecuteMarketOrderRequest(), token)
            orch.confirm_market_order(o.id, token)
            rel = orch.release_payment(o.id, ReleasePaymentRequest(
                transaction_hash=release_tx, notes="paid out"), token).item
            x = _one(ex, "POST", f"/{o.id}/payment/release")
            assert x.request_body == {"transactionHash": release_tx, "notes": "paid out"}, \
                x.request_body
            assert rel.status == "released" and "paid out" in rel.notes, rel
            assert x.body["item"]["releaseTransactionHash"] == release_tx, x.body["item"]
        with step("refund with a transaction hash and reason"):
            o, p, _ = _held_wallet_order(ctx, amount="2e-02")  # str(float) form, normalised
            assert _raw_payment(ctx, o.id)["proof"]["amount"] == "0.02"
            ref = orch.refund_payment(o.id, RefundPaymentRequest(
                transaction_hash=refund_tx, reason="buyer cancelled"), token).item
            x = _one(ex, "POST", f"/{o.id}/payment/refund")
            assert x.request_body == {"transactionHash": refund_tx, "reason": "buyer cancelled"}
            assert ref.status == "refunded", ref.status
            assert (x.body["item"]["refundTransactionHash"], x.body["item"]["refundReason"]) == (
                refund_tx, "buyer cancelled"), x.body["item"]
            assert _raw_order(ctx, o.id)["status"] == "ready", "a refund leaves the order as it is"
            assert orch.refund_payment(o.id, None, token).item == ref  # again: unchanged
            c = ctx.api("POST", f"/market/orders/{o.id}/cancel", "item", auth=token)["item"]
            assert c["status"] == "cancelled", c  # refunded: cancel allowed
        with step("refund without parameters, from intent_created"):
            o = _order(ctx, shop.WALLET)
            orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), token)
            ref = orch.refund_payment(o.id, None, token).item
            x = _one(ex, "POST", f"/{o.id}/payment/refund")
            _bodyless(ctx, x)
            assert ref.status == "refunded" and x.body["item"]["refundReason"] is None, x.body
        with step("all-None parameters send {}"):
            o, p, _ = _held_wallet_order(ctx)
            expect_api_error(lambda: orch.release_payment(o.id, ReleasePaymentRequest(), token),
                             "ORDER_NOT_DELIVERED", 409)
            x = [e for e in ex if e.path.endswith(f"/{o.id}/payment/release")][-1]
            assert x.request_body == {}, x.request_body
            orch.execute_market_order(o.id, ExecuteMarketOrderRequest(), token)
            with step("dispute freezes the held payment"):
                d = orch.dispute_market_order(o.id, DisputeMarketOrderRequest(reason="broken"),
                                              token)
                assert d.order.status == "disputed" and d.payment.status == "frozen", d
                expect_api_error(lambda: orch.release_payment(o.id, None, token),
                                 "ORDER_CLOSED", 409)
            ref = orch.refund_payment(o.id, RefundPaymentRequest(), token).item
            x = _one(ex, "POST", f"/{o.id}/payment/refund")
            assert x.request_body == {} and ref.status == "refunded", (x.request_body, ref.status)
    with step("no payment"):
        o = _order(ctx, shop.ECHO)
        e = expect_api_error(lambda: orch.release_payment(o.id, None, token), "NOT_FOUND", 404)
        assert isinstance(e.details, dict) and e.details.get("resource") == "payment", e.details
        expect_api_error(lambda: orch.refund_payment(o.id, None, token), "NOT_FOUND", 404)


@check("payments:free-intent")
def payments_free_intent(ctx: Ctx) -> None:
    """A payment-intent on a free order gives a `not_required` payment and a `ready` order; a
    `not-required` rail on a paid order is refused (§7.2 step 5)."""
    s = _shop(ctx)
    o = _order(ctx, shop.ECHO)
    p = ctx.orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), s["token"]).item
    assert p.status == "not_required" and p.rail.rail_type == "not-required", p
    assert _raw_order(ctx, o.id)["status"] == "ready"
    w = _order(ctx, shop.WALLET)
    expect_api_error(lambda: ctx.orch.create_payment_intent(w.id, CreatePaymentIntentRequest(
        rail=PaymentIntentRailOptions(type="not-required")), s["token"]), "PAYMENT_REQUIRED", 402)


# --- payments: escrow rail with an external handoff (§7.5) ----------------------------------

@check("payments:escrow-handoff")
def payments_escrow_handoff(ctx: Ctx) -> None:
    s = _shop(ctx)
    orch, token, agent = ctx.orch, s["token"], s["agent"]
    o = _order(ctx, shop.ESCROW_DESK)
    _assert_order(o, shop.ESCROW_DESK, status="created")
    with step("intent"):
        p = orch.create_payment_intent(o.id, CreatePaymentIntentRequest(
            rail=PaymentIntentRailOptions(type="onchain-escrow", chain=shop.CHAIN)), token).item
        assert p.rail.rail_type == "onchain-escrow" and p.status == "intent_created", p
        assert p.rail.escrow_address.lower() == shop.ESCROW_ADDRESS.lower(), p.rail
        assert p.amount == shop.ESCROW_PRICE, p.amount
    raw = round(shop.ESCROW_PRICE * 10**shop.TOKEN_DECIMALS)
    tx, _ = _pay_wallet(ctx, raw=raw, payee=shop.ESCROW_ADDRESS)
    with wire(ctx) as ex:
        with step("escrow-lock"):
            locked = orch.lock_escrow_payment(o.id, LockEscrowPaymentRequest(
                transaction_hash=tx, chain=shop.CHAIN, escrow_address=shop.ESCROW_ADDRESS),
                token).item
            x = _one(ex, "POST", f"/{o.id}/payment/escrow-lock")
            _wire_auth(ctx, x, token)
            assert x.request_body == {"transactionHash": tx, "chain": shop.CHAIN,
                                      "escrowAddress": shop.ESCROW_ADDRESS}, x.request_body
            assert locked.status == "held", locked.status
            assert x.body["item"]["proof"]["verificationMode"] == "recorded", x.body["item"]
            assert x.body["item"]["proof"]["transactionHash"] == tx.lower(), x.body["item"]
            assert _raw_order(ctx, o.id)["status"] == "ready"
        with step("escrow-lock again (idempotent)"):
            assert orch.lock_escrow_payment(o.id, LockEscrowPaymentRequest(
                transaction_hash=tx, chain=shop.CHAIN, escrow_address=shop.ESCROW_ADDRESS),
                token).item == locked
        with step("escrow-lock on a wallet order's payment"):
            w = _order(ctx, shop.WALLET)  # without a payment it would lock as onchain-escrow
            orch.create_payment_intent(w.id, CreatePaymentIntentRequest(), token)
            e = expect_api_error(lambda: orch.lock_escrow_payment(w.id, LockEscrowPaymentRequest(
                transaction_hash="0x" + secrets.token_hex(32), chain=shop.CHAIN,
                escrow_address=shop.ESCROW_ADDRESS), token), "VALIDATION_ERROR", 400)
            assert isinstance(e.details, dict) and e.details.get("reason") == "rail-mismatch", \
                e.details
    with step("execute: handoff (202)"):
        r = orch.execute_market_order(o.id, ExecuteMarketOrderRequest(), token)
        assert isinstance(r, HandoffExecutionResponse) and r.order.status == "handoff", r
        assert r.execution.handoff.url.endswith("/desk"), r.execution.handoff
    with step("confirm: held → release_pending, then release"):
        c = orch.confirm_market_order(o.id, token)
        assert c.order.status == "confirmed" and c.payment.status == "release_pending", c
        assert orch.release_payment(o.id, None, token).item.status == "released"


# --- payments: x402 (§7.4 Variant B, §9), 0.12.1 with its x402 extra ------------------------

def _x402_intent(ctx: Ctx):
    s = _shop(ctx)
    o = _order(ctx, shop.X402)
    p = ctx.orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), s["token"]).item
    return o, p


def _x402_paid(ctx: Ctx, payer) -> tuple[MarketOrder, object, object]:
    """An x402 order executed with a signature of `payer` (minted first): (order, signed,
    execute response). Not confirmed."""
    from peaq_os_sdk.orchestration.types.market_order import X402ExecutePayment
    from peaq_os_sdk.orchestration.types.payment import SubmitX402PaymentProofRequest
    s = _shop(ctx)
    ctx.evm.mint(payer.address, shop.X402_RAW)
    o, p = _x402_intent(ctx)
    signed = ctx.orch.sign_x402_payment(p, payer)
    ctx.orch.submit_x402_payment_proof(o.id, SubmitX402PaymentProofRequest(
        payment_signature=signed.payment_signature, payment_reference=signed.payment_reference),
        s["token"])
    r = ctx.orch.execute_market_order(o.id, ExecuteMarketOrderRequest(
        payment=X402ExecutePayment(payment_signature=signed.payment_signature)), s["token"])
    return o, signed, r


def _x402_header(payer, *, value: int = shop.X402_RAW, to: str = shop.X402_PAY_TO,
                 valid_before: int | None = None, signer=None) -> str:
    """A PAYMENT-SIGNATURE value for the paywall's accept, signed with eth_account directly."""
    import base64
    import json
    import time
    from fake_provider import accept_entry
    auth = {"from": payer.address, "to": to, "value": str(value), "validAfter": "0",
            "validBefore": str(valid_before if valid_before is not None else
                               int(time.time()) + 300),
            "nonce": "0x" + secrets.token_hex(32)}
    typed = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"},
                             {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": shop.TOKEN_NAME, "version": shop.TOKEN_VERSION,
                   "chainId": shop.CHAIN_ID, "verifyingContract": shop.TOKEN_ADDRESS},
        "message": {**auth, "value": int(auth["value"]), "validAfter": 0,
                    "validBefore": int(auth["validBefore"]),
                    "nonce": bytes.fromhex(auth["nonce"][2:])},
    }
    sig = (signer or payer).sign_typed_data(full_message=typed).signature
    payload = {"x402Version": 2, "accepted": accept_entry(),
               "payload": {"authorization": auth, "signature": "0x" + bytes(sig).hex()}}
    return base64.b64encode(json.dumps(payload).encode()).decode()


@check("fixture:x402-paywall", since="0.12.1")
def fixture_x402_paywall(ctx: Ctx) -> None:
    """The paywall the x402 checks rely on verifies what it gets: a challenge without a
    signature; 402 for a foreign signer, another amount or payee, an expired authorization and a
    replayed nonce; 200 with PAYMENT-RESPONSE (settled on chain) for a good one."""
    import base64
    import json
    import time
    import urllib.error
    import urllib.request
    url = ctx.provider.url + shop.X402_PATH
    payer = Account.create()
    ctx.evm.mint(payer.address, shop.X402_RAW)

    def get(header: str | None):
        req = urllib.request.Request(url, headers={"PAYMENT-SIGNATURE": header} if header else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, dict(res.headers), json.loads(res.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read())

    status, headers, body = get(None)
    assert status == 402 and "PAYMENT-REQUIRED" in headers, (status, headers)
    challenge = json.loads(base64.b64decode(headers["PAYMENT-REQUIRED"], validate=True))
    assert challenge["accepts"][0]["payTo"] == shop.X402_PAY_TO, challenge
    for name, header, error in (
            ("foreign signer", _x402_header(payer, signer=Account.create()), "signature"),
            ("another amount", _x402_header(payer, value=1), "authorization_value"),
            ("another payee", _x402_header(payer, to=Account.create().address), "recipient"),
            ("expired", _x402_header(payer, valid_before=int(time.time()) - 1), "valid_window")):
        status, _, body = get(header)
        assert status == 402 and error in body["error"], (name, status, body)
    good = _x402_header(payer)
    status, headers, body = get(good)
    assert status == 200 and body["paidBy"] == payer.address, (status, body)
    settled = json.loads(base64.b64decode(headers["PAYMENT-RESPONSE"]))
    assert settled["success"] is True and HASH_RE.match(settled["transaction"]), settled
    assert ctx.evm.balance_of(payer.address) == 0, "not settled on chain"
    status, _, body = get(good)
    assert status == 402 and "nonce_used" in body["error"], (status, body)


@check("payments:x402", since="0.12.1")
def payments_x402(ctx: Ctx) -> None:
    """intent (challenge captured from the paywall) → sign_x402_payment (offline, EIP-3009) →
    submit_x402_payment_proof → execute with the signature (the paywall verifies and settles on
    chain) → the payment `released` with the settlement → confirm."""
    import base64
    import json
    from peaq_os_sdk.orchestration.types.market_order import X402ExecutePayment
    from peaq_os_sdk.orchestration.types.payment import SubmitX402PaymentProofRequest
    s = _shop(ctx)
    orch, token = ctx.orch, s["token"]
    node = ctx.evm
    payer = Account.create()
    node.mint(payer.address, shop.X402_RAW)
    before = (node.balance_of(payer.address), node.balance_of(shop.X402_PAY_TO))
    unpaid_before = len(ctx.provider.requests(shop.X402_PATH))
    with step("create"):
        o = _order(ctx, shop.X402)
        _assert_order(o, shop.X402, status="created")
        assert orch.get_market_payment(o.id).item is None
    with wire(ctx) as ex:
        with step("intent: the paywall's challenge"):
            p = orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), token).item
            x = _one(ex, "POST", f"/{o.id}/payment-intent")
            assert x.status == 201 and p.status == "intent_created", (x.status, p.status)
            assert p.rail.rail_type == "x402", p.rail
            seen = ctx.provider.requests(shop.X402_PATH)[unpaid_before:]
            assert len(seen) == 1 and "payment-signature" not in seen[0]["headers"], seen
            req = x.body["item"]["rail"]["metadata"]["paymentRequest"]
            challenge = json.loads(base64.b64decode(req["paymentRequired"], validate=True))
            assert challenge["x402Version"] == 2 and len(challenge["accepts"]) == 1, challenge
            assert (req["x402Version"], req["statusCode"]) == (2, 402), req
            assert req["accepts"] == challenge["accepts"], req["accepts"]
            assert req["paymentUrl"].endswith(shop.X402_PATH), req["paymentUrl"]
            acc = challenge["accepts"][0]
            assert (acc["network"], acc["payTo"], acc["amount"]) == (
                shop.CHAIN, shop.X402_PAY_TO, str(shop.X402_RAW)), acc
    with step("parse_x402_payment_requirements"):
        reqs = orch.parse_x402_payment_requirements(p)
        assert (reqs.scheme, reqs.network, reqs.asset.lower(), reqs.pay_to.lower(), reqs.amount,
                reqs.max_timeout_seconds, reqs.extra_name, reqs.extra_version) == (
            "exact", shop.CHAIN, shop.TOKEN_ADDRESS.lower(), shop.X402_PAY_TO.lower(),
            str(shop.X402_RAW), shop.X402_TIMEOUT_S, shop.TOKEN_NAME, shop.TOKEN_VERSION), reqs
    with step("execute without the payment headers"):
        e = expect_api_error(lambda: orch.execute_market_order(o.id, ExecuteMarketOrderRequest(),
                                                               token), "PAYMENT_REQUIRED", 402)
        assert isinstance(e.details, dict) and e.details.get("challenge"), e.details
    with step("sign_x402_payment (offline)"):
        signed = orch.sign_x402_payment(p, payer)
        assert signed.header_name == "PAYMENT-SIGNATURE", signed.header_name
        assert (signed.network, signed.asset.lower(), signed.amount) == (
            shop.CHAIN, shop.TOKEN_ADDRESS.lower(), str(shop.X402_RAW)), signed
        assert signed.payer_address.lower() == payer.address.lower(), signed.payer_address
        assert re.match(r"^x402:eip155:8453:[0-9a-f]{24}$", signed.payment_reference), signed
        decoded = json.loads(base64.b64decode(signed.payment_signature))
        auth = decoded["payload"]["authorization"]
        assert auth["to"].lower() == shop.X402_PAY_TO.lower() and auth["value"] == "10000", auth
    with step("a tampered authorization is refused (§7.4 2a)"):
        bad = json.loads(json.dumps(decoded))
        bad["payload"]["authorization"]["value"] = "1"
        bad_sig = base64.b64encode(json.dumps(bad).encode()).decode()
        e = expect_api_error(lambda: orch.submit_x402_payment_proof(
            o.id, SubmitX402PaymentProofRequest(payment_signature=bad_sig), token),
            "VALIDATION_ERROR", 400)
        assert isinstance(e.details, dict) and \
            e.details.get("reason") == "payment-signature-invalid", e.details
        assert e.details.get("field") == "payment.paymentSignature", e.details
        assert e.details.get("rule") == "signature", e.details
        assert orch.get_market_payment(o.id).item.status == "intent_created"
    with step("a valid signature for other terms than the captured challenge (§7.4 2a)"):
        # Signed by the SDK from a doctored challenge: the header's own `accepted` agrees with
        # its authorization, so only the challenge the server captured can refuse it.
        for change, rules in (({"amount": "1"}, {"value", "challenge"}),
                              ({"payTo": Account.create().address}, {"challenge", "to"})):
            doctored = json.loads(json.dumps(challenge))
            doctored["accepts"][0].update(change)
            forged = orch.sign_x402_payment(
                {"payment_required": base64.b64encode(json.dumps(doctored).encode()).decode()},
                payer)
            e = expect_api_error(lambda: orch.submit_x402_payment_proof(
                o.id, SubmitX402PaymentProofRequest(payment_signature=forged.payment_signature),
                token), "VALIDATION_ERROR", 400)
            assert isinstance(e.details, dict) and \
                e.details.get("reason") == "payment-signature-invalid", (change, e.details)
            assert e.details.get("rule") in rules, (change, e.details)
        assert orch.get_market_payment(o.id).item.status == "intent_created"
    with wire(ctx) as ex:
        with step("submit_x402_payment_proof"):
            held = orch.submit_x402_payment_proof(o.id, SubmitX402PaymentProofRequest(
                payment_signature=signed.payment_signature,
                payment_reference=signed.payment_reference,
                metadata={"header_name": signed.header_name, "service_id": shop.X402}), token).item
            x = _one(ex, "POST", f"/{o.id}/payment-proof")
            _wire_auth(ctx, x, token)
            assert x.request_body == {"payment": {"paymentSignature": signed.payment_signature},
                                      "paymentReference": signed.payment_reference,
                                      "metadata": {"headerName": "PAYMENT-SIGNATURE",
                                                   "serviceId": shop.X402}}, x.request_body
            assert held.status == "held", held.status
            pr = held.proof
            assert pr is not None and pr.verification_mode == "recorded", pr
            assert pr.payer_address.lower() == payer.address.lower(), pr
            assert pr.metadata.network == shop.CHAIN, pr.metadata
            assert pr.metadata.header_name == "PAYMENT-SIGNATURE", pr.metadata
            assert signed.payment_signature not in x.text, "the header value is stored"
            assert x.body["item"]["proof"]["paymentReference"] == signed.payment_reference
        with step("execute with the signature: the paywall verifies and settles"):
            r = orch.execute_market_order(o.id, ExecuteMarketOrderRequest(
                payment=X402ExecutePayment(payment_signature=signed.payment_signature)), token)
            x = _one(ex, "POST", f"/{o.id}/execute")
            assert x.request_body == {"payment": {"paymentSignature": signed.payment_signature}}
            assert isinstance(r, NativeExecutionResponse), type(r)
            assert r.execution.outcome.status == "completed", r.execution.outcome
            assert r.order.status == "delivered", r.order.status
            assert r.execution.outcome.result == {"report": "sdk-shop report",
                                                  "paidBy": auth["from"]}, r.execution.outcome
            paid = [q for q in ctx.provider.requests(shop.X402_PATH)
                    if q["headers"].get("payment-signature")]
            assert paid[-1]["headers"]["payment-signature"] == signed.payment_signature, \
                "the server must forward the signature as signed"
    with step("settled on chain"):
        after = (node.balance_of(payer.address), node.balance_of(shop.X402_PAY_TO))
        assert after == (before[0] - shop.X402_RAW, before[1] + shop.X402_RAW), (before, after)
        assert node.authorization_used(auth["from"], auth["nonce"]), "authorization not used"
    with step("payment released with the settlement"):
        rel = orch.get_market_payment(o.id).item
        assert rel.status == "released", rel.status
        st = rel.proof.metadata.payment_settlement
        assert st is not None and st.status == "settled", rel.proof
        tx = rel.proof.transaction_hash
        assert HASH_RE.match(tx) and st.response["transaction"].lower() == tx, (tx, st)
        assert node.receipt(tx)["status"] == "0x1", tx
        assert transfer_logs(node.receipt(tx)) == [
            (payer.address.lower(), shop.X402_PAY_TO.lower(), shop.X402_RAW)]
        assert st.payer_address.lower() == payer.address.lower(), st
        assert rel.proof.payer_address.lower() == payer.address.lower(), rel.proof
    with step("confirm: released stays released"):
        c = orch.confirm_market_order(o.id, token)
        assert c.order.status == "confirmed" and c.payment.status == "released", c
    with step("the same authorization for another order"):
        o2, p2 = _x402_intent(ctx)
        e = expect_api_error(lambda: orch.submit_x402_payment_proof(
            o2.id, SubmitX402PaymentProofRequest(payment_signature=signed.payment_signature),
            token), "IDEMPOTENCY_CONFLICT", 409)
        assert isinstance(e.details, dict) and \
            e.details.get("reason") == "transaction-already-used", e.details


@check("payments:x402-settlement-failed", since="0.12.1")
def payments_x402_settlement_failed(ctx: Ctx) -> None:
    """The payer cannot cover the authorization: the paywall's transferWithAuthorization reverts
    and it answers 402 with `PAYMENT-RESPONSE {success: false}`. The payment stays held with the
    failed settlement, the order returns to `ready`, execute answers 402 (§4.4, §9.5), and the
    agent can refund."""
    import base64
    import json
    from peaq_os_sdk.orchestration.types.market_order import X402ExecutePayment
    from peaq_os_sdk.orchestration.types.payment import SubmitX402PaymentProofRequest
    s = _shop(ctx)
    orch, token = ctx.orch, s["token"]
    broke = Account.create()  # holds no token
    o, p = _x402_intent(ctx)
    signed = orch.sign_x402_payment(p, broke)
    orch.submit_x402_payment_proof(o.id, SubmitX402PaymentProofRequest(
        payment_signature=signed.payment_signature), token)
    with step("execute: the provider's 402"):
        e = expect_api_error(lambda: orch.execute_market_order(o.id, ExecuteMarketOrderRequest(
            payment=X402ExecutePayment(payment_signature=signed.payment_signature)), token),
            "PAYMENT_REQUIRED", 402)
        assert isinstance(e.details, dict) and e.details.get("challenge"), e.details
    with step("payment held with the failed settlement; order back to ready"):
        raw = _raw_payment(ctx, o.id)
        assert raw["status"] == "held", raw["status"]
        settle = raw["proof"]["metadata"].get("paymentSettlement")
        assert settle and settle["status"] == "failed", raw["proof"]
        assert settle["response"]["errorReason"] == "transaction_failed", settle
        assert _raw_order(ctx, o.id)["status"] == "ready", _raw_order(ctx, o.id)["status"]
        nonce = json.loads(base64.b64decode(signed.payment_signature))["payload"][
            "authorization"]["nonce"]
        assert not ctx.evm.authorization_used(broke.address, nonce), "authorization used"
    with step("refund"):
        assert orch.refund_payment(o.id, RefundPaymentRequest(reason="settlement failed"),
                                   token).item.status == "refunded"


@check("payments:x402-needs-extra", until="0.2.0")
def payments_x402_absent(ctx: Ctx) -> None:
    # 0.2.0 has no x402 support: no signer, no Variant B, no `payment` on execute (§5.4).
    assert not hasattr(ctx.orch, "sign_x402_payment")
    assert not hasattr(ctx.orch, "submit_x402_payment_proof")
    import dataclasses
    assert [f.name for f in dataclasses.fields(ExecuteMarketOrderRequest)] == ["input"]
    with step("x402 order through 0.2.0: intent works, execute needs the headers it cannot send"):
        s = _shop(ctx)
        o = _order(ctx, shop.X402)
        p = ctx.orch.create_payment_intent(o.id, CreatePaymentIntentRequest(), s["token"]).item
        assert p.rail.rail_type == "x402" and p.status == "intent_created", p
        assert p.rail.metadata["payment_request"]["payment_required"], p.rail.metadata
        expect_api_error(lambda: ctx.orch.execute_market_order(
            o.id, ExecuteMarketOrderRequest(), s["token"]), "PAYMENT_REQUIRED", 402)


# --- official CLI peaqos 0.1.1 (clients.md §7, §9.4) ------------------------------------------
#
# Run in its own venv (run.sh: SDK_CLI_PYTHON), against the 0.12.1 run's server. ctx.cli runs
# commands through cli_driver.py (one process, the console script's entry point); the default
# `service list` also runs as the real `peaqos` console script. The CLI gets no API key
# (PEAQOS_ORCH_API_KEY unset), so it authenticates with the pairing token alone.

def _cli_market(ctx: Ctx) -> tuple[dict, str]:
    mm = _market_machine(ctx)
    path = mm.get("token_file") or ctx.cli.file(f"token-{mm['pairing_id']}.txt", mm["token"] + "\n")
    mm["token_file"] = path
    return mm, path


@check("cli:service-list", since="0.12.1")
def cli_service_list(ctx: Ctx) -> None:
    mm, tf = _cli_market(ctx)
    mid = mm["machine_id"]
    base = ("scale", "service", "list", "--machine-id", mid, "--pairing-token-file", tf)
    ids = sorted(_catalog()["services"])
    with step("default providerKey onem2m: console script prints an empty result"):
        r = ctx.cli.run_script(*base).ok()
        assert "No services found." in r.stdout, r.describe()
    with step("default providerKey onem2m, --json"):
        r = ctx.cli.run(*base, "--json").ok()
        assert r.json() == [], r.describe()
    with step("--provider-key '' --json (every page)"):
        r = ctx.cli.run(*base, "--provider-key", "", "--json").ok()
        items = r.json()
        assert [i["id"] for i in items] == ids, [i["id"] for i in items]
        q = [i for i in items if i["id"] == "qvac-private-inference"][0]
        assert q["integration_status"] == "native", q["integration_status"]  # the token's machine
        assert q["operation_contracts"][0]["operation"] == "run-private-inference", q
        node = [i for i in items if i["id"] == "sdk-pool:node-01"][0]
        assert node["operation_contracts"][0]["example_input"] == {
            "job": {"image_ref": "busybox", "argV": ["true"]}, "max_seconds": 5}, node
    with step("--limit 2 --json (one page), then --cursor (the rest)"):
        page = ctx.cli.run(*base, "--provider-key", "", "--limit", "2", "--json").ok().json()
        assert [i["id"] for i in page["items"]] == ids[:2], page
        assert isinstance(page["next_cursor"], str) and page["next_cursor"], page
        rest = ctx.cli.run(*base, "--provider-key", "", "--cursor", page["next_cursor"],
                           "--json").ok().json()
        assert [i["id"] for i in rest] == ids[2:], [i["id"] for i in rest]
    with step("human output with a next-page hint"):
        r = ctx.cli.run(*base, "--provider-key", "", "--limit", "2").ok()
        assert f"Services for {mid}" in r.stdout, r.describe()
        assert ids[0] in r.stdout and ids[1] in r.stdout and ids[2] not in r.stdout, r.describe()
        assert "Next page" in r.stdout and f"--cursor {page['next_cursor']}" in r.stdout, \
            r.describe()
    with step("--provider-key qvac"):
        r = ctx.cli.run(*base, "--provider-key", "qvac").ok()
        assert "qvac-private-inference" in r.stdout and "Next page" not in r.stdout, r.describe()
    with step("another machine than the token's"):
        other, _ = _machine(ctx)
        r = ctx.cli.run("scale", "service", "list", "--machine-id", other, "--pairing-token-file",
                        tf, "--provider-key", "")
        assert r.exit_code == 2 and "Error" in r.stderr and r.traceback is None, r.describe()


@check("cli:service-show", since="0.12.1")
def cli_service_show(ctx: Ctx) -> None:
    mm, tf = _cli_market(ctx)
    mid = mm["machine_id"]
    cat = _catalog()["services"]
    auth = ("--machine-id", mid, "--pairing-token-file", tf)
    with step("show qvac-private-inference --json"):
        item = ctx.cli.run("scale", "service", "show", "qvac-private-inference", *auth,
                           "--json").ok().json()["item"]
        assert item["id"] == "qvac-private-inference", item
        assert item["integration_status"] == "native", item["integration_status"]
        assert item["operations"] == cat["qvac-private-inference"]["operations"], item
        assert [c["operation"] for c in item["operation_contracts"]] == ["run-private-inference"]
        sdk = ctx.orch.get_market_service("qvac-private-inference", pairing_token=mm["token"]).item
        assert item["updated_at"] == sdk.updated_at and item["metadata"] == dict(sdk.metadata)
    with step("ids with colons"):
        for sid in ("x402:x402-org:protected-evm-exact", "sdk-desk:console"):
            item = ctx.cli.run("scale", "service", "show", sid, *auth, "--json").ok().json()["item"]
            assert item["id"] == sid and item["service_type"] == cat[sid]["serviceType"], item
        assert item["handoff"]["url"] == cat["sdk-desk:console"]["handoff"]["url"], item
    with step("human output"):
        r = ctx.cli.run("scale", "service", "show", "sdk-pool:node-01", *auth).ok()
        assert "Service sdk-pool:node-01" in r.stdout and "run-job" in r.stdout, r.describe()
    with step("unknown service"):
        r = ctx.cli.run("scale", "service", "show", "sdk-pool:no-such-node", *auth)
        assert r.exit_code == 2 and r.traceback is None, r.describe()
        assert "not found" in r.stderr.lower(), r.describe()


@check("cli:search", since="0.12.1")
def cli_search(ctx: Ctx) -> None:
    mm, tf = _cli_market(ctx)
    mid, pid = mm["machine_id"], mm["pairing_id"]
    base = ("scale", "search", "--machine-id", mid, "--pairing-token-file", tf)
    with step("--service-type compute --max-results 40 --json"):
        out = ctx.cli.run(*base, "--agent-pairing-id", pid, "--service-type", "compute",
                          "--max-results", "40", "--json").ok().json()
        assert out["id"].startswith("srch_") and out["status"] == "completed", out
        assert (out["machine_id"], out["agent_pairing_id"]) == (mid, pid), out
        assert out["normalized_task"]["service_type"] == "compute.marketplace", out
        assert out["request_payload"] == {"machine_id": mid, "agent_pairing_id": pid,
                                          "service_type": "compute", "max_results": 40}, \
            out["request_payload"]
        assert len(out["quotes"]) == 25, len(out["quotes"])
        q = out["quotes"][0]
        assert (q["service_id"], q["integration_status"]) == ("qvac-private-inference", "native"), q
        s = ctx.orch.get_market_search(out["id"]).item
        assert [x.id for x in s.quotes] == [x["id"] for x in out["quotes"]], "stored quotes"
    with step("--service-type gnss --native-only --json"):
        out = ctx.cli.run(*base, "--service-type", "gnss", "--native-only", "--json").ok().json()
        nt = out["normalized_task"]
        assert nt["service_type"] == "data.location" and nt["require_native_execution"] is True, nt
        assert out["quotes"] and all(q["execution_mode"] == "native" for q in out["quotes"]), out
        assert out["agent_pairing_id"] == pid, out  # from the token
    with step("--service-type defi --allow-handoff --region --json"):
        out = ctx.cli.run(*base, "--service-type", "defi", "--allow-handoff", "--region",
                          "eu-west", "--json").ok().json()
        nt = out["normalized_task"]
        assert (nt["service_type"], nt["allow_external_handoff"], nt["region"]) == (
            "oracle.price-feed", True, "eu-west"), nt
        assert {q["service_id"] for q in out["quotes"]} == set(
            _service_ids(serviceType="oracle.price-feed")), out["quotes"]
    with step("human output"):
        r = ctx.cli.run(*base, "--agent-pairing-id", pid, "--service-type", "storage").ok()
        assert "matching services" in r.stdout and "Next: peaqos scale order" in r.stdout, \
            r.describe()
        assert "walrus:blob-storage" in r.stdout, r.describe()
    with step("no match"):
        r = ctx.cli.run(*base, "--service-type", "compute", "--capabilities", "no-such-cap").ok()
        assert "No matching services found." in r.stdout and "srch_" in r.stdout, r.describe()


# --- official CLI peaqos 0.1.1: orders and payments (clients.md §7.4–§7.6, §9.5, D5–D14) -----
#
# On the shop machine and pairing (`_shop`) with its token file. Every paid placement reads
# `GET …/payment` with platform auth, so those commands get PEAQOS_ORCH_API_KEY (D5). The CLI's
# PEAQOS_RPC_URL is the suite's Anvil node (chain id 8453 = the CLI's `base`), so the chain-id
# probe of a wallet proof finds it; decimals come from rail.metadata (D9).

def _cli_shop(ctx: Ctx) -> tuple[dict, tuple[str, ...]]:
    s = _shop(ctx)
    if "token_file" not in s:
        s["token_file"] = ctx.cli.file(f"token-{s['pairing_id']}.txt", s["token"] + "\n")
    return s, ("--machine-id", s["machine_id"], "--agent-pairing-id", s["pairing_id"],
               "--pairing-token-file", s["token_file"])


def _cli_key(ctx: Ctx) -> dict:
    return {"PEAQOS_ORCH_API_KEY": ctx.api_key}


def _clean_failure(r) -> None:
    """A refused command: non-zero exit, an `Error:` line, no traceback anywhere."""
    assert r.exit_code != 0 and r.traceback is None, r.describe()
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.describe()


@check("cli:order-free", since="0.12.1")
def cli_order_free(ctx: Ctx) -> None:
    """`scale order <free native service>` (create → execute, no confirm), then `order status`,
    `order list`, `order received`, `order dispute`."""
    import json
    s, common = _cli_shop(ctx)
    tf = s["token_file"]
    inp = ctx.cli.file("echo-input.json", json.dumps({"note_text": "from the cli", "n": 1}))
    with step("order --input --json"):
        out = ctx.cli.run("scale", "order", shop.ECHO, *common, "--input", inp,
                          "--json").ok().json()
        o = out["order"]
        assert o["service_id"] == shop.ECHO and o["status"] == "delivered", o
        assert "payment" not in out, out  # free: no payment lookup
        ex_ = out["execution"]
        assert ex_["status_code"] == 200 and ex_["outcome"]["status"] == "completed", ex_
        seen = ctx.provider.requests("/echo/orders")[-1]
        assert seen["body"] == {"note_text": "from the cli", "n": 1}, seen  # 0.12.1: verbatim
        oid = o["id"]
    with step("search, then order --search-id --quote-id"):
        found = ctx.cli.run("scale", "search", "--machine-id", s["machine_id"],
                            "--pairing-token-file", tf, "--service-type", "commerce",
                            "--max-results", "25", "--json").ok().json()
        q = [x for x in found["quotes"] if x["service_id"] == shop.ECHO][0]
        out = ctx.cli.run("scale", "order", shop.ECHO, *common, "--search-id", found["id"],
                          "--quote-id", q["id"], "--json").ok().json()
        assert (out["order"]["search_id"], out["order"]["quote_id"]) == (found["id"], q["id"])
        assert out["order"]["status"] == "delivered", out["order"]
    with step("order -y (human output)"):
        r = ctx.cli.run("scale", "order", shop.ECHO, *common, "-y").ok()
        assert "Order executed." in r.stdout, r.describe()
        assert "peaqos scale order received" in r.stdout + r.stderr, r.describe()
    with step("order status --pairing-token-file --json"):
        st = ctx.cli.run("scale", "order", "status", oid, "--pairing-token-file", tf,
                         "--json").ok().json()
        assert st["order"]["id"] == oid and st["order"]["status"] == "delivered", st
        assert st["payment"] is None, st  # free with a token: no payment lookup
    with step("order status without a key: platform auth refused (D5)"):
        r = ctx.cli.run("scale", "order", "status", oid, "--json")
        _clean_failure(r)
        assert r.exit_code == 2 and "PEAQOS_ORCH_API_KEY" in r.stderr, r.describe()
    with step("order status --json (platform, with the key)"):
        st = ctx.cli.run("scale", "order", "status", oid, "--json", env=_cli_key(ctx)).ok().json()
        assert st["order"]["status"] == "delivered" and st["payment"] is None, st
    with step("order list"):
        items = ctx.cli.run("scale", "order", "list", "--machine-id", s["machine_id"], "--json",
                            env=_cli_key(ctx)).ok().json()
        ids = [i["id"] for i in items]
        assert ids.count(oid) == 1, ids
        page = ctx.cli.run("scale", "order", "list", "--machine-id", s["machine_id"], "--limit",
                           "1", "--json", env=_cli_key(ctx)).ok().json()
        assert len(page["items"]) == 1 and page["items"][0]["id"] == ids[0], page
        assert isinstance(page["next_cursor"], str) and page["next_cursor"], page
    with step("order received"):
        r = ctx.cli.run("scale", "order", "received", oid, "--pairing-token-file", tf).ok()
        assert "Delivery confirmed." in r.stdout and "confirmed" in r.stdout, r.describe()
        assert "Settlement" not in r.stdout, r.describe()
    with step("order dispute"):
        ev = ctx.cli.file("evidence.json", json.dumps({"note_line": "wrong output"}))
        d = ctx.cli.run("scale", "order", "dispute", oid, "--reason", " bad result ", "--evidence",
                        ev, "--pairing-token-file", tf, "-y", "--json").ok().json()
        assert d["order"]["status"] == "disputed", d
        assert d["dispute"]["status"] == "open" and d["dispute"]["reason"] == "bad result", d
        raw = ctx.raw("GET", "/audit-events?resourceType=market-order&limit=500")[1]["items"]
        ev_ = [e for e in raw if e["resourceId"] == oid and e["type"] == "market.order.disputed"]
        assert ev_ and ev_[0]["payload"]["reason"] == "bad result", ev_
    with step("an unknown order"):
        r = ctx.cli.run("scale", "order", "status", "ord_01J9Z3K4Q7W8X5R2T6Y1V0B3N8", "--json",
                        env=_cli_key(ctx))
        _clean_failure(r)


@check("cli:order-handoff", since="0.12.1")
def cli_order_handoff(ctx: Ctx) -> None:
    s, common = _cli_shop(ctx)
    sid = "sdk-desk:console"
    out = ctx.cli.run("scale", "order", sid, *common, "--json").ok().json()
    assert out["execution"]["status_code"] == 202, out["execution"]
    assert out["execution"]["handoff"]["url"] == _catalog()["services"][sid]["handoff"]["url"]
    assert out["order"]["status"] == "handoff", out["order"]
    oid = out["order"]["id"]
    r = ctx.cli.run("scale", "order", sid, *common, "-y").ok()
    assert "external handoff" in r.stdout.lower() and "http://127.0.0.1:9/desk" in r.stdout, \
        r.describe()
    r = ctx.cli.run("scale", "order", "received", oid, "--pairing-token-file",
                    s["token_file"]).ok()
    assert "Delivery confirmed." in r.stdout and "confirmed" in r.stdout, r.describe()
    assert _raw_order(ctx, oid)["status"] == "confirmed"


@check("cli:order-wallet", since="0.12.1")
def cli_order_wallet(ctx: Ctx) -> None:
    """`scale order <wallet service> --payment-tx-hash/--payment-chain/--payment-token` with a
    real ERC-20 transfer: intent → proof (`recorded`, verified over RPC by the server) →
    execute; `order received` prints the settlement."""
    s, common = _cli_shop(ctx)
    node = ctx.evm
    pay = ("--payment-chain", "base", "--payment-token", "USDC")
    with step("without PEAQOS_ORCH_API_KEY: the payment lookup needs platform auth (D5)"):
        r = ctx.cli.run("scale", "order", shop.WALLET, *common, "--payment-tx-hash",
                        "0x" + "ab" * 32, *pay, "--json")
        _clean_failure(r)
        assert r.exit_code == 2 and "PEAQOS_ORCH_API_KEY" in r.stderr, r.describe()
    with step("a transfer of another amount: the server's RPC check refuses the proof"):
        small, _ = _pay_wallet(ctx, raw=shop.WALLET_RAW - 1)
        r = ctx.cli.run("scale", "order", shop.WALLET, *common, "--payment-tx-hash", small, *pay,
                        "--json", env=_cli_key(ctx))
        _clean_failure(r)
        assert "was created but payment proof failed" in r.stderr, r.describe()
        assert "PAYMENT_TRANSFER_NOT_FOUND" in r.stderr, r.describe()
    tx, receipt = _pay_wallet(ctx)
    with step("order with the transfer"):
        out = ctx.cli.run("scale", "order", shop.WALLET, *common, "--payment-tx-hash", tx, *pay,
                          "--json", env=_cli_key(ctx)).ok().json()
        o, p = out["order"], out["payment"]
        assert o["status"] == "delivered" and out["execution"]["status_code"] == 200, out
        assert p["status"] == "held" and p["rail"]["rail_type"] == "wdk-usdt-transfer", p
        assert p["proof"]["transaction_hash"] == tx.lower(), p["proof"]
        oid = o["id"]
    with step("what the server recorded"):
        raw = _raw_payment(ctx, oid)
        proof = raw["proof"]
        assert proof["verificationMode"] == "rpc", proof  # the CLI sent "recorded"
        assert proof["blockNumber"] == int(receipt["blockNumber"], 16), proof
        assert (proof["chain"], proof["amount"], proof["rawAmount"]) == (
            shop.CHAIN, "0.02", str(shop.WALLET_RAW)), proof
        assert proof["payerAddress"].lower() == s["agent"].address.lower(), proof
    with step("order received: settlement"):
        r = ctx.cli.run("scale", "order", "received", oid, "--pairing-token-file",
                        s["token_file"], env=_cli_key(ctx)).ok()
        assert "Delivery confirmed." in r.stdout and "release_pending" in r.stdout, r.describe()
        assert "Settlement:" in r.stdout and tx.lower() in r.stdout, r.describe()


@check("cli:order-x402", since="0.12.1")
def cli_order_x402(ctx: Ctx) -> None:
    """`scale order <x402 service>`: intent (challenge from the paywall) → local signature with
    PEAQOS_PRIVATE_KEY → proof → execute with the signature (the paywall verifies the EIP-712
    recovery and settles on chain) → confirm, all by the CLI."""
    s, common = _cli_shop(ctx)
    node = ctx.evm
    payer = ctx.cli.account
    node.mint(payer.address, 2 * shop.X402_RAW)
    before = (node.balance_of(payer.address), node.balance_of(shop.X402_PAY_TO))
    with step("order --json"):
        out = ctx.cli.run("scale", "order", shop.X402, *common, "--json",
                          env=_cli_key(ctx)).ok().json()
        o, ex_ = out["order"], out["execution"]
        assert ex_["status_code"] == 200 and ex_["outcome"]["status"] == "completed", ex_
        assert ex_["outcome"]["result"]["paidBy"].lower() == payer.address.lower(), ex_
        oid = o["id"]
    with step("the paywall got the CLI's signature"):
        paid = [q for q in ctx.provider.requests(shop.X402_PATH)
                if q["headers"].get("payment-signature")]
        import base64
        import json
        sent = json.loads(base64.b64decode(paid[-1]["headers"]["payment-signature"]))
        assert sent["payload"]["authorization"]["from"].lower() == payer.address.lower(), sent
    with step("confirmed by the CLI; payment released with the settlement"):
        assert _raw_order(ctx, oid)["status"] == "confirmed"
        raw = _raw_payment(ctx, oid)
        assert raw["status"] == "released", raw["status"]
        settle = raw["proof"]["metadata"]["paymentSettlement"]
        assert settle["status"] == "settled", settle
        tx = raw["proof"]["transactionHash"]
        assert transfer_logs(node.receipt(tx)) == [
            (payer.address.lower(), shop.X402_PAY_TO.lower(), shop.X402_RAW)], tx
        after = (node.balance_of(payer.address), node.balance_of(shop.X402_PAY_TO))
        assert after == (before[0] - shop.X402_RAW, before[1] + shop.X402_RAW), (before, after)
        # the proof's metadata as the CLI sent it, camel-cased by the SDK (D18)
        assert raw["proof"]["metadata"]["serviceId"] == shop.X402, raw["proof"]["metadata"]
    with step("order status shows the settlement"):
        st = ctx.cli.run("scale", "order", "status", oid, "--json", env=_cli_key(ctx)).ok().json()
        assert st["payment"]["proof"]["metadata"]["payment_settlement"]["status"] == "settled", st
    with step("order received after the CLI's own confirm: ORDER_CLOSED (D14)"):
        r = ctx.cli.run("scale", "order", "received", oid, "--pairing-token-file",
                        s["token_file"])
        _clean_failure(r)
        assert r.exit_code == 2 and "already closed" in r.stderr, r.describe()
    with step("human output"):
        r = ctx.cli.run("scale", "order", shop.X402, *common, "-y", env=_cli_key(ctx)).ok()
        assert "Order executed." in r.stdout and "paid (x402)" in r.stdout, r.describe()
        assert "[6/6] Confirming delivery..." in r.stderr, r.describe()


@check("cli:order-received-x402", since="0.12.1")
def cli_order_received_x402(ctx: Ctx) -> None:
    """`order received` on an x402 order paid through the SDK (the CLI would have confirmed its
    own): confirm, then the settlement from the payment's proof."""
    s, _ = _cli_shop(ctx)
    payer = Account.create()
    o, signed, r = _x402_paid(ctx, payer)
    assert r.order.status == "delivered", r.order
    tx = _raw_payment(ctx, o.id)["proof"]["transactionHash"]
    r = ctx.cli.run("scale", "order", "received", o.id, "--pairing-token-file", s["token_file"],
                    env=_cli_key(ctx)).ok()
    out = r.stdout
    assert "Delivery confirmed." in out and "released" in out, r.describe()
    assert "Settlement:" in out, r.describe()
    for want in (tx, shop.CHAIN, payer.address, "settled"):
        assert want.lower() in out.lower(), (want, r.describe())


@check("cli:order-escrow-handoff", since="0.12.1")
def cli_order_escrow_handoff(ctx: Ctx) -> None:
    """`scale order <escrow + handoff service>`: intent → escrow-lock (the transfer hash) →
    execute (202); `order received` confirms (held → release_pending)."""
    s, common = _cli_shop(ctx)
    raw = round(shop.ESCROW_PRICE * 10**shop.TOKEN_DECIMALS)
    tx, _ = _pay_wallet(ctx, raw=raw, payee=shop.ESCROW_ADDRESS)
    out = ctx.cli.run("scale", "order", shop.ESCROW_DESK, *common, "--payment-tx-hash", tx,
                      "--payment-chain", "base", "--payment-token", "USDC", "--json",
                      env=_cli_key(ctx)).ok().json()
    assert out["execution"]["status_code"] == 202, out["execution"]
    assert out["execution"]["handoff"]["url"].endswith("/desk"), out["execution"]
    assert out["order"]["status"] == "handoff", out["order"]
    assert out["payment"]["status"] == "held", out["payment"]
    oid = out["order"]["id"]
    lock = _raw_payment(ctx, oid)
    assert lock["rail"]["type"] == "onchain-escrow", lock["rail"]
    assert lock["rail"]["escrowAddress"].lower() == shop.ESCROW_ADDRESS.lower(), lock["rail"]
    assert lock["proof"]["transactionHash"] == tx.lower(), lock["proof"]
    r = ctx.cli.run("scale", "order", "received", oid, "--pairing-token-file", s["token_file"],
                    env=_cli_key(ctx)).ok()
    assert "Delivery confirmed." in r.stdout and "release_pending" in r.stdout, r.describe()
    assert "Settlement:" in r.stdout and tx.lower() in r.stdout, r.describe()


@check("cli:onem2m-only-commands", since="0.12.1")
def cli_onem2m_only(ctx: Ctx) -> None:
    """`order execute` and `service execute` speak only oneM2M (clients.md §7.7): on these
    services they must fail cleanly."""
    s, common = _cli_shop(ctx)
    o = _order(ctx, shop.ECHO)
    r = ctx.cli.run("scale", "order", "execute", o.id, "--pairing-token-file", s["token_file"],
                    "-y")
    _clean_failure(r)
    assert r.exit_code == 1 and "not an oneM2M order" in r.stderr, r.describe()
    assert _raw_order(ctx, o.id)["status"] == "created", "order execute must not run it"
    r = ctx.cli.run("scale", "service", "execute", shop.ECHO, *common, "--operation",
                    "list-devices", "--json")
    _clean_failure(r)  # the server refuses the oneM2M operation (400): exit 2
    assert r.exit_code == 2 and "operation" in r.stderr, r.describe()


if __name__ == "__main__":
    sys.exit(main())
