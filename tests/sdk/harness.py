"""Plumbing for the SDK conformance checks: check registry, client factory, runner.

Runs inside a venv holding exactly one `peaq-os-sdk` version. Test logic lives in
conformance.py; this module knows nothing about individual endpoints.
"""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")  # must be set before the client is built

import atexit
import inspect
import json
import re
import select
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any, Callable

from peaq_os_sdk import PeaqosClient
from peaq_os_sdk.orchestration import transport
from peaq_os_sdk.orchestration.errors import OrchestrationApiError

SDK_VERSION = _dist_version("peaq-os-sdk")


def vt(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(".")[:3])


V = vt(SDK_VERSION)

# Anvil/Hardhat account #0: publicly known, holds nothing. The clients insist on a
# key; orchestration calls never touch the RPC URL.
TEST_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DUMMY_RPC_URL = "http://127.0.0.1:9"

Check = Callable[["Ctx"], None]
_CHECKS: list[tuple[str, tuple | None, tuple | None, Check]] = []


def check(name: str, *, since: str | None = None, until: str | None = None):
    """Register a check for client versions in [since, until] (inclusive, optional)."""

    def deco(fn: Check) -> Check:
        _CHECKS.append((name, since and vt(since), until and vt(until), fn))
        return fn

    return deco


def build_client(base_url: str, api_key: str | None) -> PeaqosClient:
    kwargs: dict[str, Any] = dict(
        rpc_url=DUMMY_RPC_URL,
        private_key=TEST_PRIVATE_KEY,
        orchestration_url=base_url,
        api_key=api_key,
    )
    # 0.2.0 requires six contract addresses; 0.12.1 takes them from a deployment
    # snapshot and rejects them as arguments.
    params = inspect.signature(PeaqosClient.__init__).parameters
    for i, name in enumerate(
        ("identity_registry", "identity_staking", "event_registry",
         "machine_nft", "did_registry", "batch_precompile"), start=1):
        if name in params:
            kwargs[name] = "0x" + f"{i:02x}" * 20
    return PeaqosClient(**kwargs)


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
              ) -> tuple[int, Any]:
    """Plain stdlib HTTP call, no client involved: (status, decoded JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw else None)


class FakeMcr:
    """Admin client for fake_mcr.py (the MCR the server under test resolves identities with)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _machine_url(self, did: str) -> str:
        return f"{self.url}/_admin/machine/{urllib.parse.quote(did, safe=':')}"

    def put(self, did: str, body: Any, status: int = 200) -> None:
        """Serve `body` (JSON) with `status` for GET /machine/{did}."""
        url = self._machine_url(did) + ("" if status == 200 else f"?status={status}")
        code, res = http_json("PUT", url, body)
        assert code == 200, (code, res)

    def register(self, did: str, *, operator: str | None = None, machine_id: Any = None,
                 bond_status: str = "bonded", **extra: Any) -> dict:
        """Register an activated machine in the MCR's shape (spec identity-and-machines §2)."""
        if machine_id is None:
            tail = did[len("did:peaq:"):]
            machine_id = tail if tail.isdigit() else 1
        peaqos: dict[str, Any] = {"did": did, "machine_id": machine_id, "bond_status": bond_status}
        if operator is not None:
            peaqos["operator"] = operator
        peaqos.update(extra)
        body = {"peaqos": peaqos}
        self.put(did, body)
        return body

    def delete(self, did: str) -> None:
        code, res = http_json("DELETE", self._machine_url(did))
        assert code == 200, (code, res)

    def requests(self) -> list[dict]:
        code, res = http_json("GET", f"{self.url}/_admin/requests")
        assert code == 200, (code, res)
        return res


class FakeProvider:
    """Admin client for fake_provider.py (the provider and x402 paywall of the sdk-shop services)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def requests(self, path: str | None = None) -> list[dict]:
        """Every request it got ({method, path, query, headers, body}), optionally for one path."""
        code, res = http_json("GET", f"{self.url}/_admin/requests")
        assert code == 200, (code, res)
        return [r for r in res["items"] if path is None or r["path"] == path]


class Ctx:
    """What every check receives. `state` carries data between checks (run in order)."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.version = SDK_VERSION
        self.v = V
        self.base_url = base_url
        self.api_key = api_key
        self.client = build_client(base_url, api_key)
        self.orch = self.client.orchestration
        self.state: dict[str, Any] = {}
        mcr = os.environ.get("FAKE_MCR_URL")
        self.mcr: FakeMcr | None = FakeMcr(mcr) if mcr else None
        provider = os.environ.get("FAKE_PROVIDER_URL")
        self._provider: FakeProvider | None = FakeProvider(provider) if provider else None
        self._runtime: FakeRuntime | None = None
        self._cli: Cli | None = None

    @property
    def runtime(self) -> "FakeRuntime":
        """A FakeRuntime shared by the checks, started on first use."""
        if self._runtime is None:
            self._runtime = FakeRuntime()
        return self._runtime

    @property
    def provider(self) -> FakeProvider:
        """The fake provider / x402 paywall run.sh started for this run (FAKE_PROVIDER_URL)."""
        assert self._provider is not None, "FAKE_PROVIDER_URL is not set (run through run.sh)"
        return self._provider

    @property
    def evm(self):
        """The suite's Anvil node (evm.Node; ANVIL_URL), with the test token set up."""
        url = os.environ.get("ANVIL_URL")
        assert url, "ANVIL_URL is not set: run.sh could not start Anvil (see its log above)"
        from evm import Node
        return Node(url)

    @property
    def cli(self) -> "Cli":
        """The official CLI (its own venv, SDK_CLI_PYTHON), started on first use."""
        if self._cli is None:
            self._cli = Cli(self.base_url)
        return self._cli

    def client_with_key(self, api_key: str | None) -> PeaqosClient:
        """Another client of this version, configured with `api_key` (None: no key)."""
        return build_client(self.base_url, api_key)

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the server without any client (exact wire JSON back, no key conversion)."""
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        return http_json(method, f"{self.base_url.rstrip('/')}/api/v1{path}", body, headers)

    def api(self, method: str, path: str, shape: str = "raw", *,
            auth: str | None = "none", **kw: Any) -> Any:
        """Call the version's own transport (headers/encoding exactly as the SDK sends).

        auth: "none", "platform", or a pairing token string.
        """
        a = (transport.AuthNone() if auth in (None, "none") else
             transport.AuthPlatform() if auth == "platform" else
             transport.AuthAgentPairing(token=auth))
        cfg = transport.TransportClientConfig(orchestration_url=self.base_url,
                                              api_key=self.api_key)
        return transport.api_request(cfg, self.client.session, method, path, shape,
                                     auth=a, **kw)


class Exchange:
    """One HTTP exchange the client made: request and response exactly as on the wire."""

    def __init__(self, res) -> None:
        req = res.request
        self.method: str = req.method
        self.path: str = urllib.parse.urlsplit(req.url).path
        self.url: str = req.url
        self.request_headers: dict[str, str] = {k.lower(): v for k, v in req.headers.items()}
        self.request_body: Any = json.loads(req.body) if req.body else None
        self.status: int = res.status_code
        self.text: str = res.text
        self.body: Any = json.loads(self.text) if self.text else None

    def __repr__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@contextmanager
def wire(ctx: "Ctx", *clients: PeaqosClient):
    """Record every exchange the client's own session makes inside the block (list of Exchange).

    Hooks the `requests.Session` the client sends through (ctx.client, plus any other client
    given); the calls themselves are unchanged.
    """
    seen: list[Exchange] = []

    def hook(res, *args, **kwargs):
        seen.append(Exchange(res))
        return res

    sessions = []
    for c in (ctx.client, *clients):
        if all(c.session is not s for s in sessions):
            sessions.append(c.session)
    for s in sessions:
        s.hooks["response"].append(hook)
    try:
        yield seen
    finally:
        for s in sessions:
            s.hooks["response"].remove(hook)


class FakeRuntime:
    """A stdlib HTTP server standing in for a machine's runtime (e.g. QVAC) on loopback.

    Answers 200 `{"ok": true}` to every GET and records (path, headers) of each request, so a
    check can see what the server's prober sent.
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen: list[tuple[str, dict[str, str]]] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with lock:
                    seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._seen, self._lock = seen, lock
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def requests(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return list(self._seen)


class CliResult:
    """One CLI invocation: exit code, stdout, stderr (and a traceback if it crashed)."""

    def __init__(self, argv: list[str], exit_code: int, stdout: str, stderr: str,
                 traceback_text: str | None = None) -> None:
        self.argv, self.exit_code, self.stdout, self.stderr = argv, exit_code, stdout, stderr
        self.traceback = traceback_text

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise AssertionError(f"{self}: stdout is not JSON: {self.stdout[:500]!r}") from e

    def ok(self) -> "CliResult":
        """Exit 0 and nothing on stderr that looks like an error."""
        assert self.exit_code == 0 and self.traceback is None, self.describe()
        assert "Error" not in self.stderr and "Traceback" not in self.stderr, self.describe()
        return self

    def describe(self) -> str:
        tail = f"\n{self.traceback}" if self.traceback else ""
        return (f"{self}: exit {self.exit_code}\nstdout: {self.stdout[-1500:]!r}\n"
                f"stderr: {self.stderr[-1500:]!r}{tail}")

    def __repr__(self) -> str:
        return "peaqos " + " ".join(self.argv)


class Cli:
    """The official `peaqos` CLI, installed in its own venv by run.sh (SDK_CLI_PYTHON).

    `run` executes a command through cli_driver.py: one long-lived process of the CLI venv that
    imports the CLI once and invokes its click entry point (`peaq_os_cli.main:cli`, the console
    script's target) per command, so each command costs milliseconds instead of the ~2 s import.
    `run_script` runs the installed `peaqos` console script as a subprocess. Both run in a private
    temp dir (the CLI loads ./.env from its working directory; HOME points there too) with
    telemetry off and no PEAQOS_* variable inherited from the suite.
    """

    def __init__(self, base_url: str) -> None:
        py = os.environ.get("SDK_CLI_PYTHON")
        assert py, "SDK_CLI_PYTHON is not set (run the suite through run.sh)"
        self.python = py
        self.script = str(Path(py).parent / "peaqos")
        self.dir = tempfile.mkdtemp(prefix="peaqos-cli-")
        from eth_account import Account
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEAQOS_")}
        self.account = Account.create()  # PEAQOS_PRIVATE_KEY: the CLI's signer (x402 payer)
        # The suite's Anvil node when there is one: the CLI asks it for eth_chainId (and, without
        # rail metadata, decimals()) on wallet proofs.
        env.update(DO_NOT_TRACK="1", PEAQOS_TELEMETRY="0", HOME=self.dir,
                   PEAQOS_ORCHESTRATION_URL=base_url,
                   PEAQOS_RPC_URL=os.environ.get("ANVIL_URL") or DUMMY_RPC_URL,
                   PEAQOS_PRIVATE_KEY="0x" + bytes(self.account.key).hex())
        self.env = env
        self._driver: subprocess.Popen | None = None
        atexit.register(self.close)

    def file(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _start(self) -> subprocess.Popen:
        if self._driver is None or self._driver.poll() is not None:
            driver = str(Path(__file__).with_name("cli_driver.py"))
            self._driver = subprocess.Popen(
                [self.python, driver], cwd=self.dir, env=self.env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        return self._driver

    def run(self, *argv: str, env: dict[str, str | None] | None = None,
            timeout: float = 60) -> CliResult:
        """`peaqos <argv>` through the driver (env: overrides, None unsets)."""
        p = self._start()
        assert p.stdin and p.stdout
        p.stdin.write(json.dumps({"argv": list(argv), "env": env or {}}) + "\n")
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], timeout)
        line = p.stdout.readline() if ready else ""
        if not line:
            p.kill()
            raise AssertionError(f"CLI driver gave no answer to peaqos {' '.join(argv)}")
        r = json.loads(line)
        return CliResult(list(argv), r["exit_code"], r["stdout"], r["stderr"], r["traceback"])

    def run_script(self, *argv: str, timeout: float = 90) -> CliResult:
        """The installed console script as a real subprocess."""
        self._start()  # the driver imports the CLI meanwhile
        res = subprocess.run([self.script, *argv], cwd=self.dir, env=self.env, text=True,
                             capture_output=True, timeout=timeout)
        return CliResult(list(argv), res.returncode, res.stdout, res.stderr)

    def close(self) -> None:
        if self._driver is not None and self._driver.poll() is None:
            assert self._driver.stdin
            self._driver.stdin.close()
            try:
                self._driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._driver.kill()
        self._driver = None
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


def expect_api_error(fn: Callable[[], Any], code: str, status: int | None = None):
    """Run fn, require an OrchestrationApiError with this code (and HTTP status)."""
    try:
        fn()
    except OrchestrationApiError as e:
        got = (e.code, e.status_code)
        assert e.code == code and (status is None or e.status_code == status), \
            f"expected {code}/{status}, got {got}: {e}"
        return e
    raise AssertionError(f"expected OrchestrationApiError {code}, call succeeded")


def eventually(fn: Callable[[], Any], timeout: float = 10.0, step: float = 0.25) -> Any:
    """Retry fn while it fails an assertion or gets a 503 (e.g. readiness right after start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, OrchestrationApiError) as e:
            retry = isinstance(e, AssertionError) or e.status_code == 503
            if not retry or time.monotonic() > deadline:
                raise
        time.sleep(step)


@contextmanager
def step(name: str):
    """Label a stage of a multi-step check; a failure inside it reports `(at step: name)`."""
    try:
        yield
    except Exception as e:
        e.add_note(f"at step: {name}")
        raise


def _describe(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}"
    if isinstance(e, OrchestrationApiError):
        msg += f" [code={e.code} status={e.status_code} details={e.details}]"
    notes = getattr(e, "__notes__", None)
    if notes:
        msg += " (" + "; ".join(notes) + ")"
    return msg


def main() -> int:
    base_url = os.environ["PEAQOS_ORCHESTRATION_URL"]
    only = re.compile(os.environ.get("SDK_CHECKS", ""))
    trace = os.environ.get("SDK_TRACE") == "1"
    ctx = Ctx(base_url, os.environ.get("PEAQOS_API_KEY") or None)
    passed = failed = 0
    for name, lo, hi, fn in _CHECKS:
        if (lo and V < lo) or (hi and V > hi) or not only.search(name):
            continue
        t0 = time.monotonic()
        try:
            fn(ctx)
            passed += 1
            print(f"PASS [{SDK_VERSION}] {name} ({time.monotonic() - t0:.2f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 — every failure is reported, not raised
            failed += 1
            print(f"FAIL [{SDK_VERSION}] {name} ({time.monotonic() - t0:.2f} s): {_describe(e)}",
                  flush=True)
            if trace:
                traceback.print_exc(file=sys.stdout)
    print(f"SUMMARY passed={passed} failed={failed}", flush=True)
    return 1 if failed else 0
