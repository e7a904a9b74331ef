"""SDK conformance checks, run once per installed `peaq-os-sdk` version.

Usage (run.sh does this): PEAQOS_ORCHESTRATION_URL=http://127.0.0.1:PORT python conformance.py
Optional env: PEAQOS_API_KEY, SDK_CHECKS=<regex on check names>, SDK_TRACE=1.

Add a check with @check("name", since=..., until=...); checks run in file order and may
share data through ctx.state. Checks named "transport:*" use the version's internal
transport because that version has no public method for the call; they still send
exactly the headers/encoding that version sends.
"""

from __future__ import annotations

import re
import sys

from harness import Ctx, check, eventually, expect_api_error, main  # harness sets DO_NOT_TRACK first

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


if __name__ == "__main__":
    sys.exit(main())
