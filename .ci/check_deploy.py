"""Checks what CI cannot run here (no Docker engine): docker-compose.yml against the Compose
Specification JSON schema, the Dockerfile's structure, and that .env.example lists every
variable the server reads. Run by .ci/run inside its own virtualenv."""

import glob
import json
import re
import sys
import zipfile
from pathlib import Path

import jsonschema
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


# 1. docker-compose.yml against the Compose Specification schema (shipped in the docker-compose
#    1.29.2 wheel from PyPI as compose/config/compose_spec.json).
wheel = glob.glob(str(ROOT / "target/ci-cache/docker_compose-1.29.2-*.whl"))[0]
schema = json.loads(zipfile.ZipFile(wheel).read("compose/config/compose_spec.json"))
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
try:
    jsonschema.validate(compose, schema)
except jsonschema.ValidationError as err:
    failures.append(f"docker-compose.yml: {err.message} at {list(err.absolute_path)}")
services = compose.get("services", {})
check("postgres" in services and "orchestrator" in services, "compose needs postgres and orchestrator")
check("healthcheck" in services.get("postgres", {}), "postgres needs a healthcheck")
depends = services.get("orchestrator", {}).get("depends_on", {})
check(depends.get("postgres", {}).get("condition") == "service_healthy", "orchestrator must wait for a healthy postgres")
check(services.get("orchestrator", {}).get("env_file") == ".env", "orchestrator reads .env")
check(any("postgres-data:" in str(v) for v in services.get("postgres", {}).get("volumes", [])), "postgres needs a named volume")

# 2. Dockerfile structure.
parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
instructions = parser.structure
stages = [i for i in instructions if i["instruction"] == "FROM"]
check(len(stages) >= 2, "Dockerfile must be multi-stage")
final_start = max(i["startline"] for i in stages)
final = [i for i in instructions if i["startline"] >= final_start]
users = [i["value"].strip() for i in final if i["instruction"] == "USER"]
check(bool(users) and users[-1] not in ("root", "0"), "the runtime stage must run as a non-root USER")
health = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
check(any("peaqos-orchestrator" in h and "healthcheck" in h for h in health), "HEALTHCHECK must run `peaqos-orchestrator healthcheck`")
check(any(i["instruction"] == "EXPOSE" and "8080" in i["value"] for i in final), "the runtime stage must EXPOSE 8080")
runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
check(not re.search(r"\b(curl|wget)\b", runs), "no curl or wget in the runtime image")
check(any(i["instruction"] == "COPY" and "--from=" in i["value"] for i in final), "the runtime stage copies the binary from the build stage")

# 3. Every variable the server reads is documented in .env.example.
read = set(re.findall(r'"((?:PEAQOS|PEAQ|DATABASE)_[A-Z0-9_]*)"', (ROOT / "src/config.rs").read_text()))
documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
missing = sorted(read - documented)
check(not missing, f".env.example lacks {missing}")

if failures:
    print("deploy checks failed:")
    for failure in failures:
        print("  -", failure)
    sys.exit(1)
print(f"deploy checks passed: compose valid against the Compose spec, Dockerfile ({len(stages)} stages) structure ok, {len(read)} variables documented")
