"""A fake peaqOS MCR API for the SDK conformance suite (stdlib only).

Serves `GET /machine/{did}` (spec identity-and-machines.md §2) from an in-memory registry that
the checks fill through an admin API:

    PUT    /_admin/machine/{did}           body = the JSON to serve with 200
    PUT    /_admin/machine/{did}?status=N  serve the body with status N instead
    DELETE /_admin/machine/{did}           unregister; the DID answers 404 again
    GET    /_admin/requests                [{"path", "accept"}] of every /machine/ request so far
    GET    /_admin/health                  200 {"ok": true}

Unknown DIDs answer 404. Hex DIDs (`did:peaq:0x…`) are keyed case-insensitively, as the
orchestrator requests the lower-case canonical form.

Usage: python3 fake_mcr.py --url-file PATH [--host 127.0.0.1] [--port 0]
Binds (port 0 = any free port), then writes its base URL, e.g. http://127.0.0.1:PORT, to
PATH. That URL is the value of PEAQOS_MCR_API_URL. Runs until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MACHINE_PREFIX = "/machine/"
ADMIN_MACHINE_PREFIX = "/_admin/machine/"

_lock = threading.Lock()
_registry: dict[str, tuple[int, bytes]] = {}  # key(did) -> (status, body)
_requests: list[dict[str, str | None]] = []


def key(did: str) -> str:
    return did.lower() if did.lower().startswith("did:peaq:0x") else did


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-mcr/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:  # quiet unless asked
        if os.environ.get("FAKE_MCR_LOG") == "1":
            sys.stderr.write("fake-mcr: " + (fmt % args) + "\n")

    def _send(self, status: int, body: bytes | dict | list | None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _split(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        return parts.path, parse_qs(parts.query)

    def do_GET(self) -> None:  # noqa: N802
        path, _ = self._split()
        if path.startswith(MACHINE_PREFIX):
            did = unquote(path[len(MACHINE_PREFIX):])
            with _lock:
                _requests.append({"path": path, "accept": self.headers.get("accept")})
                entry = _registry.get(key(did))
            if entry is None:
                self._send(404, {"error": "machine not found", "did": did})
            else:
                self._send(*entry)
        elif path == "/_admin/requests":
            with _lock:
                self._send(200, list(_requests))
        elif path == "/_admin/health":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "no such route"})

    def do_PUT(self) -> None:  # noqa: N802
        path, query = self._split()
        if not path.startswith(ADMIN_MACHINE_PREFIX):
            self._send(404, {"error": "no such route"})
            return
        did = unquote(path[len(ADMIN_MACHINE_PREFIX):])
        body = self._body()
        try:
            json.loads(body)
            status = int(query.get("status", ["200"])[0])
        except ValueError as e:
            self._send(400, {"error": str(e)})
            return
        with _lock:
            _registry[key(did)] = (status, body)
        self._send(200, {"did": did, "status": status})

    def do_DELETE(self) -> None:  # noqa: N802
        path, _ = self._split()
        if not path.startswith(ADMIN_MACHINE_PREFIX):
            self._send(404, {"error": "no such route"})
            return
        did = unquote(path[len(ADMIN_MACHINE_PREFIX):])
        with _lock:
            existed = _registry.pop(key(did), None) is not None
        self._send(200, {"did": did, "removed": existed})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--url-file", required=True)
    args = ap.parse_args()
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    tmp = args.url_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"http://{host}:{port}\n")
    os.replace(tmp, args.url_file)  # appears atomically: readers never see a partial URL
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
