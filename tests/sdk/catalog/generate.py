"""Writes sdk-conformance.json, the catalogue file the SDK suite's server loads through
PEAQOS_CATALOG_DIR (run.sh). Every URL in it is loopback (127.0.0.1:9, nothing listens).

  python3 tests/sdk/catalog/generate.py

With `--orders FILE --provider-url URL`, writes instead the order and payment services, whose
endpoints are on the fake provider and x402 paywall (fake_provider.py) at URL, a loopback port
chosen per run. run.sh writes that file beside a copy of sdk-conformance.json into a temp dir
and points the server there (see `orders_doc` below and shop.py).

Contents, added to the built-in catalogue:
- skill sdk.compute-pool (partner, ecosystem, machine-consumes) with 24 compute.marketplace
  services sdk-pool:node-01..24, so a search for `compute` has more than 25 candidates
  (maxResults is clamped to 25) and service lists span many pages. node-01 has an operation
  contract whose exampleInput mixes snake_case and camelCase keys.
- skill sdk.credentialed-store (clawhub, bootstrap-reference, machine-offers, authType api-key)
  with service sdk-store:blob (storage.object, credentials-required): skill config and
  credential checks change this one only.
- skill sdk.handoff-desk (external-marketplace) with service sdk-desk:console (data.location,
  external-handoff).
- adapter sdk-pool.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import shop  # noqa: E402  (tests/sdk/shop.py: ids, chain, token, prices)

UPD = "2026-01-01T00:00:00.000Z"


def skill(key, provider, label, **kw):
    s = dict(key=key, providerKey=provider, label=label,
             description=f"{label} (SDK conformance fixture; loopback only).",
             direction="machine-consumes", scope="ecosystem", source="partner",
             listedBy="sdk-conformance", lastVerifiedAt=None, kind="reference", serviceTypes=[],
             operations=[], authType="none", accessMode="public", distribution="openapi",
             maturity="production", executionMode="native", integrationStatus="native",
             requiredEnv=[], requiresHumanEnablement=False, referenceUrl=None, artifactUrl=None,
             handoff=None, updatedAt=UPD)
    s.update(kw)
    return s


def manifest(key, provider, label, inputs, outputs):
    return dict(key=key, providerKey=provider, label=label, summary=f"{label} fixture manifest.",
                inputs=inputs, outputs=outputs)


def service(id, skill_key, provider, service_type, name, **kw):
    s = dict(id=id, skillKey=skill_key, providerKey=provider, providerId=provider,
             providerLabel=provider.upper(), serviceType=service_type, name=name,
             description=f"{name} (SDK conformance fixture).", operations=["run"], capabilities=[],
             authType="none", accessMode="public", executionMode="native",
             integrationStatus="native", distribution="openapi", maturity="production",
             kind="reference", region="global", requiresHumanEnablement=False, metadata={},
             updatedAt=UPD)
    s.update(kw)
    return s


skills = [
    skill("sdk.compute-pool", "sdk-pool", "SDK compute pool",
          serviceTypes=["compute.marketplace"], operations=["run-job"]),
    skill("sdk.credentialed-store", "sdk-store", "SDK credentialed store",
          direction="machine-offers", scope="bootstrap-reference", source="clawhub",
          authType="api-key", accessMode="credentialed", distribution="clawhub", maturity="beta",
          integrationStatus="credentials-required", serviceTypes=["storage.object"],
          operations=["read-blob"], requiredEnv=["SDK_STORE_API_KEY"]),
    skill("sdk.handoff-desk", "sdk-desk", "SDK handoff desk", source="external-marketplace",
          authType="wallet", distribution="docs-only", maturity="reference",
          executionMode="external-handoff", integrationStatus="partner-required",
          requiresHumanEnablement=True, serviceTypes=["data.location"],
          operations=["open-console"],
          handoff={"label": "Open SDK desk", "url": "http://127.0.0.1:9/desk", "notes": []}),
]
manifests = [
    manifest("sdk.compute-pool", "sdk-pool", "SDK compute pool",
             [{"key": "job", "type": "object", "required": True, "description": "The job"},
              {"key": "max_seconds", "type": "integer", "required": False,
               "description": "Time limit"}],
             [{"key": "result", "type": "object", "description": "The job's result"}]),
    manifest("sdk.credentialed-store", "sdk-store", "SDK credentialed store",
             [{"key": "blobId", "type": "string", "required": True, "description": "Blob id"}],
             [{"key": "bytes", "type": "string", "description": "Base64 content"}]),
    manifest("sdk.handoff-desk", "sdk-desk", "SDK handoff desk", [], []),
]
services = []
for i in range(1, 25):
    kw = {}
    if i == 1:
        kw["operationContracts"] = [{
            "operation": "run-job", "summary": "Run one job",
            "inputFields": [{"key": "job", "type": "object", "description": "The job"},
                            {"key": "max_seconds", "type": "integer", "description": None}],
            "outputFields": [{"key": "result", "type": "object", "description": None}],
            "exampleInput": {"job": {"image_ref": "busybox", "argV": ["true"]}, "max_seconds": 5},
            "providerRequest": {"method": "POST", "path": "/jobs"}, "notes": ["fixture"]}]
    services.append(service(
        f"sdk-pool:node-{i:02d}", "sdk.compute-pool", "sdk-pool", "compute.marketplace",
        f"SDK pool node {i:02d}", operations=["run-job"],
        capabilities=["gpu", "sdk-pool"] + (["fast"] if i % 2 else []),
        region="global" if i % 3 else "eu-west",
        pricing={"mode": "fixed", "amount": round(0.01 * i, 2), "currency": "USDC",
                 "rate": "per_request", "notes": []},
        payment={"defaultRail": "wallet", "supportedRails": ["wallet"], "required": True,
                 "notes": [], "chain": "eip155:8453", "token": "USDC",
                 "tokenAddress": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                 "tokenDecimals": 6, "payeeAddress": "0x000000000000000000000000000000000000dEaD"},
        endpoints=[{"key": "jobs", "label": "Jobs", "operation": "run-job",
                    "url": f"http://127.0.0.1:9/node-{i:02d}", "method": "POST", "path": "/jobs",
                    "providerName": "SDK pool", "protocols": [], "networks": []}],
        metadata={"fixture": True, "node_index": i}, **kw))
services.append(service(
    "sdk-store:blob", "sdk.credentialed-store", "sdk-store", "storage.object", "SDK store blobs",
    operations=["read-blob"], capabilities=["blob-read"], authType="api-key",
    accessMode="credentialed", integrationStatus="credentials-required", distribution="clawhub",
    maturity="beta", region="eu-west", pricing={"mode": "provider-defined", "notes": []},
    endpoints=[{"key": "read", "operation": "read-blob", "url": "http://127.0.0.1:9/blobs",
                "method": "GET"}]))
services.append(service(
    "sdk-desk:console", "sdk.handoff-desk", "sdk-desk", "data.location", "SDK desk console",
    operations=["open-console"], capabilities=["rtk"], authType="wallet",
    executionMode="external-handoff", integrationStatus="partner-required",
    distribution="docs-only", maturity="reference", requiresHumanEnablement=True,
    pricing={"mode": "quote-required", "notes": []},
    handoff={"label": "Open SDK desk", "url": "http://127.0.0.1:9/desk",
             "notes": ["Loopback fixture"]}))
adapters = [{"providerKey": "sdk-pool", "label": "SDK compute pool", "integrationStatus": "native",
             "executionMode": "native", "credentialKeys": [], "runtimeEndpoint": None,
             "setupSteps": ["Nothing to set up (fixture)."], "docsUrl": None}]

def orders_doc(provider: str) -> dict:
    """The order and payment services (skill sdk.shop, provider sdk-shop), on `provider`.

    - sdk-shop:echo: free native HTTP; `echo` is POST {provider}/echo/orders, `read-item` is
      GET {provider}/echo/items/{itemId} (the placeholder filled from input, the rest of input in
      the query). The fake answers every /echo/ request with what it received.
    - sdk-shop:flaky: free native HTTP that answers 500 (failed orders, retry).
    - sdk-shop:wallet: wallet rail (ERC-20 transfer on the Anvil chain, RPC-verified), fixed
      0.02 USDC, native HTTP (POST {provider}/echo/wallet).
    - sdk-shop:x402: x402 rail, fixed 0.01 USDC; GET {provider}/x402/report is the paywall.
    - sdk-shop:escrow-desk: onchain-escrow rail, fixed 0.05 USDC, external handoff.
    Free services keep the default payment block (defaultRail not-required, required false),
    which is what the CLI treats as free (clients.md D7). Paid EVM rails carry tokenDecimals, so
    the intent has rail.metadata.rawAmount/tokenDecimals and the CLI never asks a public RPC for
    decimals() (D9).
    """
    provider = provider.rstrip("/")

    def rail(default, **kw):
        p = dict(defaultRail=default, supportedRails=[default], required=True, notes=[],
                 chain=shop.CHAIN, token=shop.TOKEN_SYMBOL, tokenAddress=shop.TOKEN_ADDRESS,
                 tokenDecimals=shop.TOKEN_DECIMALS)
        p.update(kw)
        return p

    def fixed(amount):
        return {"mode": "fixed", "amount": amount, "currency": shop.TOKEN_SYMBOL,
                "rate": "per_request", "notes": []}

    def endpoint(key, operation, path, method="POST"):
        return {"key": key, "label": key, "operation": operation, "url": provider, "path": path,
                "method": method, "providerName": "SDK shop", "protocols": [], "networks": []}

    sk = skill(shop.SKILL, shop.PROVIDER, "SDK shop", serviceTypes=["machine.commerce"],
               operations=["echo", "read-item", "buy-report", "open-desk"])
    mf = manifest(shop.SKILL, shop.PROVIDER, "SDK shop",
                  [{"key": "note", "type": "string", "required": False, "description": "Echoed"}],
                  [{"key": "ok", "type": "boolean", "description": "Echo of the request"}])

    def svc(id, name, **kw):
        return service(id, shop.SKILL, shop.PROVIDER, "machine.commerce", name, **kw)

    desk = {"label": "Open SDK escrow desk", "url": f"{provider}/desk", "notes": ["Loopback"]}
    services = [
        svc(shop.ECHO, "SDK shop echo", operations=["echo", "read-item"], pricing=fixed(0),
            endpoints=[endpoint("echo", "echo", "/echo/orders"),
                       endpoint("item", "read-item", "/echo/items/{itemId}", "GET")]),
        svc(shop.FLAKY, "SDK shop flaky", operations=["echo"], pricing=fixed(0),
            endpoints=[endpoint("flaky", "echo", "/status/500")]),
        svc(shop.WALLET, "SDK shop wallet-paid echo", operations=["echo"],
            pricing=fixed(shop.WALLET_PRICE),
            payment=rail("wallet", payeeAddress=shop.WALLET_PAYEE),
            endpoints=[endpoint("echo", "echo", "/echo/wallet")]),
        svc(shop.X402, "SDK shop x402 report", operations=["buy-report"],
            pricing=fixed(shop.X402_PRICE), payment=rail("x402", provider="sdk-shop"),
            endpoints=[endpoint("report", "buy-report", shop.X402_PATH, "GET")]),
        svc(shop.ESCROW_DESK, "SDK shop escrow desk", operations=["open-desk"],
            executionMode="external-handoff", integrationStatus="partner-required",
            authType="wallet", distribution="docs-only", pricing=fixed(shop.ESCROW_PRICE),
            payment=rail("onchain-escrow", escrowAddress=shop.ESCROW_ADDRESS,
                         payeeAddress=shop.ESCROW_PAYEE),
            handoff=desk),
    ]
    return {"skills": [sk], "manifests": [mf], "services": services, "adapters": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", help="write the order catalogue to this file instead")
    ap.add_argument("--provider-url", help="the fake provider's base URL (with --orders)")
    args = ap.parse_args()
    if args.orders:
        if not args.provider_url:
            ap.error("--orders needs --provider-url")
        out, doc = Path(args.orders), orders_doc(args.provider_url)
    else:
        out = Path(__file__).with_name("sdk-conformance.json")
        doc = {"skills": skills, "manifests": manifests, "services": services,
               "adapters": adapters}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
