"""A fake provider and x402 v2 paywall on loopback for the SDK suite's order checks.

Runs in a client venv (eth_account for EIP-712 recovery). Binds --port on 127.0.0.1 (run.sh
picks a free one, so it can write the per-run order catalogue, catalog/generate.py --orders, and
start the server while this imports); the server under test calls it for the sdk-shop services.

| Path | Answer |
|---|---|
| `/echo/...` (any method) | 200 `{"ok": true, "method", "path", "query", "body"}` |
| `/status/{code}` | that status, `{"error": {"message": "fixture status <code>"}}` |
| `/x402/report` (shop.X402_PATH) | the paywall, below |
| `GET /_admin/requests` | every request above: `{method, path, query, headers, body}` |
| `GET /_admin/health` | 200 |

The paywall answers a request without `PAYMENT-SIGNATURE` with `402`, a `PAYMENT-REQUIRED`
header (padded standard base64 of an x402 v2 `PaymentRequired` with one `exact` accept: chain
shop.CHAIN, asset shop.TOKEN_ADDRESS, shop.X402_RAW base units to shop.X402_PAY_TO,
`maxTimeoutSeconds`, `extra {name, version}` = the token's EIP-712 domain) and a JSON body. A
request with `PAYMENT-SIGNATURE` is verified as a facilitator would:

- base64 of an x402 v2 `PaymentPayload` whose `accepted` equals the offered accept;
- `payload.authorization`: `to` = payTo, `value` = amount, `validAfter` <= now < `validBefore`,
  a nonce not seen before;
- the EIP-3009 `TransferWithAuthorization` signature, EIP-712 domain (name, version, chain id,
  verifyingContract = asset), recovers to `authorization.from`.

Then, with --rpc-url, the paywall settles: Anvil account #1 (shop.FACILITATOR, unlocked) calls
`transferWithAuthorization` on the token, and the answer is `200` with a `PAYMENT-RESPONSE`
header (base64 `SettleResponse {success: true, transaction, network, payer, amount}`). Any
failed rule answers `402` again, with the rule in the body's `error` and in the challenge's
`error`; a settlement that reverts answers `402` with `PAYMENT-RESPONSE {success: false}`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shop  # noqa: E402

from eth_account import Account  # noqa: E402
from eth_account.messages import encode_typed_data  # noqa: E402

SEEN: list[dict] = []
NONCES: set[tuple[str, str]] = set()
LOCK = threading.Lock()
NODE = None  # evm.Node when --rpc-url is given


def accept_entry() -> dict:
    return {"scheme": "exact", "network": shop.CHAIN, "asset": shop.TOKEN_ADDRESS,
            "amount": str(shop.X402_RAW), "payTo": shop.X402_PAY_TO,
            "maxTimeoutSeconds": shop.X402_TIMEOUT_S,
            "extra": {"name": shop.TOKEN_NAME, "version": shop.TOKEN_VERSION}}


def b64(doc: dict) -> str:
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def payment_required(resource_url: str, error: str | None = None) -> dict:
    doc = {"x402Version": 2, "resource": {"url": resource_url, "description": "SDK shop report",
                                          "mimeType": "application/json"},
           "accepts": [accept_entry()]}
    if error:
        doc["error"] = error
    return doc


class Rejected(Exception):
    pass


def verify(header: str) -> dict:
    """Checks a PAYMENT-SIGNATURE value; the authorization it carries."""
    try:
        payload = json.loads(base64.b64decode(header, validate=True))
    except ValueError as e:
        raise Rejected("invalid_payload: not base64 JSON") from e
    if not isinstance(payload, dict) or payload.get("x402Version") != 2:
        raise Rejected("invalid_x402_version")
    offered = accept_entry()
    accepted = payload.get("accepted") or {}
    for key in ("scheme", "network", "amount", "maxTimeoutSeconds", "extra"):
        if accepted.get(key) != offered[key]:
            raise Rejected(f"accepted_mismatch: {key}")
    for key in ("asset", "payTo"):
        if str(accepted.get(key, "")).lower() != offered[key].lower():
            raise Rejected(f"accepted_mismatch: {key}")
    inner = payload.get("payload") or {}
    auth, signature = inner.get("authorization") or {}, inner.get("signature")
    try:
        frm, to = auth["from"], auth["to"]
        value, after, before = int(auth["value"]), int(auth["validAfter"]), int(auth["validBefore"])
        nonce = auth["nonce"]
        nonce_bytes = bytes.fromhex(nonce[2:])
        assert len(nonce_bytes) == 32 and isinstance(signature, str)
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise Rejected("invalid_payload: authorization") from e
    if to.lower() != shop.X402_PAY_TO.lower():
        raise Rejected("invalid_exact_evm_payload_recipient_mismatch")
    if value != shop.X402_RAW:
        raise Rejected("invalid_exact_evm_payload_authorization_value")
    now = int(time.time())
    if not after <= now < before:
        raise Rejected("invalid_exact_evm_payload_authorization_valid_window")
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
        "message": {"from": frm, "to": to, "value": value, "validAfter": after,
                    "validBefore": before, "nonce": nonce_bytes},
    }
    try:
        signer = Account.recover_message(encode_typed_data(full_message=typed),
                                         signature=signature)
    except Exception as e:  # noqa: BLE001 — any malformed signature
        raise Rejected("invalid_exact_evm_payload_signature") from e
    if signer.lower() != frm.lower():
        raise Rejected("invalid_exact_evm_payload_signature")
    with LOCK:
        if (frm.lower(), nonce.lower()) in NONCES:
            raise Rejected("invalid_exact_evm_payload_authorization_nonce_used")
        NONCES.add((frm.lower(), nonce.lower()))
    return {"from": frm, "to": to, "value": value, "validAfter": after, "validBefore": before,
            "nonce": nonce, "signature": signature}


def settle(auth: dict) -> dict:
    """transferWithAuthorization on the token from the facilitator; the SettleResponse."""
    from evm import RpcError, calldata
    sig = bytes.fromhex(auth["signature"][2:])
    r, s, v = sig[:32], sig[32:64], sig[64]
    v = v + 27 if v < 27 else v
    data = calldata(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,"
        "bytes32,bytes32)", auth["from"], auth["to"], auth["value"], auth["validAfter"],
        auth["validBefore"], bytes.fromhex(auth["nonce"][2:]), v, r, s)
    base = {"network": shop.CHAIN, "payer": auth["from"], "amount": str(auth["value"])}
    try:
        receipt = NODE.send_unlocked(shop.FACILITATOR, shop.TOKEN_ADDRESS, data)
    except RpcError as e:
        return {"success": False, "errorReason": "transaction_failed",
                "errorMessage": str(e)[:200], "transaction": "", **base}
    return {"success": True, "transaction": receipt["transactionHash"], **base}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path == "/_admin/health":
            return self._answer(200, {"ok": True})
        if url.path == "/_admin/requests":
            with LOCK:
                return self._answer(200, {"items": list(SEEN)})
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        with LOCK:
            SEEN.append({"method": self.command, "path": url.path, "query": query,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body})
        if url.path.startswith("/echo/"):
            return self._answer(200, {"ok": True, "method": self.command, "path": url.path,
                                      "query": query, "body": body})
        if url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            return self._answer(code, {"error": {"message": f"fixture status {code}"}})
        if url.path == shop.X402_PATH:
            return self._paywall()
        return self._answer(404, {"error": {"message": "no such fixture path"}})

    def _paywall(self) -> None:
        resource = f"http://{self.headers.get('host')}{shop.X402_PATH}"
        header = self.headers.get("payment-signature")
        if not header:
            return self._answer(402, {"error": "payment required"},
                                {"PAYMENT-REQUIRED": b64(payment_required(resource))})
        try:
            auth = verify(header.strip())
        except Rejected as e:
            return self._answer(402, {"error": str(e)},
                                {"PAYMENT-REQUIRED": b64(payment_required(resource, str(e)))})
        if NODE is None:
            settlement = {"success": True, "transaction": "0x" + "00" * 32, "network": shop.CHAIN,
                          "payer": auth["from"], "amount": str(auth["value"])}
        else:
            settlement = settle(auth)
        if not settlement["success"]:
            return self._answer(402, {"error": settlement["errorReason"]},
                                {"PAYMENT-RESPONSE": b64(settlement)})
        return self._answer(200, {"report": "sdk-shop report", "paidBy": auth["from"]},
                            {"PAYMENT-RESPONSE": b64(settlement)})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def main() -> int:
    global NODE
    ap = argparse.ArgumentParser(description="fake provider and x402 paywall")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rpc-url", help="Anvil node to settle x402 authorizations on")
    args = ap.parse_args()
    if args.rpc_url:
        from evm import Node
        NODE = Node(args.rpc_url)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
