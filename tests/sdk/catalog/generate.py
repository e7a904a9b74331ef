"""Writes sdk-conformance.json, the catalogue file the SDK suite's server loads through
PEAQOS_CATALOG_DIR (run.sh). Every URL in it is loopback (127.0.0.1:9, nothing listens).

  python3 tests/sdk/catalog/generate.py

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

import json
from pathlib import Path

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

doc = {"skills": skills, "manifests": manifests, "services": services, "adapters": adapters}
out = Path(__file__).with_name("sdk-conformance.json")
out.write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {out}")
