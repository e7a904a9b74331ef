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
    TEST_PRIVATE_KEY, Ctx, FakeMcr, check, eventually, expect_api_error, main, step)

from eth_account import Account
from eth_account.messages import encode_defunct

try:  # 0.12.x
    from peaq_os_sdk.orchestration.types.machine import (
        CreateMachineIdentityChallengeRequest, CreateMachineRequest, Machine,
        MachineIdentityProofInput, UpdateMachineRequest)
except ImportError:  # 0.2.0
    from peaq_os_sdk.types.orchestration.machine import (
        CreateMachineIdentityChallengeRequest, CreateMachineRequest, Machine,
        MachineIdentityProofInput, UpdateMachineRequest)

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


if __name__ == "__main__":
    sys.exit(main())
