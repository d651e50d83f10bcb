"""The load generators: wrk (with bench/wrk/scenario.lua) against HTTP
endpoints and pgbench against the list endpoint's SQL, each run turned into
one dict of throughput, errors and latency percentiles."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .common import LIST_SQL, WRK_SCRIPT


def run_wrk(url: str, scenario: str, connections: int, duration: int, data_dir: Path, path: str = "",
            scenario_env: dict[str, str] | None = None) -> dict:
    """One wrk run of `scenario` (a request kind of scenario.lua, drawing
    tokens, slugs, logins and keys from `data_dir`); `path` overrides the
    request path of the `hello` scenario and is the key prefix of the
    key-value ones; `scenario_env` holds a scenario's own settings
    (`BENCH_KV_VALUE_BYTES`)."""
    threads = 1 if connections == 1 else 2
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out_path = Path(handle.name)
    env = dict(os.environ, SCENARIO=scenario, BENCH_DATA=str(data_dir), BENCH_OUT=str(out_path))
    if path:
        env["BENCH_PATH"] = path
    env.update(scenario_env or {})
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "30s",
               "-s", str(WRK_SCRIPT), url]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 90)
    if completed.returncode != 0 or not out_path.exists() or out_path.stat().st_size == 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    result = json.loads(out_path.read_text())
    out_path.unlink()
    seconds = result["duration_us"] / 1e6
    errors = result["errors"]
    statuses = result["statuses"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    return {
        "tool": "wrk",
        "connections": connections,
        "threads": threads,
        "seconds": round(seconds, 2),
        "requests": result["requests"],
        "rps": round(result["requests"] / seconds, 1) if seconds else 0.0,
        "ok": statuses["2xx"],
        "rate_limited_429": statuses["429"],
        "overloaded_503": statuses["503"],
        "errors": socket_errors + statuses["other"] + statuses["503"],
        "error_detail": {**errors, "other_status": statuses["other"]},
        "latency_ms": {k: round(v / 1000, 2) for k, v in result["latency_us"].items()},
    }


def pgbench_program() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    if not candidates:
        raise RuntimeError("pgbench not found (install postgresql-contrib or the server package)")
    return str(candidates[-1])


def run_pgbench(database_url: str, clients: int, duration: int) -> dict:
    """The list query's SQL at `clients` connections, prepared like the host does."""
    with tempfile.TemporaryDirectory() as log_dir:
        command = [
            pgbench_program(), "-n", "-M", "prepared",
            "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(duration),
            "-f", str(LIST_SQL),
            "-l", "--log-prefix", f"{log_dir}/pgbench",
            database_url,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, cwd=log_dir)
        if completed.returncode != 0:
            raise RuntimeError(f"pgbench failed: {completed.stderr.strip()}")
        tps = float(re.search(r"tps = ([0-9.]+)", completed.stdout).group(1))
        failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
        latencies = []
        for log_file in Path(log_dir).glob("pgbench*"):
            for line in log_file.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3:
                    latencies.append(int(fields[2]))
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1000, 2)

    return {
        "tool": "pgbench",
        "connections": clients,
        "seconds": duration,
        "requests": len(latencies),
        "rps": round(tps, 1),
        "errors": int(failed.group(1)) if failed else 0,
        "latency_ms": {
            "p50": percentile(50),
            "p90": percentile(90),
            "p99": percentile(99),
            "max": round(latencies[-1] / 1000, 2) if latencies else 0.0,
        },
    }
