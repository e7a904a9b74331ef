#!/usr/bin/env python3
"""Builds the bench table and bench/results/latest.json from the files run.sh leaves in results/."""
import json
import re
import sys
from pathlib import Path

results = Path(sys.argv[1])
facts = json.loads((results / "facts.json").read_text())


def wrk(name, suffix="wrk"):
    """wrk's (the bench Lua `done` hook) or bench/market-tools http_load's BENCH_JSON line."""
    for line in (results / f"{name}.{suffix}.txt").read_text().splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise SystemExit(f"no BENCH_JSON in {name}.{suffix}.txt")


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
    out = {
        "process_us_per_req": per(own),
        "postgres_us_per_req": per(pg),
        "rest_us_per_req": per(max(busy - own - pg, 0)),
        "cpu_busy_pct": round(100 * busy / total, 1) if total else None,
        "cores": ncpu,
    }
    if len(lines) > 3 and lines[3].strip():
        out["load1_after"] = float(lines[3])
    return out


def rss(name):
    return json.loads((results / f"{name}.rss").read_text())


MIB = 1024.0
selected = facts["endpoints_run"].split(",")
repeats = facts["repeats"]


# key, label, ratio goal (None: reported only), ceiling kind, ceiling source ("wrk": bare axum
# loaded by wrk; "pgbench": a script of bench/pgbench; "load": bench/market-tools http_load),
# the ceiling's process in the CPU table.
BENCHES = [
    ("health", "GET /health", 0.90, "bare axum (wrk)", "wrk", None, "bare axum"),
    ("machine", "GET /api/v1/machines/{id}", 0.50, "pgbench -M prepared", "pgbench", "machine_get.sql", "pgbench"),
    ("heartbeat", "POST /api/v1/machine-agents/heartbeat", 0.80, "pgbench -M prepared", "pgbench", "heartbeat.sql", "pgbench"),
    ("search", "POST /api/v1/market/search", 0.70, "pgbench -M prepared", "pgbench", "market_search.sql", "pgbench"),
    ("execute", "POST /api/v1/machines/{id}/tasks/{id}/execute", 0.50,
     "bare reqwest -> the same fake runtime (http_load)", "load", None, "fake runtime"),
    ("order", "POST /api/v1/market/orders (16 pairings)", 0.70, "pgbench -M prepared", "pgbench", "order_create.sql", "pgbench"),
    ("order1", "POST /api/v1/market/orders (1 pairing)", None, "pgbench -M prepared, same lock", "pgbench", "order_create.sql", "pgbench"),
    ("proof", "POST /api/v1/market/orders/{id}/payment-proof (rpc)", 0.50,
     "bare eth_getTransactionReceipt -> Anvil (http_load)", "load", None, "anvil"),
]
# Latency goals (p99, ms), reported and never asserted.
P99_GOALS = {"search": 10.0}
# GET machine is also measured against a peer (bench/peer-axum: plain axum + a native sqlx PgPool
# answering the same route with the same JSON, no identity re-verification), loaded by the same
# wrk command on the same CPU; goal: server req/s / peer req/s >= 1.3.
PEER_GOALS = {"machine": 1.3}
PEER_KIND = "bench/peer-axum: axum + sqlx PgPool (native driver, defaults), same route and JSON (wrk)"
# Footprint goals, reported and never asserted.
IDLE_RSS_GOAL_MIB = 20
LOAD_RSS_GOAL_MIB = 64
SQLITE_STARTUP_GOAL_MS = 300


def peer_run(key, rep):
    """The peer's wrk run of repeat `rep` (after the server's and pgbench's runs of that repeat)."""
    c = wrk(f"{key}-peer-{rep}")
    return {"kind": PEER_KIND, "rps": round(c["rps"], 1), "p50_ms": c["p50_us"] / 1000,
            "p90_ms": c["p90_us"] / 1000, "p99_ms": c["p99_us"] / 1000, "max_ms": c["max_us"] / 1000,
            "requests": c["requests"], "errors": c["errors"], "cpu": cpu(f"{key}-peer-{rep}", c["requests"])}


def measurement(key, rep, ceiling_kind, source, script):
    """One (server, ceiling) pair: the server's wrk run `key-rep` and its ceiling run."""
    w = wrk(f"{key}-{rep}")
    if source in ("wrk", "load"):
        c = wrk(f"{key}-ceiling-{rep}", "wrk" if source == "wrk" else "load")
        ceiling = {"kind": ceiling_kind, "rps": round(c["rps"], 1), "p50_ms": c["p50_us"] / 1000,
                   "p99_ms": c["p99_us"] / 1000, "errors": c["errors"],
                   "cpu": cpu(f"{key}-ceiling-{rep}", c["requests"])}
        if key == "health":
            ceiling["bare_axum_peak_rss_mib"] = round(rss("health-ceiling")["vmhwm_kib"] / MIB, 1)
    else:
        p = pgbench(f"{key}-ceiling-{rep}")
        ceiling = {"kind": ceiling_kind, "rps": round(p["tps"], 1),
                   "latency_avg_ms": p["latency_avg_ms"], "transactions": p["transactions"],
                   "failed": p["failed"], "script": f"bench/pgbench/{script}",
                   "cpu": cpu(f"{key}-ceiling-{rep}", p["transactions"])}
    ratio = w["rps"] / ceiling["rps"] if ceiling["rps"] else None
    return w, ceiling, ratio


def ceiling_errors(ceiling):
    if "errors" in ceiling:
        return sum(ceiling["errors"].values())
    return ceiling.get("failed") or 0


rows = []
for key, label, goal, ceiling_kind, source, script, _ in BENCHES:
    if key not in selected:
        continue
    pairs = [(rep, *measurement(key, rep, ceiling_kind, source, script)) for rep in range(1, repeats + 1)]
    # The pair with the median ratio is reported; every pair's numbers are kept.
    rep, w, ceiling, ratio = sorted(pairs, key=lambda p: p[3] or 0)[(len(pairs) - 1) // 2]
    r = rss(f"{key}-{rep}")
    errors = sum(sum(p[1]["errors"].values()) + ceiling_errors(p[2]) for p in pairs)
    p99_goal = P99_GOALS.get(key)
    peer_goal = PEER_GOALS.get(key)
    row = {
        "key": key,
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
        "ratio_goal_met": None if goal is None else (ratio is not None and ratio >= goal and errors == 0),
        "p99_goal_ms": p99_goal,
        "p99_goal_met": None if p99_goal is None else w["p99_us"] / 1000 <= p99_goal,
        "median_of": len(pairs),
        "runs": [{"rps": round(p[1]["rps"], 1), "ceiling_rps": p[2]["rps"],
                  "ratio": round(p[3], 3) if p[3] is not None else None,
                  "p99_ms": p[1]["p99_us"] / 1000,
                  "errors": sum(p[1]["errors"].values()) + ceiling_errors(p[2])} for p in pairs],
        "cpu": cpu(f"{key}-{rep}", w["requests"]),
        "server_peak_rss_mib": round(max(rss(f"{key}-{p[0]}")["vmhwm_kib"] for p in pairs) / MIB, 1),
        "server_rss_after_mib": round(r["vmrss_kib"] / MIB, 1),
    }
    if peer_goal is not None and (results / f"{key}-peer-1.wrk.txt").exists():
        # Each repeat ran server, pgbench, peer back to back; the repeat with the median
        # server/peer ratio is reported (independently of the pgbench pair above).
        peers = [(p[0], p[1], peer_run(key, p[0])) for p in pairs]
        peers = [(rep_, w_, pr, w_["rps"] / pr["rps"] if pr["rps"] else None) for rep_, w_, pr in peers]
        prep, pw, peer, pratio = sorted(peers, key=lambda x: x[3] or 0)[(len(peers) - 1) // 2]
        perrors = sum(sum(x[1]["errors"].values()) + sum(x[2]["errors"].values()) for x in peers)
        peer["repeat"] = prep
        peer["server_rps"] = round(pw["rps"], 1)
        if (results / f"{key}-peer.rss").exists():
            peer["peak_rss_mib"] = round(rss(f"{key}-peer")["vmhwm_kib"] / MIB, 1)
        for run, (_, w_, pr, ratio_) in zip(row["runs"], peers):
            run["peer_rps"] = pr["rps"]
            run["peer_ratio"] = round(ratio_, 3) if ratio_ is not None else None
            run["peer_errors"] = sum(pr["errors"].values())
        row["peer"] = peer
        row["peer_ratio"] = round(pratio, 3) if pratio is not None else None
        row["peer_ratio_goal"] = peer_goal
        row["peer_ratio_goal_met"] = pratio is not None and pratio >= peer_goal and perrors == 0
    rows.append(row)

market = None
if (results / "market.json").exists():
    market = json.loads((results / "market.json").read_text())
    median = lambda xs: sorted(xs)[(len(xs) - 1) // 2] if xs else None
    market["startup_ms_builtin_median"] = median(market["startup_ms_builtin"])
    market["startup_ms_catalog_median"] = median(market["startup_ms_catalog"])
    market["rss_after_start_catalog_mib"] = round(market["rss_after_start_catalog_kib"] / MIB, 1)
    market["rss_after_start_builtin_mib"] = round(market["rss_after_start_builtin_kib"] / MIB, 1)
    market["server_peak_rss_mib"] = round(market["server_hwm_end_kib"] / MIB, 1)
    market["rss_goal_mib"] = 64
    market["rss_goal_met"] = market["server_peak_rss_mib"] <= 64

# Server warnings/errors during the run (RUST_LOG=warn, JSON lines), by message.
warnings = {}
for log in [results / "server.log", results / "server-sqlite.log", results / "server-startup.log",
            results / "server-market.log"]:
    if not log.exists():
        continue
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        key = f'{event.get("level")} {event.get("target")}: {event.get("message")}'
        warnings[key] = warnings.get(key, 0) + 1

peak = max((r["server_peak_rss_mib"] for r in rows), default=0)
median = lambda xs: sorted(xs)[(len(xs) - 1) // 2] if xs else None

# Footprint: idle RSS (2 s after start, no load), RSS under load (VmHWM of the loaded servers),
# start-up to a ready /api/v1/readiness on a fresh SQLite file.
idle = {"sqlite": facts.get("sqlite_idle_rss_kib"), "postgres": facts.get("postgres_idle_rss_kib")}
idle = {k: round(v / MIB, 1) for k, v in idle.items() if v is not None}
loaded = {}
if rows:
    loaded["phase_a"] = peak
if market:
    loaded["market"] = market["server_peak_rss_mib"]
sqlite_ms = facts.get("sqlite_startup_to_readiness_ms") or []
footprint = {
    "idle_rss_mib": idle,
    "idle_rss_goal_mib": IDLE_RSS_GOAL_MIB,
    "idle_rss_goal_met": None if not idle else max(idle.values()) <= IDLE_RSS_GOAL_MIB,
    "rss_under_load_mib": loaded,
    "rss_under_load_goal_mib": LOAD_RSS_GOAL_MIB,
    "rss_under_load_goal_met": None if not loaded else max(loaded.values()) <= LOAD_RSS_GOAL_MIB,
    "sqlite_startup_to_readiness_ms": sqlite_ms,
    "sqlite_startup_to_readiness_ms_median": median(sqlite_ms),
    "sqlite_startup_goal_ms": SQLITE_STARTUP_GOAL_MS,
    "sqlite_startup_goal_met": None if not sqlite_ms else median(sqlite_ms) <= SQLITE_STARTUP_GOAL_MS,
}
mcr_ok = (facts["mcr_lookups_after_measurements"] == facts["mcr_lookups_after_warmup"]
          and facts.get("mcr_lookups_market_after_measurements", 0) == facts.get("mcr_lookups_market_after_warmup", 0))
report = {
    "machine": facts,
    "endpoints": rows,
    "market": market,
    "server_peak_rss_mib": peak,
    "rss_goal_mib": 64,
    "rss_goal_met": peak <= 64,
    "server_log_warnings": warnings,
    "mcr_cache_warm_during_measurements": mcr_ok,
    "footprint": footprint,
}
(results / "latest.json").write_text(json.dumps(report, indent=2) + "\n")

head = ["endpoint", "req/s", "p50 ms", "p99 ms", "ceiling req/s", "ratio", "all ratios", "goal", "peak RSS MiB", "errors"]
table = [head]
for r in rows:
    table.append([
        r["endpoint"], f'{r["rps"]:.0f}', f'{r["p50_ms"]:.2f}', f'{r["p99_ms"]:.2f}',
        f'{r["ceiling"]["rps"]:.0f}', f'{r["ratio"]:.2f}' if r["ratio"] is not None else "-",
        " ".join("-" if run["ratio"] is None else f'{run["ratio"]:.2f}' for run in r["runs"]),
        "-" if r["ratio_goal"] is None else f'>= {r["ratio_goal"]:.2f} {"ok" if r["ratio_goal_met"] else "MISSED"}',
        f'{r["server_peak_rss_mib"]:.1f}', str(sum(run["errors"] for run in r["runs"])),
    ])
    if "peer" in r:
        table.append([
            "  ... vs peer-axum (same route)", "", "", "", f'{r["peer"]["rps"]:.0f}',
            f'{r["peer_ratio"]:.2f}' if r["peer_ratio"] is not None else "-",
            " ".join("-" if run["peer_ratio"] is None else f'{run["peer_ratio"]:.2f}' for run in r["runs"]),
            f'>= {r["peer_ratio_goal"]:.2f} {"ok" if r["peer_ratio_goal_met"] else "MISSED"}',
            "", str(sum(run["peer_errors"] for run in r["runs"])),
        ])
widths = [max(len(row[i]) for row in table) for i in range(len(head))]
print()
print(f'nproc={facts["nproc"]} commit={facts["git_commit"][:12]}{"+dirty" if facts["git_dirty"] else ""} '
      f'date={facts["date"]} wrk -t{facts["wrk_threads"]} -c{facts["connections"]} -d{facts["duration_s"]}s '
      f'pairs={facts["repeats"]} (median ratio shown) '
      f'pinning={facts["pinning"]} load={facts.get("load_average_start")}..{facts.get("load_average_end")} '
      f'io-pressure(avg300 %)={facts.get("io_pressure_some_avg300_pct_start")}..{facts.get("io_pressure_some_avg300_pct_end")}')
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
    who = next(b[6] for b in BENCHES if b[0] == r["key"])
    ctable.append([r["endpoint"], fmt(a["process_us_per_req"]), fmt(a["postgres_us_per_req"]),
                   fmt(a["rest_us_per_req"]), fmt(a["cpu_busy_pct"]),
                   f"| {who} " + fmt(c["process_us_per_req"]),
                   fmt(c["postgres_us_per_req"]), fmt(c["rest_us_per_req"]), fmt(c["cpu_busy_pct"])])
    if "peer" in r:
        pc = r["peer"]["cpu"]
        ctable.append(["  ... vs peer-axum", "", "", "", "", "| peer-axum " + fmt(pc["process_us_per_req"]),
                       fmt(pc["postgres_us_per_req"]), fmt(pc["rest_us_per_req"]), fmt(pc["cpu_busy_pct"])])
cw = [max(len(row[i]) for row in ctable) for i in range(len(chead))]
for i, row in enumerate(ctable):
    print("  ".join(cell.ljust(cw[j]) if j == 0 else cell.rjust(cw[j]) for j, cell in enumerate(row)))
    if i == 0:
        print("  ".join("-" * w for w in cw))
print(f'server peak RSS (VmHWM) {peak:.1f} MiB, goal <= 64 MiB: {"ok" if peak <= 64 else "MISSED"}; '
      f'MCR look-ups during measurements: {facts["mcr_lookups_after_measurements"] - facts["mcr_lookups_after_warmup"]}'
      f' + {facts.get("mcr_lookups_market_after_measurements", 0) - facts.get("mcr_lookups_market_after_warmup", 0)} (market)')
for r in rows:
    if r["p99_goal_ms"] is not None:
        pair_p99 = " ".join("%.2f" % x["p99_ms"] for x in r["runs"])
        print(f'{r["endpoint"]}: p99 {r["p99_ms"]:.2f} ms (pairs: {pair_p99}), '
              f'goal <= {r["p99_goal_ms"]:.0f} ms: {"ok" if r["p99_goal_met"] else "MISSED"}')
if market:
    print(f'market server: {market["services"]} generated services ({market["catalog_bytes"] / 1e6:.1f} MB of files); '
          f'start-up to /health {market["startup_ms_catalog_median"]} ms (built-in catalogue only: '
          f'{market["startup_ms_builtin_median"]} ms); RSS after start {market["rss_after_start_catalog_mib"]:.1f} MiB '
          f'(built-in only {market["rss_after_start_builtin_mib"]:.1f}); peak over the market load '
          f'{market["server_peak_rss_mib"]:.1f} MiB, goal <= 64 MiB: {"ok" if market["rss_goal_met"] else "MISSED"}')
    for r in rows:
        if r["key"] in ("execute", "proof"):
            c = r["cpu"]
            print(f'{r["endpoint"]}: server CPU {c["process_us_per_req"]} us, PostgreSQL {c["postgres_us_per_req"]} us per request')
ok = lambda met: "-" if met is None else ("ok" if met else "MISSED")
fp = footprint
print("footprint: idle RSS (2 s after start) "
      + (", ".join(f"{k} {v:.1f}" for k, v in fp["idle_rss_mib"].items()) or "not measured")
      + f' MiB, goal <= {IDLE_RSS_GOAL_MIB} MiB: {ok(fp["idle_rss_goal_met"])}; RSS under load '
      + (", ".join(f"{k} {v:.1f}" for k, v in fp["rss_under_load_mib"].items()) or "not measured")
      + f' MiB, goal <= {LOAD_RSS_GOAL_MIB} MiB: {ok(fp["rss_under_load_goal_met"])}; '
      + "start-up to ready /api/v1/readiness on SQLite "
      + (f'{fp["sqlite_startup_to_readiness_ms_median"]} ms median ({" ".join(map(str, sqlite_ms))})'
         if sqlite_ms else "not measured")
      + f', goal <= {SQLITE_STARTUP_GOAL_MS} ms: {ok(fp["sqlite_startup_goal_met"])}')
for key, count in sorted(warnings.items()):
    print(f"server log: {count} x {key}")
print()
