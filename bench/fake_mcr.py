#!/usr/bin/env python3
"""Fake peaqOS MCR for the bench: GET /machine/{did} -> 200 bonded, operator = BENCH_SIGNER.

Threaded stdlib server, HTTP/1.1 keep-alive, loopback only. GET /stats returns how many
look-ups it answered (run.sh uses it to prove the server's MCR cache is warm while measuring).
Usage: fake_mcr.py <port> <signer>
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
SIGNER = sys.argv[2]
LOCK = threading.Lock()
COUNT = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the client's
    # delayed ACK adds ~40 ms to every look-up.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global COUNT
        if self.path == "/stats":
            with LOCK:
                return self._send(200, {"lookups": COUNT})
        prefix = "/machine/did:peaq:"
        if not self.path.startswith(prefix) or not self.path[len(prefix):].isdigit():
            return self._send(404, {"error": "not found"})
        number = self.path[len(prefix):]
        with LOCK:
            COUNT += 1
        self._send(200, {"peaqos": {
            "did": "did:peaq:" + number,
            "machine_id": int(number),
            "bond_status": "bonded",
            "operator": SIGNER,
        }})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


if __name__ == "__main__":
    Server(("127.0.0.1", PORT), Handler).serve_forever()
