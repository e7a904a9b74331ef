#!/usr/bin/env python3
"""Generates tests/vectors/eip191.json: EIP-191 personal_sign vectors produced by eth_account.

Run with the SDK venv interpreter:

    target/sdk-venvs/0.12.1/bin/python tests/vectors/eip191_vectors.py

The private keys are deterministic (keccak256 of fixed seed strings), and eth_account signs with
RFC 6979 deterministic nonces, so the output is byte-for-byte reproducible.
"""

import json
import pathlib

from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_utils import keccak

# secp256k1 group order.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

CHALLENGE = "\n".join(
    [
        "peaqOS machine identity proof",
        "",
        "Sign this message to prove that you control the peaqOS machine identity did:peaq:42.",
        "",
        "Identity: did:peaq:42",
        "Orchestrator: http://127.0.0.1:8080",
        "Challenge ID: mic_01J9Z3K4Q7W8X5R2T6Y1V0B3N8",
        "Nonce: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "Issued At: 2026-01-01T00:00:00.000Z",
        "Expires At: 2026-01-01T00:10:00.000Z",
    ]
)

MESSAGES = [
    ("ascii", "hello world"),
    ("empty", ""),
    ("challenge", CHALLENGE),
    ("utf8", "Grüße aus Zürich — 你好, мир! 🚀"),
    ("long-1000", ("peaqOS-" * 143)[:1000]),
    ("digits", "12345"),
    ("trailing-newline", "line one\nline two\n"),
    ("whitespace", "  \t spaced out \t  "),
]


def private_key(seed: str) -> bytes:
    return keccak(text=f"peaqos-orchestrator eip191 test key {seed}")


def sign(key: bytes, message: str) -> str:
    signed = Account.sign_message(encode_defunct(text=message), private_key=key)
    sig = bytes(signed.signature)
    assert len(sig) == 65 and sig[64] in (27, 28)
    return "0x" + sig.hex()


def split(signature: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(signature[2:])
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def join(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def main() -> None:
    vectors = []
    for index, (name, message) in enumerate(MESSAGES):
        key = private_key(str(index))
        account = Account.from_key(key)
        signature = sign(key, message)
        recovered = Account.recover_message(encode_defunct(text=message), signature=signature)
        assert recovered == account.address
        _, s, _ = split(signature)
        assert s <= N // 2, "eth_account must produce low-s signatures"
        vectors.append(
            {
                "name": name,
                "privateKey": "0x" + key.hex(),
                "address": account.address.lower(),
                "message": message,
                "hash": "0x" + bytes(defunct_hash_message(text=message)).hex(),
                "signature": signature,
            }
        )

    negatives = []
    base = vectors[2]  # the challenge message
    r, s, v = split(base["signature"])

    # v as 0/1 instead of 27/28: must still recover the same address.
    zero_one = join(r, s, v - 27)
    assert (
        Account.recover_message(encode_defunct(text=base["message"]), signature=zero_one).lower()
        == base["address"]
    )
    negatives.append(
        {
            "name": "v-zero-one",
            "kind": "recovers",
            "message": base["message"],
            "signature": zero_one,
            "address": base["address"],
        }
    )

    # High-s twin (s' = n - s, parity flipped): mathematically valid for the same key, but
    # malleable; EIP-2 says reject it.
    high_s = join(r, N - s, 27 + 28 - v)
    # eth_account itself accepts the malleated twin and recovers the same signer, which proves it
    # is a genuine high-s signature rather than garbage.
    assert (
        Account.recover_message(encode_defunct(text=base["message"]), signature=high_s).lower()
        == base["address"]
    )
    negatives.append(
        {
            "name": "high-s",
            "kind": "high-s",
            "message": base["message"],
            "signature": high_s,
            "address": base["address"],
        }
    )
    # Same, with v as 0/1.
    negatives.append(
        {
            "name": "high-s-v-zero-one",
            "kind": "high-s",
            "message": base["message"],
            "signature": join(r, N - s, 1 - (v - 27)),
            "address": base["address"],
        }
    )

    # A valid signature over a different message: recovers some other address.
    other_message = base["message"].replace("did:peaq:42", "did:peaq:43")
    assert other_message != base["message"]
    other_sig = sign(bytes.fromhex(base["privateKey"][2:]), other_message)
    wrong = Account.recover_message(encode_defunct(text=base["message"]), signature=other_sig)
    assert wrong.lower() != base["address"]
    negatives.append(
        {
            "name": "other-message",
            "kind": "recovers-other",
            "message": base["message"],
            "signature": other_sig,
            "address": base["address"],
            "recoveredAddress": wrong.lower(),
        }
    )

    out = {
        "description": "EIP-191 personal_sign vectors generated by tests/vectors/eip191_vectors.py "
        "with eth_account (Account.sign_message + encode_defunct(text=...)).",
        "vectors": vectors,
        "negative": negatives,
    }
    path = pathlib.Path(__file__).with_name("eip191.json")
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors and {len(negatives)} negative vectors to {path}")


if __name__ == "__main__":
    main()
