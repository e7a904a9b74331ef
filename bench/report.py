#!/usr/bin/env python3
"""Builds the bench table and bench/results/latest.json from the files run.sh leaves in results/."""
import json
import re
import sys
from pathlib import Path

results = Path(sys.argv[1])
facts = json.loads((results / "facts.json").read_text())


def wrk(name):
    for line in (results / f"{name}.wrk.txt").read_text().splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise SystemExit(f"no BENCH_JSON in {name}.wrk.txt")


def pgbench(name):
    text = (results / f"{name}.pgbench.txt").read_text()
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    lat = re.search(r"latency average = ([0-9.]+) ms", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    if not tps:
        raise SystemExit(f"no tps in {name}.pgbench.txt")
    return {
        "tps": float(tps.group(1)),
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "transactions": int(done.group(1)) if done else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def cpu(name, requests):
    """CPU per request during one measurement, in microseconds, and how busy all cores were."""
    lines = (results / f"{name}.cpu").read_text().split("\n")
    tck = float(lines[0])
    a = [float(x) for x in lines[1].split()]
    b = [float(x) for x in lines[2].split()]
    own, pg, busy, total = (b[i] - a[i] for i in range(4))
    ncpu = facts["nproc"]
    # /proc/stat is in USER_HZ summed over all cores; convert busy jiffies to seconds too.
    per = lambda ticks: round(ticks / tck * 1e6 / requests, 1) if requests else None
    return {
        "process_us_per_req": per(own),
        "postgres_us_per_req": per(pg),
        "rest_us_per_req": per(max(busy - own - pg, 0)),
        "cpu_busy_pct": round(100 * busy / total, 1) if total else None,
        "cores": ncpu,
    }


def rss(name):
    return json.loads((results / f"{name}.rss").read_text())


MIB = 1024.0
selected = facts["endpoints_run"].split(",")
repeats = facts["repeats"]


def measurement(key, rep, ceiling_kind):
    """One (server, ceiling) pair: the server's wrk run `key-rep` and its ceiling run."""
    w = wrk(f"{key}-{rep}")
    if key == "health":
        c = wrk(f"health-ceiling-{rep}")
        ceiling = {"kind": ceiling_kind, "rps": round(c["rps"], 1), "p50_ms": c["p50_us"] / 1000,
                   "p99_ms": c["p99_us"] / 1000, "errors": c["errors"],
                   "bare_axum_peak_rss_mib": round(rss("health-ceiling")["vmhwm_kib"] / MIB, 1),
                   "cpu": cpu(f"health-ceiling-{rep}", c["requests"])}
    else:
        p = pgbench(f"{key}-ceiling-{rep}")
        ceiling = {"kind": ceiling_kind, "rps": round(p["tps"], 1),
                   "latency_avg_ms": p["latency_avg_ms"], "transactions": p["transactions"],
                   "failed": p["failed"], "script": f"bench/pgbench/{'machine_get' if key == 'machine' else 'heartbeat'}.sql",
                   "cpu": cpu(f"{key}-ceiling-{rep}", p["transactions"])}
    ratio = w["rps"] / ceiling["rps"] if ceiling["rps"] else None
    return w, ceiling, ratio


rows = []
for key, label, goal, ceiling_kind in [
    ("health", "GET /health", 0.90, "bare axum (wrk)"),
    ("machine", "GET /api/v1/machines/{id}", 0.50, "pgbench -M prepared"),
    ("heartbeat", "POST /api/v1/machine-agents/heartbeat", 0.80, "pgbench -M prepared"),
]:
    if key not in selected:
        continue
    pairs = [(rep, *measurement(key, rep, ceiling_kind)) for rep in range(1, repeats + 1)]
    # The pair with the median ratio is reported; every pair's numbers are kept.
    rep, w, ceiling, ratio = sorted(pairs, key=lambda p: p[3] or 0)[(len(pairs) - 1) // 2]
    r = rss(f"{key}-{rep}")
    errors = sum(sum(p[1]["errors"].values()) for p in pairs)
    rows.append({
        "endpoint": label,
        "rps": round(w["rps"], 1),
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "max_ms": w["max_us"] / 1000,
        "requests": w["requests"],
        "errors": w["errors"],
        "ceiling": ceiling,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "ratio_goal": goal,
        "ratio_goal_met": ratio is not None and ratio >= goal and errors == 0,
        "median_of": len(pairs),
        "runs": [{"rps": round(p[1]["rps"], 1), "ceiling_rps": p[2]["rps"],
                  "ratio": round(p[3], 3) if p[3] is not None else None,
                  "errors": sum(p[1]["errors"].values())} for p in pairs],
        "cpu": cpu(f"{key}-{rep}", w["requests"]),
        "server_peak_rss_mib": round(max(rss(f"{key}-{p[0]}")["vmhwm_kib"] for p in pairs) / MIB, 1),
        "server_rss_after_mib": round(r["vmrss_kib"] / MIB, 1),
    })

# Server warnings/errors during the run (RUST_LOG=warn, JSON lines), by message.
warnings = {}
log = results / "server.log"
if log.exists():
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        key = f'{event.get("level")} {event.get("target")}: {event.get("message")}'
        warnings[key] = warnings.get(key, 0) + 1

peak = max(r["server_peak_rss_mib"] for r in rows)
report = {
    "machine": facts,
    "endpoints": rows,
    "server_peak_rss_mib": peak,
    "rss_goal_mib": 64,
    "rss_goal_met": peak <= 64,
    "server_log_warnings": warnings,
    "mcr_cache_warm_during_measurements":
        facts["mcr_lookups_after_measurements"] == facts["mcr_lookups_after_warmup"],
}
(results / "latest.json").write_text(json.dumps(report, indent=2) + "\n")

head = ["endpoint", "req/s", "p50 ms", "p99 ms", "ceiling req/s", "ratio", "all ratios", "goal", "peak RSS MiB", "errors"]
table = [head]
for r in rows:
    table.append([
        r["endpoint"], f'{r["rps"]:.0f}', f'{r["p50_ms"]:.2f}', f'{r["p99_ms"]:.2f}',
        f'{r["ceiling"]["rps"]:.0f}', f'{r["ratio"]:.2f}' if r["ratio"] is not None else "-",
        " ".join("-" if run["ratio"] is None else f'{run["ratio"]:.2f}' for run in r["runs"]),
        f'>= {r["ratio_goal"]:.2f} {"ok" if r["ratio_goal_met"] else "MISSED"}',
        f'{r["server_peak_rss_mib"]:.1f}', str(sum(run["errors"] for run in r["runs"])),
    ])
widths = [max(len(row[i]) for row in table) for i in range(len(head))]
print()
print(f'nproc={facts["nproc"]} commit={facts["git_commit"][:12]}{"+dirty" if facts["git_dirty"] else ""} '
      f'date={facts["date"]} wrk -t{facts["wrk_threads"]} -c{facts["connections"]} -d{facts["duration_s"]}s '
      f'pairs={facts["repeats"]} (median ratio shown) '
      f'pinning={facts["pinning"]}')
for i, row in enumerate(table):
    print("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
    if i == 0:
        print("  ".join("-" * w for w in widths))
print()
print("CPU per request (microseconds of CPU time; 'rest' = load generator + kernel + everything else;")
print("busy = share of all cores in use during the measurement)")
chead = ["endpoint", "server", "postgres", "rest", "busy %", "| ceiling: process", "postgres", "rest", "busy %"]
ctable = [chead]
fmt = lambda v: "-" if v is None else f"{v:.0f}"
for r in rows:
    a, c = r["cpu"], r["ceiling"]["cpu"]
    ctable.append([r["endpoint"], fmt(a["process_us_per_req"]), fmt(a["postgres_us_per_req"]),
                   fmt(a["rest_us_per_req"]), fmt(a["cpu_busy_pct"]),
                   ("| bare axum " if r["endpoint"] == "GET /health" else "| pgbench ") + fmt(c["process_us_per_req"]),
                   fmt(c["postgres_us_per_req"]), fmt(c["rest_us_per_req"]), fmt(c["cpu_busy_pct"])])
cw = [max(len(row[i]) for row in ctable) for i in range(len(chead))]
for i, row in enumerate(ctable):
    print("  ".join(cell.ljust(cw[j]) if j == 0 else cell.rjust(cw[j]) for j, cell in enumerate(row)))
    if i == 0:
        print("  ".join("-" * w for w in cw))
print(f'server peak RSS (VmHWM) {peak:.1f} MiB, goal <= 64 MiB: {"ok" if peak <= 64 else "MISSED"}; '
      f'MCR look-ups during measurements: {facts["mcr_lookups_after_measurements"] - facts["mcr_lookups_after_warmup"]}')
for key, count in sorted(warnings.items()):
    print(f"server log: {count} x {key}")
print()
