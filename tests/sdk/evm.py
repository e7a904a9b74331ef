"""The SDK suite's Anvil node: JSON-RPC helpers, and the test token set-up run.sh performs.

Runs in a client venv (eth_account, eth_abi and eth_utils come with the SDKs' web3); JSON-RPC is
plain urllib, so importing this module costs nothing.

  python evm.py setup --rpc-url URL --artifact FILE

deploys tests/evm/contracts/TestToken.sol (the artifact: `{"abi", "bytecode"}` from
tests/evm/compile.js) as ("USD Coin", "2", "USDC", 6), then copies its code and its three
string slots (name, version, symbol) to Base's USDC address (shop.TOKEN_ADDRESS) with
`anvil_setCode`/`anvil_setStorageAt`. The token's domain separator is computed from
`address(this)` and `block.chainid` on every call, so at the new address it is exactly Base
USDC's domain on chain 8453: what the x402 package (2.20 and later) is willing to sign for.
Prints the token address.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shop  # noqa: E402

from eth_abi import decode as abi_decode  # noqa: E402
from eth_abi import encode as abi_encode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402

# Anvil dev account #0 (unlocked on the node; the suite's TEST_PRIVATE_KEY): deploys and mints.
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def calldata(signature: str, *args: Any) -> str:
    types = signature[signature.index("(") + 1:-1]
    types_list = [t for t in types.split(",") if t]
    return "0x" + (selector(signature) + abi_encode(types_list, list(args))).hex()


class RpcError(Exception):
    pass


class Node:
    """A JSON-RPC client for the Anvil node at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._id = 0

    def call(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method,
                           "params": list(params)}).encode()
        req = urllib.request.Request(self.url, data=body,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as res:
            out = json.loads(res.read())
        if out.get("error"):
            raise RpcError(f"{method}: {out['error']}")
        return out["result"]

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def receipt(self, tx_hash: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.call("eth_getTransactionReceipt", tx_hash)
            if r is not None:
                return r
            if time.monotonic() > deadline:
                raise RpcError(f"no receipt for {tx_hash}")
            time.sleep(0.05)

    def send_unlocked(self, sender: str, to: str | None, data: str) -> dict:
        """eth_sendTransaction from an unlocked dev account; the mined receipt (status 0x1)."""
        tx = {"from": sender, "data": data}
        if to is not None:
            tx["to"] = to
        r = self.receipt(self.call("eth_sendTransaction", tx))
        if r["status"] != "0x1":
            raise RpcError(f"transaction {r['transactionHash']} reverted")
        return r

    def send_signed(self, account, to: str, data: str) -> dict:
        """A transaction signed locally by `account` (EIP-1559), sent raw; the mined receipt."""
        nonce = int(self.call("eth_getTransactionCount", account.address, "pending"), 16)
        gas_price = int(self.call("eth_gasPrice"), 16)
        tx = {"chainId": self.chain_id(), "nonce": nonce, "to": to_checksum_address(to),
              "data": data, "value": 0, "gas": 200_000, "maxFeePerGas": 2 * gas_price + 10**9,
              "maxPriorityFeePerGas": 10**9, "type": 2}
        signed = Account.sign_transaction(tx, account.key)
        raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
        r = self.receipt(self.call("eth_sendRawTransaction", "0x" + bytes(raw).hex()))
        if r["status"] != "0x1":
            raise RpcError(f"transaction {r['transactionHash']} reverted")
        return r

    def eth_call(self, to: str, data: str) -> bytes:
        return bytes.fromhex(self.call("eth_call", {"to": to, "data": data}, "latest")[2:])

    def set_balance(self, address: str, wei: int = 10**18) -> None:
        self.call("anvil_setBalance", address, hex(wei))

    # --- the test token (shop.TOKEN_ADDRESS) -------------------------------------------------

    def balance_of(self, address: str, token: str = shop.TOKEN_ADDRESS) -> int:
        out = self.eth_call(token, calldata("balanceOf(address)", to_checksum_address(address)))
        return abi_decode(["uint256"], out)[0]

    def mint(self, to: str, raw: int, token: str = shop.TOKEN_ADDRESS) -> dict:
        return self.send_unlocked(DEPLOYER, token, calldata(
            "mint(address,uint256)", to_checksum_address(to), raw))

    def transfer(self, account, to: str, raw: int, token: str = shop.TOKEN_ADDRESS) -> dict:
        """An ERC-20 transfer signed by `account` (funded with gas first); its receipt."""
        self.set_balance(account.address)
        return self.send_signed(account, token, calldata(
            "transfer(address,uint256)", to_checksum_address(to), raw))

    def authorization_used(self, authorizer: str, nonce: str,
                           token: str = shop.TOKEN_ADDRESS) -> bool:
        out = self.eth_call(token, calldata("authorizationState(address,bytes32)",
                                            to_checksum_address(authorizer),
                                            bytes.fromhex(nonce[2:])))
        return abi_decode(["bool"], out)[0]


def transfer_logs(receipt: dict, token: str = shop.TOKEN_ADDRESS) -> list[tuple[str, str, int]]:
    """(from, to, value) of every ERC-20 Transfer the token logged in `receipt` (lower case)."""
    out = []
    for log in receipt["logs"]:
        if log["address"].lower() == token.lower() and log["topics"][0] == TRANSFER_TOPIC:
            out.append(("0x" + log["topics"][1][-40:], "0x" + log["topics"][2][-40:],
                        int(log["data"], 16)))
    return out


def setup(node: Node, artifact: dict) -> str:
    """Deploy the test token and move it to shop.TOKEN_ADDRESS (module docstring)."""
    args = abi_encode(["string", "string", "string", "uint8"],
                      [shop.TOKEN_NAME, shop.TOKEN_VERSION, shop.TOKEN_SYMBOL, shop.TOKEN_DECIMALS])
    bytecode = artifact["bytecode"]
    bytecode = bytecode if bytecode.startswith("0x") else "0x" + bytecode
    deployed = node.send_unlocked(DEPLOYER, None, bytecode + args.hex())["contractAddress"]
    target = shop.TOKEN_ADDRESS
    node.call("anvil_setCode", target, node.call("eth_getCode", deployed, "latest"))
    for slot in range(3):  # name, version, symbol: short strings, stored in their slots
        value = node.call("eth_getStorageAt", deployed, hex(slot), "latest")
        node.call("anvil_setStorageAt", target, hex(slot), "0x" + value[2:].rjust(64, "0"))
    name = abi_decode(["string"], node.eth_call(target, calldata("name()")))[0]
    version = abi_decode(["string"], node.eth_call(target, calldata("version()")))[0]
    decimals = abi_decode(["uint8"], node.eth_call(target, calldata("decimals()")))[0]
    assert (name, version, decimals) == (shop.TOKEN_NAME, shop.TOKEN_VERSION,
                                         shop.TOKEN_DECIMALS), (name, version, decimals)
    domain = node.eth_call(target, calldata("DOMAIN_SEPARATOR()"))
    want = keccak(abi_encode(["bytes32", "bytes32", "bytes32", "uint256", "address"], [
        keccak(text="EIP712Domain(string name,string version,uint256 chainId,"
                    "address verifyingContract)"),
        keccak(text=shop.TOKEN_NAME), keccak(text=shop.TOKEN_VERSION), node.chain_id(), target]))
    assert domain == want, "the token's EIP-712 domain is not Base USDC's"
    return target


def main() -> int:
    import argparse
    ap = argparse.ArgumentParser(description="Anvil set-up for the SDK suite")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--rpc-url", required=True)
    s.add_argument("--artifact", required=True, help="JSON with the token's abi and bytecode")
    args = ap.parse_args()
    node = Node(args.rpc_url)
    assert node.chain_id() == shop.CHAIN_ID, f"Anvil must run with --chain-id {shop.CHAIN_ID}"
    artifact = json.loads(Path(args.artifact).read_text())
    print(setup(node, artifact))
    return 0


if __name__ == "__main__":
    sys.exit(main())
