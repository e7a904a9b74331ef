"""Runs official `peaqos` CLI commands for the SDK suite, in the CLI's own venv (harness.Cli).

Reads one JSON request per line on stdin, {"argv": [...], "env": {name: value or null}}, runs
`peaqos <argv>` in this process through the console script's own entry point
(`peaq_os_cli.main:cli`) with click's CliRunner, and answers one JSON line
{"exit_code", "stdout", "stderr", "traceback"} on the original stdout. The CLI is imported once,
so a command costs milliseconds instead of the ~2 s a fresh `peaqos` process spends importing.
`traceback` is set only when a command raised something other than SystemExit.
"""

import json
import os
import sys
import traceback

proto = os.fdopen(os.dup(1), "w")  # answers go here; anything else written to fd 1 goes to stderr
os.dup2(2, 1)

from click.testing import CliRunner  # noqa: E402
from peaq_os_cli.main import cli  # noqa: E402

for line in sys.stdin:
    if not line.strip():
        continue
    req = json.loads(line)
    result = CliRunner().invoke(cli, req["argv"], env=req.get("env") or None,
                                catch_exceptions=True, prog_name="peaqos")
    exc = result.exception
    tb = None
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    proto.write(json.dumps({"exit_code": result.exit_code, "stdout": result.stdout,
                            "stderr": result.stderr, "traceback": tb}) + "\n")
    proto.flush()
