#!/usr/bin/env python3
"""The benchmark driver behind `bench/run` (see bench/README.md).

One run, one report:

1. Host benchmark: the test fixture's `/hello` through wasmhost against a
   native hyper server (`bench native-hello`), and its `/pg/one` with the
   prepared-statement cache on and off.
2. Conduit benchmark: the local stack (`bench stack`: a private PostgreSQL,
   three wasmhost replicas, nginx with the project's config), seeded through
   the public API, then every scenario at every concurrency level through
   nginx and against one replica directly, with wrk driving the load; pgbench
   running the list endpoint's SQL and the hello component as baselines.
3. Optional profiles (perf, software clock) of one replica under the list and
   login scenarios.

Results go to bench/results/<name>.md, .json and .svg.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import tls_compare

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "wrk" / "scenario.lua"
PGBENCH_SQL = BENCH / "pgbench" / "article_list.sql"
FEED_SQL = BENCH / "pgbench" / "feed.sql"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Read-only scenarios first, so the data they read is the seeded set; the
# writes come after them at every level, and what they add is deleted again.
SCENARIOS = [
    "list_anon",
    "list_auth",
    "article",
    "feed",
    "tags",
    "create_article",
    "favorite",
    "comment",
    "login",
]


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", flush=True)


# ---------------------------------------------------------------- processes


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def process_tree(root_pid: int) -> list[int]:
    """root_pid and its descendants (postmaster + backends, nginx + workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, queue = [], [root_pid]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(parents.get(pid, []))
    return tree


def tree_ticks(root_pid: int | None) -> int:
    if root_pid is None:
        return 0
    return sum(cpu_ticks(pid) for pid in process_tree(root_pid))


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values


def machine_state() -> dict:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return {"nproc": os.cpu_count(), "load": [float(one), float(five), float(fifteen)]}


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request("GET", parsed.path or "/")
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get(url)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout:.0f}s")
        time.sleep(0.2)


def metric_sum(text: str, name: str, label: str | None = None) -> float:
    """Sum of every sample of `name` (optionally only those with `label`)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if rest[:1] not in ("{", " "):
            continue
        if label is not None and label not in rest:
            continue
        total += float(line.rsplit(" ", 1)[1])
    return total


class Replica:
    def __init__(self, name: str, api_url: str, admin_url: str, pid: int):
        self.name, self.api_url, self.admin_url, self.pid = name, api_url, admin_url, pid

    def counters(self) -> dict[str, float]:
        _, text = http_get(self.admin_url + "/metrics")
        return {
            "requests": metric_sum(text, "wasmhost_requests_total"),
            "rejected": metric_sum(text, "wasmhost_requests_rejected_total"),
            "statements": metric_sum(text, "wasmhost_pg_statements_total"),
            "cache_hit": metric_sum(text, "wasmhost_pg_statement_cache_total", 'result="hit"'),
            "cache_miss": metric_sum(text, "wasmhost_pg_statement_cache_total", 'result="miss"'),
            "cpu_ticks": cpu_ticks(self.pid),
        }


class Sample:
    """Counters of a set of replicas (and their database and proxy) at one moment."""

    def __init__(self, replicas: list[Replica], postgres_pid: int | None, nginx_pid: int | None):
        self.per_replica = {r.name: r.counters() for r in replicas}
        self.postgres_ticks = tree_ticks(postgres_pid)
        self.nginx_ticks = tree_ticks(nginx_pid)
        self.time = time.monotonic()


def sample_delta(before: Sample, after: Sample, replicas: list[Replica]) -> dict:
    def total(key: str) -> float:
        return sum(after.per_replica[n][key] - before.per_replica[n][key] for n in after.per_replica)

    requests = total("requests")
    per_request = (lambda value: value / requests) if requests else (lambda value: None)
    tick_ms = 1000.0 / CLOCK_TICKS
    return {
        "host_requests": requests,
        "host_rejected": total("rejected"),
        "sql_per_request": per_request(total("statements")),
        "statement_cache_hits": total("cache_hit"),
        "statement_cache_misses": total("cache_miss"),
        "replica_cpu_ms_per_request": per_request(total("cpu_ticks") * tick_ms),
        "postgres_cpu_ms_per_request": per_request(
            (after.postgres_ticks - before.postgres_ticks) * tick_ms
        ),
        "nginx_cpu_ms_per_request": per_request((after.nginx_ticks - before.nginx_ticks) * tick_ms),
        "replica_requests": {
            n: after.per_replica[n]["requests"] - before.per_replica[n]["requests"]
            for n in after.per_replica
        },
        "replica_peak_rss_mib": {r.name: round(memory_kib(r.pid).get("VmHWM", 0) / 1024, 1) for r in replicas},
        "replica_rss_mib": {r.name: round(memory_kib(r.pid).get("VmRSS", 0) / 1024, 1) for r in replicas},
    }


# ---------------------------------------------------------------- load tools


def run_wrk(url: str, scenario: str, connections: int, duration: int, data_dir: Path, path: str = "") -> dict:
    threads = 1 if connections == 1 else 2
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out_path = Path(handle.name)
    env = dict(os.environ, SCENARIO=scenario, BENCH_DATA=str(data_dir), BENCH_OUT=str(out_path))
    if path:
        env["BENCH_PATH"] = path
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
    ]
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
            pgbench_program(),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(duration),
            "-f",
            str(PGBENCH_SQL),
            "-l",
            "--log-prefix",
            f"{log_dir}/pgbench",
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


def explain_list_query(database_url: str) -> str:
    """PostgreSQL's plan and timings for the list endpoint's statement."""
    sql = "\n".join(line for line in PGBENCH_SQL.read_text().splitlines() if not line.startswith(("--", "\\")))
    for name, value in (("viewer", "0"), ("page_limit", "20"), ("page_offset", "0")):
        sql = sql.replace(f":{name}::", f"{value}::")
    plan = psql(database_url, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql.rstrip().rstrip(";"))
    return "# EXPLAIN ANALYZE of the article list's statement (anonymous viewer, limit 20), seeded data\n\n" + plan + "\n"


def explain_feed_query(database_url: str) -> str:
    """The plan and timings of the feed's statement, for the seeded user who
    follows the most authors."""
    follower = psql(database_url, "SELECT follower_id FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    follows = psql(database_url, f"SELECT count(*) FROM follows WHERE follower_id = {int(follower)}")
    sql = "\n".join(line for line in FEED_SQL.read_text().splitlines() if not line.startswith(("--", "\\")))
    for name, value in (("viewer", follower), ("page_limit", "20"), ("page_offset", "0")):
        sql = sql.replace(f":{name}::", f"{value}::")
    plan = psql(database_url, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql.rstrip().rstrip(";"))
    return (f"# EXPLAIN ANALYZE of the feed's statement (user {follower}, who follows {follows} authors; "
            "limit 20), seeded data\n\n" + plan + "\n")


def psql(database_url: str, sql: str) -> str:
    completed = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql, database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"psql failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


# ---------------------------------------------------------------- seeding


def database_deadlocks(database_url: str) -> int:
    return int(psql(database_url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))


class ApiClient:
    """Keep-alive JSON client, one connection per thread."""

    def __init__(self, base_url: str):
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.local = threading.local()

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        payload = json.dumps(body) if body is not None else None
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                text = response.read()
                return response.status, (json.loads(text) if text else {})
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")


WORDS = (
    "wasm component host tokio postgres query latency replica nginx pool cache statement "
    "runtime instance memory throughput request response article author tag follow favorite "
    "comment feed profile token argon2 hash index plan schema migration deploy cluster"
).split()


def seed(api_url: str, database_url: str, data_dir: Path, users: int, articles: int, rng: random.Random) -> dict:
    """Creates the data set through the public API; writes the files wrk reads."""
    client = ApiClient(api_url)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    started = time.monotonic()

    def expect(status: int, body: dict, allowed: tuple[int, ...], what: str) -> dict:
        if status not in allowed:
            raise RuntimeError(f"seeding {what}: HTTP {status} {body}")
        return body

    run_tag = f"{int(time.time()) % 100000}"
    accounts = [
        {
            "username": f"user{run_tag}x{i}",
            "email": f"user{run_tag}x{i}@bench.example",
            "password": f"password-{i}-{rng.randrange(10**6)}",
        }
        for i in range(users)
    ]

    def register(account: dict) -> str:
        status, body = client.call("POST", "/api/users", {"user": account})
        return expect(status, body, (200, 201), "user")["user"]["token"]

    tokens = list(pool.map(register, accounts))
    log(f"seeded {users} users")

    follow_pairs = set()
    for follower in range(users):
        for followee in rng.sample(range(users), 8):
            if followee != follower:
                follow_pairs.add((follower, followee))

    def follow(pair: tuple[int, int]) -> None:
        follower, followee = pair
        status, body = client.call(
            "POST", f"/api/profiles/{accounts[followee]['username']}/follow", token=tokens[follower]
        )
        expect(status, body, (200,), "follow")

    list(pool.map(follow, sorted(follow_pairs)))
    log(f"seeded {len(follow_pairs)} follows")

    tag_names = [f"{word}" for word in rng.sample(WORDS, 30)]

    def sentence(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()

    article_specs = []
    for i in range(articles):
        article_specs.append(
            (
                i % users,
                {
                    "title": f"{sentence(5)} {i}",
                    "description": sentence(12),
                    "body": "\n\n".join(sentence(rng.randint(40, 90)) + "." for _ in range(rng.randint(2, 6))),
                    "tagList": rng.sample(tag_names, rng.randint(1, 4)),
                },
            )
        )

    retried = []

    def create(spec: tuple[int, dict]) -> str:
        author, article = spec
        # Concurrent creates with overlapping tags in different orders can
        # deadlock in the tag upsert (a 500); a client would retry, and the
        # report counts how often that happened.
        for _ in range(5):
            status, body = client.call("POST", "/api/articles", {"article": article}, token=tokens[author])
            if status != 500:
                break
            retried.append(article["title"])
        return expect(status, body, (200, 201), "article")["article"]["slug"]

    deadlocks_before = database_deadlocks(database_url)
    slugs = list(pool.map(create, article_specs))
    create_deadlocks = database_deadlocks(database_url) - deadlocks_before
    log(f"seeded {len(slugs)} articles ({len(retried)} creates answered 500 and were retried; "
        f"{create_deadlocks} deadlocks in pg_stat_database meanwhile)")

    favorite_pairs = {(rng.randrange(users), rng.randrange(len(slugs))) for _ in range(articles * 3)}

    def favorite(pair: tuple[int, int]) -> None:
        user, article = pair
        status, body = client.call("POST", f"/api/articles/{slugs[article]}/favorite", token=tokens[user])
        expect(status, body, (200,), "favorite")

    list(pool.map(favorite, sorted(favorite_pairs)))
    log(f"seeded {len(favorite_pairs)} favorites")

    comment_specs = [(rng.randrange(users), rng.randrange(len(slugs)), sentence(rng.randint(8, 30))) for _ in range(articles * 2)]

    def comment(spec: tuple[int, int, str]) -> None:
        user, article, text = spec
        status, body = client.call(
            "POST", f"/api/articles/{slugs[article]}/comments", {"comment": {"body": text}}, token=tokens[user]
        )
        expect(status, body, (200, 201), "comment")

    list(pool.map(comment, comment_specs))
    log(f"seeded {len(comment_specs)} comments")
    pool.shutdown()

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (data_dir / "slugs.txt").write_text("\n".join(slugs) + "\n")
    (data_dir / "logins.txt").write_text("\n".join(f"{a['email']}\t{a['password']}" for a in accounts) + "\n")
    return {
        "users": users,
        "follows": len(follow_pairs),
        "articles": len(slugs),
        "tags": len(tag_names),
        "favorites": len(favorite_pairs),
        "comments": len(comment_specs),
        "article_creates_retried_after_500": len(retried),
        "deadlocks_during_article_creates": create_deadlocks,
        "seconds": round(time.monotonic() - started, 1),
    }


# ---------------------------------------------------------------- parts of the run


class Processes:
    """Everything this driver started, stopped in reverse order on exit."""

    def __init__(self):
        self.children: list[subprocess.Popen] = []

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        child = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.children.append(child)
        return child

    def stop(self, child: subprocess.Popen, timeout: float = 60.0) -> None:
        if child.poll() is None:
            if child.stdin:
                child.stdin.close()
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def test_app_manifest(work_dir: Path) -> Path:
    template = (ROOT / "host/tests/fixtures/test-app/spin.toml").read_text()
    wasm = ROOT / "target/wasm32-wasip2/release/test_app.wasm"
    static = ROOT / "host/tests/fixtures/test-app/static"
    manifest = work_dir / "test-app.toml"
    manifest.write_text(template.replace("WASM_PATH", str(wasm)).replace("STATIC_DIR", str(static)))
    return manifest


def start_test_app(procs: Processes, wasmhost: Path, manifest: Path, database_url: str, statement_cache: bool, cache_dir: Path):
    api_port, admin_port = free_port(), free_port()
    parsed = urllib.parse.urlsplit(database_url)
    env = dict(
        os.environ,
        SPIN_VARIABLE_DB_URL=database_url,
        SPIN_VARIABLE_DB_HOST=parsed.hostname or "127.0.0.1",
        SPIN_VARIABLE_DB_PORT=str(parsed.port or 5432),
        RUST_LOG="warn",
    )
    child = procs.start(
        [
            str(wasmhost),
            "serve",
            "--manifest",
            str(manifest),
            "--listen",
            f"127.0.0.1:{api_port}",
            "--admin-listen",
            f"127.0.0.1:{admin_port}",
            "--pg-statement-cache",
            "true" if statement_cache else "false",
            "--cache-dir",
            str(cache_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{admin_port}/readyz")
    replica = Replica("test-app", f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}", child.pid)
    return child, replica


HELLO_WASM = ROOT / "target/wasm32-wasip2/release/hello.wasm"

ARGON2_NATIVE = ROOT / "target/release/argon2-hash"
ARGON2_WASM = ROOT / "target/wasm32-wasip2/release/argon2-hash.wasm"


def argon2_hashes(args, rounds: int = 3, iterations: int = 30) -> dict:
    """The login's argon2id hash, timed by one program (bench/argon2-hash)
    built natively and for wasm32-wasip2 (run by `wasmtime run`, the same
    Cranelift as wasmhost's), in interleaved rounds: the median of the
    rounds' medians, and the best hash of all."""
    commands = {"native": [str(ARGON2_NATIVE), str(iterations)]}
    if args.wasmtime and ARGON2_WASM.exists():
        commands["wasm"] = [str(args.wasmtime), "run", str(ARGON2_WASM), str(iterations)]
    else:
        log(f"{ARGON2_WASM} or wasmtime is missing: the hash is timed natively only")
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out))
    hashes: dict = {"params": runs["native"][0]["params"], "rounds": rounds, "iterations": iterations}
    for name, results in runs.items():
        hashes[f"{name}_median_ms"] = round(statistics.median(r["median_ms"] for r in results), 2)
        hashes[f"{name}_min_ms"] = round(min(r["min_ms"] for r in results), 2)
        hashes[f"{name}_rounds_ms"] = [round(r["median_ms"], 2) for r in results]
    if "wasm" in runs:
        hashes["wasm_vs_native"] = round(hashes["wasm_median_ms"] / hashes["native_median_ms"], 2)
    return hashes


def start_hello_wasmhost(procs: Processes, wasmhost: Path, work_dir: Path, reuse: int):
    """wasmhost serving the pure hello component (bench/hello), with
    `--max-instance-reuse reuse`."""
    manifest = work_dir / "hello.toml"
    manifest.write_text((BENCH / "hello" / "spin.toml").read_text().replace("WASM_PATH", str(HELLO_WASM)))
    api_port, admin_port = free_port(), free_port()
    child = procs.start(
        [str(wasmhost), "serve", "--manifest", str(manifest), "--listen", f"127.0.0.1:{api_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}", "--cache-dir", str(work_dir / "hello-cache"),
         "--max-instance-reuse", str(reuse)],
        env=dict(os.environ, RUST_LOG="warn"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{admin_port}/readyz")
    return child, Replica(f"hello-wasmhost-reuse-{reuse}", f"http://127.0.0.1:{api_port}",
                          f"http://127.0.0.1:{admin_port}", child.pid)


def start_wasmtime_serve(procs: Processes, wasmtime: Path, reuse: int):
    """`wasmtime serve` running the same hello component; `reuse` > 1 sets
    `--max-instance-reuse-count` (its default for WASIp2 components is 1)."""
    port = free_port()
    # `-S cli=y`: Rust's standard library in the component imports
    # wasi:cli/environment, which `wasmtime serve` adds only on request.
    command = [str(wasmtime), "serve", "-S", "cli=y", "--addr", f"127.0.0.1:{port}"]
    if reuse > 1:
        command += ["--max-instance-reuse-count", str(reuse)]
    child = procs.start(command + [str(HELLO_WASM)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/hello")
    return child, f"http://127.0.0.1:{port}"


def pid_of(pid_file: str) -> int | None:
    """The process id in a pid file (nginx's), None when there is none."""
    path = Path(pid_file)
    return int(path.read_text().split()[0]) if path.exists() else None


def tls_chart_written(section: dict, path: Path) -> bool:
    plt = pyplot()
    return plt is not None and tls_compare.chart(section, path, plt)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measured(replicas, postgres_pid, nginx_pid, action) -> dict:
    before = Sample(replicas, postgres_pid, nginx_pid)
    result = action()
    after = Sample(replicas, postgres_pid, nginx_pid)
    result.update(sample_delta(before, after, replicas))
    return result


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput, with every round's figure kept."""
    ordered = sorted(runs, key=lambda run: run["rps"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rounds_rps"] = [run["rps"] for run in runs]
    return chosen


def host_benchmark(procs, args, work_dir, database_url, postgres_pid, data_dir) -> dict:
    """Issue 2's figures: hello vs native hyper, /pg/one with the cache on and off.

    Every server runs at once and the runs alternate over several rounds, so
    that a burst of someone else's work on the shared machine hits all of
    them alike; each figure is the round with the median throughput."""
    manifest = test_app_manifest(work_dir)
    cache_dir = work_dir / "test-app-cache"
    c, d = args.host_connections, args.host_duration
    results: dict = {"connections": c, "seconds": d, "rounds": args.host_rounds}

    native_port = free_port()
    native = procs.start(
        [str(args.bench_bin), "native-hello", "--listen", f"127.0.0.1:{native_port}"],
        stdout=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{native_port}/")
    native_url = f"http://127.0.0.1:{native_port}"
    _, cached = start_test_app(procs, args.wasmhost, manifest, database_url, True, cache_dir)
    _, uncached = start_test_app(procs, args.wasmhost, manifest, database_url, False, cache_dir)
    candidate = None
    if args.candidate_wasmhost:
        _, candidate = start_test_app(procs, args.candidate_wasmhost, manifest, database_url, True, work_dir / "candidate-cache")

    def process_run(pid: int, url: str) -> dict:
        ticks_before = cpu_ticks(pid)
        run = run_wrk(url, "hello", c, d, data_dir, "/hello")
        run["replica_cpu_ms_per_request"] = (cpu_ticks(pid) - ticks_before) * 1000.0 / CLOCK_TICKS / run["requests"]
        return run

    def native_run() -> dict:
        return process_run(native.pid, native_url)

    def app_run(replica: Replica, path: str, connections: int, pg: bool) -> dict:
        return measured(
            [replica], postgres_pid if pg else None, None,
            lambda: run_wrk(replica.api_url, "hello", connections, d, data_dir, path),
        )

    plan = {
        "native_hello": native_run,
        "wasmhost_hello": lambda: app_run(cached, "/hello", c, False),
        "pg_one_cache_on": lambda: app_run(cached, "/pg/one", c, True),
        "pg_one_cache_off": lambda: app_run(uncached, "/pg/one", c, True),
        "pg_one_cache_on_c1": lambda: app_run(cached, "/pg/one", 1, True),
        "pg_one_cache_off_c1": lambda: app_run(uncached, "/pg/one", 1, True),
    }
    # The pure hello component on wasmhost and on `wasmtime serve`, each with
    # a fresh instance per request and with instance reuse.
    hello_servers = []
    if args.wasmtime and HELLO_WASM.exists():
        for reuse in (1, args.reuse_count):
            child, server = start_hello_wasmhost(procs, args.wasmhost, work_dir, reuse)
            hello_servers.append(child)
            key = "hello_wasmhost_fresh" if reuse == 1 else "hello_wasmhost_reuse"
            plan[key] = (lambda server: lambda: app_run(server, "/hello", c, False))(server)
            child, url = start_wasmtime_serve(procs, args.wasmtime, reuse)
            hello_servers.append(child)
            key = "hello_wasmtime_fresh" if reuse == 1 else "hello_wasmtime_reuse"
            plan[key] = (lambda pid, url: lambda: process_run(pid, url))(child.pid, url)
        results["reuse_count"] = args.reuse_count
    elif args.wasmtime:
        log(f"{HELLO_WASM} is missing: build bench/hello for wasm32-wasip2 to compare with wasmtime serve")
    if candidate:
        plan["candidate_hello"] = lambda: app_run(candidate, "/hello", c, False)
        plan["candidate_pg_one"] = lambda: app_run(candidate, "/pg/one", c, True)
    # Warm-up: compiled code paged in, pools filled, statement caches primed.
    for replica in [r for r in (cached, uncached, candidate) if r]:
        run_wrk(replica.api_url, "hello", c, 1, data_dir, "/pg/one")
    rounds: dict[str, list[dict]] = {name: [] for name in plan}
    for round_number in range(args.host_rounds):
        for name, action in plan.items():
            rounds[name].append(action())
        log(f"host round {round_number + 1}: " + ", ".join(f"{n} {r[-1]['rps']}" for n, r in rounds.items()))
    for name, runs in rounds.items():
        results[name] = median_run(runs)

    # The hello baseline at every level of the Conduit runs: the runtime's cost
    # without any database work.
    results["hello_levels"] = []
    for level in args.levels:
        results["hello_levels"].append(
            measured([cached], None, None, lambda: run_wrk(cached.api_url, "hello", level, args.duration, data_dir, "/hello"))
        )
        log(f"hello c={level}: {results['hello_levels'][-1]['rps']} req/s")
    if not args.no_profile:
        args.results.mkdir(parents=True, exist_ok=True)
        out = args.results / f"{args.name}-profile-hello.txt"
        if profile(args, cached.pid, cached.api_url, "hello", data_dir, out, "/hello"):
            results["profile"] = out.name
        if candidate:
            out = args.results / f"{args.name}-profile-hello-candidate.txt"
            if profile(args, candidate.pid, candidate.api_url, "hello", data_dir, out, "/hello"):
                results["candidate_profile"] = out.name
    for child in [p for p in procs.children if p is not None and p.args[0] in (str(args.wasmhost), str(args.candidate_wasmhost))]:
        procs.stop(child)
    procs.stop(native)
    for child in hello_servers:
        procs.stop(child)

    def ratio(a: str, b: str) -> float:
        return round(results[a]["rps"] / results[b]["rps"], 2)

    if "hello_wasmtime_fresh" in results:
        results["wasmhost_vs_wasmtime_fresh"] = ratio("hello_wasmhost_fresh", "hello_wasmtime_fresh")
        results["wasmhost_vs_wasmtime_reuse"] = ratio("hello_wasmhost_reuse", "hello_wasmtime_reuse")
        results["wasmhost_reuse_vs_native"] = ratio("hello_wasmhost_reuse", "native_hello")

    results["hello_vs_native"] = ratio("wasmhost_hello", "native_hello")
    results["cache_on_vs_off"] = ratio("pg_one_cache_on", "pg_one_cache_off")
    results["cache_on_vs_off_c1"] = ratio("pg_one_cache_on_c1", "pg_one_cache_off_c1")
    # On a shared machine throughput is bounded by whoever else runs; CPU per
    # request says what each server itself costs.
    results["native_vs_hello_cpu_per_request"] = round(
        results["wasmhost_hello"]["replica_cpu_ms_per_request"] / results["native_hello"]["replica_cpu_ms_per_request"], 1
    )
    if candidate:
        results["candidate_hello_vs_hello"] = ratio("candidate_hello", "wasmhost_hello")
        results["candidate_hello_vs_native"] = ratio("candidate_hello", "native_hello")
    return results


def previous_manifest(previous: Path, work_dir: Path) -> Path:
    """The project's spin.toml with the Conduit component taken from a
    previous build (`--previous DIR`); the docs component is the current one."""
    text = (ROOT / "spin.toml").read_text()
    text = text.replace(
        'source = "target/wasm32-wasip2/release/conduit.wasm"',
        f'source = "{(previous / "conduit.wasm").resolve()}"',
    )
    text = text.replace(
        'source = "target/wasm32-wasip2/release/docs.wasm"',
        f'source = "{(ROOT / "target/wasm32-wasip2/release/docs.wasm").resolve()}"',
    )
    manifest = work_dir / "previous-spin.toml"
    manifest.write_text(text)
    return manifest


def start_replica_like(procs: Processes, like: Replica, name: str, wasmhost: Path, manifest: Path,
                       extra_env: dict[str, str] | None = None):
    """A replica beside the stack: the same command line shape and
    environment as the stack's replica `like` (read from /proc), on the same
    database, with the given wasmhost, manifest and extra environment."""
    environ = Path(f"/proc/{like.pid}/environ").read_bytes().split(b"\0")
    env = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
    env.update(extra_env or {})
    api_port, admin_port = free_port(), free_port()
    child = procs.start(
        [
            str(wasmhost),
            "serve",
            "--manifest",
            str(manifest),
            "--listen",
            f"127.0.0.1:{api_port}",
            "--admin-listen",
            f"127.0.0.1:{admin_port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{admin_port}/readyz", timeout=300.0)
    return child, Replica(name, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}", child.pid)


def reset_data(database_url: str, scenario: str) -> None:
    """Deletes what a write scenario added, so that every run reads the
    seeded data set."""
    if scenario == "create_article":
        psql(database_url, "DELETE FROM articles WHERE title LIKE 'Load article %'")
    elif scenario == "comment":
        psql(database_url, "DELETE FROM comments WHERE body LIKE 'Load comment %'")


def interleaved(replicas: dict[str, Replica], scenario: str, connections: int, duration: int, rounds: int,
                data_dir: Path, postgres_pid, database_url: str, after_run=None, before_run=None) -> dict[str, dict]:
    """Each replica in turn, `rounds` times; the median round of each.
    `before_run(key)` is called before each run; `after_run(key)` after it,
    before its data is reset."""
    runs: dict[str, list[dict]] = {key: [] for key in replicas}
    for round_number in range(rounds):
        for key, replica in replicas.items():
            if before_run:
                before_run(key)
            runs[key].append(measured([replica], postgres_pid, None,
                                      lambda: run_wrk(replica.api_url, scenario, connections, duration, data_dir)))
            if after_run:
                after_run(key)
            reset_data(database_url, scenario)
        log(f"{scenario} round {round_number + 1}: " + ", ".join(f"{k} {v[-1]['rps']}" for k, v in runs.items()))
    return {key: median_run(value) for key, value in runs.items()}


def reuse_comparison(procs, args, replicas, database_url, postgres_pid, data_dir) -> dict:
    """Conduit with instance reuse against a fresh instance per request: the
    stack's first replica and one more replica of the same build with
    `WASMHOST_MAX_INSTANCE_REUSE`, called directly, interleaved."""
    child, reuse = start_replica_like(
        procs, replicas[0], "reuse", args.wasmhost, ROOT / "spin.toml",
        {"WASMHOST_MAX_INSTANCE_REUSE": str(args.reuse_count)},
    )
    fresh = Replica("fresh", replicas[0].api_url, replicas[0].admin_url, replicas[0].pid)
    results: dict = {"connections": args.compare_connections, "seconds": args.compare_duration,
                     "rounds": args.compare_rounds, "max_instance_reuse": args.reuse_count, "scenarios": {}}
    for scenario in args.reuse_scenarios:
        entry = interleaved({"fresh": fresh, "reuse": reuse}, scenario, args.compare_connections,
                            args.compare_duration, args.compare_rounds, data_dir, postgres_pid, database_url)
        entry["ratio"] = round(entry["reuse"]["rps"] / entry["fresh"]["rps"], 2) if entry["fresh"]["rps"] else None
        results["scenarios"][scenario] = entry
    _, text = http_get(reuse.admin_url + "/metrics")
    results["instances_created"] = metric_sum(text, "wasmhost_instances_total")
    results["instances_reused"] = metric_sum(text, "wasmhost_instances_reused_total")
    procs.stop(child)
    return results


def count_triggers(owner_url: str) -> list[tuple[str, str]]:
    """The triggers that keep articlesCount (migrations/0009): (table, name)."""
    rows = psql(owner_url, "SELECT tgrelid::regclass || '|' || tgname FROM pg_trigger "
                           "WHERE tgfoid IN ('count_articles'::regproc, 'count_article_tags'::regproc, "
                           "'count_favorites'::regproc) ORDER BY 1")
    return [tuple(line.split("|", 1)) for line in rows.splitlines() if "|" in line]


def set_count_triggers(owner_url: str, triggers: list[tuple[str, str]], enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    psql(owner_url, "; ".join(f'ALTER TABLE {table} {verb} TRIGGER "{name}"' for table, name in triggers))


def counts_comparison(args, replicas, owner_url, database_url, postgres_pid, data_dir) -> dict:
    """What keeping articlesCount costs the writes: `create_article` on the
    stack's first replica with the count triggers on (as deployed) and off,
    interleaved. Each run's articles are deleted while the triggers are as
    they were during the run, so the counts stay exact (checked at the end)."""
    triggers = count_triggers(owner_url)
    if not triggers:
        raise RuntimeError("no articlesCount triggers in the database (migrations/0009)")
    replica = replicas[0]
    try:
        medians = interleaved({"kept": replica, "not_kept": replica}, "create_article", args.compare_connections,
                              args.compare_duration, args.compare_rounds, data_dir, postgres_pid, database_url,
                              before_run=lambda key: set_count_triggers(owner_url, triggers, key == "kept"))
    finally:
        set_count_triggers(owner_url, triggers, True)
    exact = psql(owner_url, "SELECT (SELECT coalesce(sum(articles), 0) FROM article_counts "
                            "WHERE filter_kind = 'all') = (SELECT count(*) FROM articles)").strip() == "t"
    kept, not_kept = medians["kept"], medians["not_kept"]
    return {
        "connections": args.compare_connections, "seconds": args.compare_duration,
        "rounds": args.compare_rounds, "triggers": [f"{t}.{n}" for t, n in triggers],
        "kept": kept, "not_kept": not_kept, "counts_exact_after": exact,
        "ratio": round(kept["rps"] / not_kept["rps"], 2) if not_kept["rps"] else None,
    }


class OtlpSink:
    """`bench otlp-sink`: one counting OTLP receiver per traced replica, in
    one process; the counts are read by writing a line to its stdin."""

    def __init__(self, procs: Processes, bench_bin: Path, receivers: int):
        self.child = procs.start(
            [str(bench_bin), "otlp-sink"] + ["--listen", "127.0.0.1:0"] * receivers,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started = json.loads(self.child.stdout.readline() or "null")
        if started is None:
            raise RuntimeError("bench otlp-sink did not start")
        self.receivers = started["receivers"]

    def env(self, receiver: int) -> dict[str, str]:
        """The environment that points a replica at one receiver."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.receivers[receiver]["endpoint"],
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.receivers[receiver]["protocol"],
        }

    def counts(self) -> list[dict]:
        """Spans and export requests received so far, per receiver."""
        self.child.stdin.write("counts\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())["receivers"]


# Each variant's environment on top of the stack's replica environment. A
# replica with no OTLP endpoint creates no spans; empty values count as unset
# for wasmhost (as for the OpenTelemetry SDKs), which keeps an endpoint from
# the driver's own environment out of the `off` replica.
TRACING_VARIANTS = {
    "off": {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
            "OTEL_TRACES_SAMPLER": "", "OTEL_TRACES_SAMPLER_ARG": ""},
    "on_100": {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": ""},
    "on_10": {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}


def tracing_comparison(procs, args, replicas, database_url, postgres_pid, data_dir) -> dict:
    """Conduit with OpenTelemetry traces off, on for every request and on for
    one request in ten: for each scenario three fresh replicas like the
    stack's first one (so that each one's peak RSS is its own), called
    directly, interleaved. The traced ones export over OTLP/HTTP to
    `bench otlp-sink`, one receiver each, so the report can show that the
    spans arrived: every replica is stopped at the end of its scenario, which
    flushes its last batch, and its spans are divided by the requests it
    answered (warm-up included, on both sides)."""
    traced = [variant for variant in TRACING_VARIANTS if variant != "off"]
    sink = OtlpSink(procs, args.bench_bin, len(traced))
    sink_ticks = cpu_ticks(sink.child.pid)
    results: dict = {"connections": args.compare_connections, "seconds": args.compare_duration,
                     "rounds": args.compare_rounds, "protocol": sink.receivers[0]["protocol"],
                     "variants": {variant: {k: v for k, v in env.items() if v}
                                  for variant, env in TRACING_VARIANTS.items()},
                     "scenarios": {}}
    spans_total = 0
    for scenario in args.tracing_scenarios:
        counts_before = sink.counts()
        started: dict[str, tuple] = {}
        for variant, env in TRACING_VARIANTS.items():
            env = dict(env, OTEL_SERVICE_NAME=f"wasmhost-bench-{variant}")
            if variant in traced:
                env.update(sink.env(traced.index(variant)))
            started[variant] = start_replica_like(procs, replicas[0], variant, args.wasmhost, ROOT / "spin.toml", env)
        for _, replica in started.values():
            run_wrk(replica.api_url, scenario, 8, 2, data_dir)
        reset_data(database_url, scenario)
        entry = interleaved({variant: replica for variant, (_, replica) in started.items()}, scenario,
                            args.compare_connections, args.compare_duration, args.compare_rounds,
                            data_dir, postgres_pid, database_url)
        # Stopping a replica (SIGTERM) exports what its batch still holds.
        answered, peak_rss_mib = {}, {}
        counts_running = sink.counts()
        for variant, (child, replica) in started.items():
            answered[variant] = replica.counters()["requests"]
            peak_rss_mib[variant] = round(memory_kib(replica.pid).get("VmHWM", 0) / 1024, 1)
            procs.stop(child)
        counts_after = sink.counts()
        for variant in TRACING_VARIANTS:
            run = entry[variant]
            run["replica_requests_total"] = answered[variant]
            run["replica_peak_rss_mib_final"] = peak_rss_mib[variant]
            if variant in traced:
                index = traced.index(variant)
                spans = counts_after[index]["spans"] - counts_before[index]["spans"]
                spans_total += spans
                run["spans"] = spans
                run["spans_at_shutdown"] = spans - (counts_running[index]["spans"] - counts_before[index]["spans"])
                run["exports"] = counts_after[index]["exports"] - counts_before[index]["exports"]
                run["spans_per_request"] = round(spans / answered[variant], 2) if answered[variant] else None
            if variant != "off":
                off = entry["off"]
                run["rps_vs_off"] = round(run["rps"] / off["rps"], 2) if off["rps"] else None
                off_cpu, cpu = off.get("replica_cpu_ms_per_request"), run.get("replica_cpu_ms_per_request")
                run["cpu_vs_off"] = round(cpu / off_cpu, 2) if cpu and off_cpu else None
        log(f"{scenario} tracing: " + ", ".join(
            f"{v} {entry[v]['rps']} req/s" + (f" {entry[v]['spans_per_request']} spans/req" if v in traced else "")
            for v in TRACING_VARIANTS))
        results["scenarios"][scenario] = entry
    sink_ms = (cpu_ticks(sink.child.pid) - sink_ticks) * 1000.0 / CLOCK_TICKS
    results["sink_cpu_ms_per_1000_spans"] = round(sink_ms / spans_total * 1000, 2) if spans_total else None
    procs.stop(sink.child)
    return results


def tags_updates(database_url: str) -> int:
    """Row updates of the tags table so far (pg_stat_user_tables). A backend
    flushes its statistics at most once a second, and an idle one within ten
    seconds: wait for that, so that each run is charged its own updates."""
    time.sleep(11)
    return int(psql(database_url, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'tags'") or 0)


def compare_builds(procs, args, work_dir, replicas, database_url, postgres_pid, data_dir) -> dict:
    """The previous build (`--previous DIR`) against the current one, each as
    one replica called directly, at one concurrency level: for every scenario
    the two alternate over several rounds and the median round counts."""
    previous_child, previous = start_replica_like(
        procs, replicas[0], "previous", args.previous_wasmhost, previous_manifest(args.previous, work_dir),
    )
    current = Replica("current", replicas[0].api_url, replicas[0].admin_url, replicas[0].pid)
    c, d = args.compare_connections, args.compare_duration
    results: dict = {
        "label": args.previous_label,
        "connections": c,
        "seconds": d,
        "rounds": args.compare_rounds,
        "scenarios": {},
    }
    for replica in (previous, current):
        run_wrk(replica.api_url, "article", 8, 2, data_dir)
    for scenario in args.compare_scenarios:
        # For creations, the tags rows each build updated: the counter read
        # after one run is the starting point of the next.
        updates: dict[str, int] = {"previous": 0, "current": 0}
        after_run = None
        if scenario == "create_article":
            counter = {"last": tags_updates(database_url)}

            def after_run(key: str) -> None:
                now = tags_updates(database_url)
                updates[key] += now - counter["last"]
                counter["last"] = now

        entry = interleaved({"previous": previous, "current": current}, scenario, c, d, args.compare_rounds,
                            data_dir, postgres_pid, database_url, after_run)
        entry["ratio"] = round(entry["current"]["rps"] / entry["previous"]["rps"], 2) if entry["previous"]["rps"] else None
        if scenario == "create_article":
            entry["tags_rows_updated"] = updates
        results["scenarios"][scenario] = entry

    # The login's password hash: the same source (bench/argon2-hash) built
    # natively and for wasm32-wasip2, and the component's (a login at one
    # connection, which is the hash plus one primary-key SELECT).
    hashes = argon2_hashes(args)
    for key, replica in (("previous", previous), ("current", current)):
        run = run_wrk(replica.api_url, "login", 1, d, data_dir)
        hashes[f"{key}_login_c1_p50_ms"] = run["latency_ms"]["p50"]
        hashes[f"{key}_vs_native"] = round(run["latency_ms"]["p50"] / hashes["native_median_ms"], 2)
    results["argon2"] = hashes
    log(f"argon2: native {hashes['native_median_ms']} ms, wasm {hashes.get('wasm_median_ms')} ms; login at c=1 previous "
        f"{hashes['previous_login_c1_p50_ms']} ms, current {hashes['current_login_c1_p50_ms']} ms")
    procs.stop(previous_child)
    return results


RUST_ESCAPES = {
    "$LT$": "<", "$GT$": ">", "$RF$": "&", "$BP$": "*", "$SP$": "@", "$LP$": "(", "$RP$": ")",
    "$C$": ",", "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]", "$u7b$": "{", "$u7d$": "}",
    "$u7e$": "~", "$u3b$": ";", "$u2b$": "+", "$u22$": '"',
}


def demangle_rust(symbol: str) -> str:
    """Rust's legacy mangling (_ZN<len><part>...E) inside wasmtime's
    `wasm[0]::function[N]::<name>` symbols, which perf leaves mangled."""

    def one(match: re.Match) -> str:
        text, position, parts, truncated = match.group(0), 3, [], False
        while position < len(text) and text[position].isdigit():
            digits = re.match(r"\d+", text[position:]).group(0)
            position += len(digits)
            part = text[position : position + int(digits)]
            truncated = len(part) < int(digits)
            position += int(digits)
            # A part that starts with an escape is prefixed with `_`.
            parts.append(part[1:] if part.startswith("_$") else part)
        if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
            parts.pop()
        name = "::".join(parts)
        for escape, char in RUST_ESCAPES.items():
            name = name.replace(escape, char)
        return name.replace("..", "::") + ("…" if truncated else "")

    return re.sub(r"_ZN[0-9A-Za-z_$.]+", one, symbol)


def perf_lines(perf_data: Path, *options: str) -> list[str]:
    report = subprocess.run(
        ["perf", "report", "-i", str(perf_data), "--stdio", "-g", "none", *options],
        capture_output=True,
        text=True,
    )
    return [line.rstrip() for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]


def perf_summary(perf_data: Path, title: str, inclusive_patterns: tuple[str, ...] = ()) -> str:
    """Where a process's CPU went: by kind of code, top functions, and the
    inclusive share of a few functions of interest."""
    kinds: dict[str, float] = {}
    for line in perf_lines(perf_data, "--no-children", "--sort", "dso", "-w", "9,400"):
        percent, _, dso = line.strip().partition("%")
        dso = dso.strip()
        if dso.endswith(".cwasm") or dso.startswith("[JIT]"):
            kind = "guest code (the component, compiled by wasmtime)"
        elif dso.startswith("[kernel"):
            kind = "kernel (syscalls, page faults, network, scheduling)"
        elif dso.startswith("wasmhost"):
            kind = "wasmhost (wasmtime runtime, tokio, hyper, tokio-postgres)"
        elif dso.startswith("lib"):
            kind = "C library (malloc, memcpy)"
        else:
            kind = "other"
        kinds[kind] = kinds.get(kind, 0.0) + float(percent)
    out = [f"# {title}", "", "## By kind of code", ""]
    out += [f"{share:6.2f}%  {kind}" for kind, share in sorted(kinds.items(), key=lambda kv: -kv[1])]
    out += ["", "## Top functions (self time)", ""]
    for line in perf_lines(perf_data, "--no-children", "--sort", "sym", "-w", "9,400", "--percent-limit", "0.5")[:40]:
        out.append(demangle_rust(" ".join(line.split())))
    if inclusive_patterns:
        out += ["", "## Inclusive time of functions of interest (self + callees)", ""]
        for line in perf_lines(perf_data, "--children", "--sort", "sym", "-w", "9,9,400", "--percent-limit", "0.5"):
            if any(pattern in line for pattern in inclusive_patterns):
                children, self_time, symbol = line.split(None, 2)
                out.append(f"{children:>8}  {demangle_rust(symbol)}")
    return "\n".join(out) + "\n"


def record_profile(pid: int, seconds: float, load) -> Path:
    """perf with the software clock (the VM has no hardware counters), call
    graphs included, while `load` runs; returns the perf.data path."""
    perf_data = Path(tempfile.mkdtemp(prefix="bench-perf-")) / "perf.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-p", str(pid), "-o", str(perf_data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    load()
    recorder.send_signal(signal.SIGINT)
    recorder.wait(60)
    return perf_data


INCLUSIVE_OF_INTEREST = (
    "decommit_pages",
    "exc_page_fault",
    "__x64_sys_madvise",
    "Instantiator::run",
    "call_unchecked_raw",
    "write_vectored",
    "tokio_postgres",
    "serde_json",
)


def profile(args, pid: int, url: str, scenario: str, data_dir: Path, out: Path, path: str = "") -> str | None:
    if shutil.which("perf") is None:
        return None
    perf_data = record_profile(pid, args.profile_seconds, lambda: run_wrk(url, scenario, 8, args.profile_seconds, data_dir, path))
    what = f"scenario {scenario}{' ' + path if path else ''}"
    out.write_text(perf_summary(perf_data, f"perf profile of one wasmhost process: {what}, 8 connections, {args.profile_seconds}s", INCLUSIVE_OF_INTEREST))
    shutil.rmtree(perf_data.parent, ignore_errors=True)
    return out.name


# ---------------------------------------------------------------- report


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def peak_rss(run: dict) -> float | None:
    """The peak RSS of a run on one replica, in MiB."""
    return next(iter(run.get("replica_peak_rss_mib", {}).values()), None)


def markdown(report: dict) -> str:
    lines = [f"# Benchmark {report['name']}", ""]
    machine = report["machine"]
    lines += [
        f"- Command: `{report['command']}`",
        f"- Commit: `{report['commit']}`; date {report['started']}",
        "- Binaries measured (build time): "
        + ", ".join(f"`{name}` ({built})" for name, built in report["artifacts_built"].items()),
        "- Uncommitted changes in host/, components/, devstack/, docker/nginx/ at the time: "
        + (", ".join(f"`{line.strip()}`" for line in report["uncommitted_changes"]) or "none"),
        f"- Machine: {machine['nproc']} cores (`nproc`), {machine['cpu']}; load average at start "
        f"{machine['load_start']}, at end {machine['load_end']}. **Shared machine**: other engineers were "
        "compiling and testing on it during the run, and wrk, nginx, PostgreSQL and the replicas all share "
        "the same cores, so absolute figures are low and noisy; ratios taken in the same run are the "
        "meaningful part.",
        f"- Load tool: wrk ({report['wrk_version']}), {report['duration']}s per run, `--timeout 30s`, "
        "2 threads (1 at one connection); pgbench with `-M prepared`.",
        f"- Replicas: {report['stack']['replicas']} wasmhost replicas, "
        f"`WASMHOST_MAX_CONCURRENCY={report['stack']['max_concurrency']}` (503 beyond that per replica), "
        f"`WASMHOST_PG_POOL_SIZE={report['stack']['pg_pool_size']}`, nginx `least_conn` with the project's "
        "config (login/register limited to 5 r/s per client address, burst 10: 429 beyond).",
        f"- Data set (seeded through the API in {report['seed']['seconds']}s): {report['seed']['users']} users, "
        f"{report['seed']['articles']} articles, {report['seed']['tags']} tags, {report['seed']['follows']} follows, "
        f"{report['seed']['favorites']} favorites, {report['seed']['comments']} comments.",
        "",
    ]
    host = report.get("host")
    if host:
        lines += [
            f"## Host benchmark ({host['connections']} connections unless marked, {host['seconds']}s per run, "
            f"{host.get('rounds', 1)} interleaved rounds, median shown)",
            "",
            "| server | req/s (median) | req/s each round | p50 ms | p90 ms | p99 ms | max ms | errors | SQL/req | cache hits/misses | server CPU ms/req | PG CPU ms/req |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        rows = [
            ("native_hello", "native hyper `hello`"),
            ("wasmhost_hello", "wasmhost `/hello`"),
            ("pg_one_cache_on", "wasmhost `/pg/one`, statement cache on"),
            ("pg_one_cache_off", "wasmhost `/pg/one`, statement cache off"),
            ("pg_one_cache_on_c1", "wasmhost `/pg/one`, cache on, **1 connection**"),
            ("pg_one_cache_off_c1", "wasmhost `/pg/one`, cache off, **1 connection**"),
            ("hello_wasmhost_fresh", "wasmhost, pure hello component, fresh instance per request"),
            ("hello_wasmhost_reuse", f"wasmhost, pure hello component, `--max-instance-reuse {host.get('reuse_count')}`"),
            ("hello_wasmtime_fresh", "`wasmtime serve`, the same component, fresh instance per request"),
            ("hello_wasmtime_reuse", f"`wasmtime serve --max-instance-reuse-count {host.get('reuse_count')}`"),
            ("candidate_hello", f"candidate wasmhost `/hello` ({host.get('candidate', '')})"),
            ("candidate_pg_one", f"candidate wasmhost `/pg/one` ({host.get('candidate', '')})"),
        ]
        for key, label in rows:
            if key not in host:
                continue
            r = host[key]
            lat = r["latency_ms"]
            cache = f"{r['statement_cache_hits']:.0f}/{r['statement_cache_misses']:.0f}" if "statement_cache_hits" in r else "-"
            lines.append(
                f"| {label} | {fmt(r['rps'])} | {', '.join(fmt(x, 0) for x in r.get('rounds_rps', []))} "
                f"| {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | {fmt(lat['p99'], 2)} "
                f"| {fmt(lat['max'], 2)} | {r['errors']} | {fmt(r.get('sql_per_request'), 2)} | {cache} "
                f"| {fmt(r.get('replica_cpu_ms_per_request'), 3)} | {fmt(r.get('postgres_cpu_ms_per_request'), 3)} |"
            )
        hello_ok = "meets" if host["hello_vs_native"] >= 0.5 else "misses"
        cache_ok = "meets" if host["cache_on_vs_off"] >= 1.3 else "misses"
        lines += [
            "",
            f"- hello through wasmhost / native hyper: **{host['hello_vs_native']}x** (target ≥ 0.5x: {hello_ok})",
            f"- `/pg/one` statement cache on / off: **{host['cache_on_vs_off']}x** at {host['connections']} connections "
            f"(target ≥ 1.3x: {cache_ok}); **{host.get('cache_on_vs_off_c1', '-')}x** at 1 connection",
            f"- CPU per request, wasmhost `/hello` / native hyper: {host['native_vs_hello_cpu_per_request']}x "
            "(wrk runs on the same cores, so the native server's throughput is bounded by wrk itself)",
        ] + ([
            f"- pure hello, wasmhost / `wasmtime serve`, fresh instance per request: "
            f"**{host['wasmhost_vs_wasmtime_fresh']}x** (target ≥ 2.0x); with reuse: "
            f"**{host['wasmhost_vs_wasmtime_reuse']}x** (target ≥ 1.5x); wasmhost with reuse / native hyper: "
            f"{host['wasmhost_reuse_vs_native']}x",
        ] if "wasmhost_vs_wasmtime_fresh" in host else []) + ([
            f"- candidate wasmhost ({host.get('candidate', '')}) `/hello` / current wasmhost: "
            f"**{host['candidate_hello_vs_hello']}x**; / native: **{host['candidate_hello_vs_native']}x**",
        ] if "candidate_hello_vs_hello" in host else []) + [
            "",
        ]

    compare = report.get("compare")
    if compare:
        lines += [
            f"## Previous build ({compare['label']}) against the current one",
            "",
            f"One replica each, called directly, on the same database; {compare['connections']} connections, "
            f"{compare['seconds']}s per run, {compare['rounds']} interleaved rounds (previous, current, ...), "
            "median round shown.",
            "",
            "| scenario | previous req/s | current req/s | current / previous | previous p99 ms | current p99 ms "
            "| previous SQL/req | current SQL/req | previous replica CPU ms/req | current replica CPU ms/req "
            "| previous peak RSS MiB | current peak RSS MiB | rounds (previous; current) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for scenario, entry in compare["scenarios"].items():
            prev, cur = entry["previous"], entry["current"]
            lines.append(
                f"| `{scenario}` | {fmt(prev['rps'])} | {fmt(cur['rps'])} | **{entry['ratio']}x** "
                f"| {fmt(prev['latency_ms']['p99'], 1)} | {fmt(cur['latency_ms']['p99'], 1)} "
                f"| {fmt(prev.get('sql_per_request'), 2)} | {fmt(cur.get('sql_per_request'), 2)} "
                f"| {fmt(prev.get('replica_cpu_ms_per_request'), 2)} | {fmt(cur.get('replica_cpu_ms_per_request'), 2)} "
                f"| {fmt(peak_rss(prev))} | {fmt(peak_rss(cur))} "
                f"| {', '.join(fmt(x, 0) for x in prev['rounds_rps'])}; {', '.join(fmt(x, 0) for x in cur['rounds_rps'])} |"
            )
        create = compare["scenarios"].get("create_article", {})
        if "tags_rows_updated" in create:
            updated = create["tags_rows_updated"]
            lines += ["", f"- Rows of `tags` updated during the create runs (`pg_stat_user_tables.n_tup_upd`): "
                          f"previous build {updated['previous']}, current build {updated['current']}"]
        hashes = compare.get("argon2")
        if hashes:
            if "wasm_median_ms" in hashes:
                lines += [
                    f"- Password hash ({hashes['params']}), one program (bench/argon2-hash) built natively and "
                    f"for wasm32-wasip2 (`wasmtime run`), {hashes.get('rounds', 1)} interleaved rounds of "
                    f"{hashes.get('iterations', '?')} hashes: native {hashes['native_median_ms']} ms median "
                    f"({hashes['native_min_ms']} ms best), WebAssembly {hashes['wasm_median_ms']} ms median "
                    f"({hashes['wasm_min_ms']} ms best): **{hashes['wasm_vs_native']}x** native; medians by round: "
                    f"native {', '.join(fmt(x, 1) for x in hashes['native_rounds_ms'])}; "
                    f"WebAssembly {', '.join(fmt(x, 1) for x in hashes['wasm_rounds_ms'])}",
                ]
            lines += [
                f"- Password hash ({hashes['params']}): native "
                f"{hashes['native_median_ms']} ms median, {hashes['native_min_ms']} ms best; a login at one "
                f"connection (the hash plus one SELECT), p50: previous build {hashes['previous_login_c1_p50_ms']} ms "
                f"(**{hashes['previous_vs_native']}x** native), current build {hashes['current_login_c1_p50_ms']} ms "
                f"(**{hashes['current_vs_native']}x** native)",
            ]
        lines.append("")

    reuse = report.get("reuse")
    if reuse:
        lines += [
            f"## Conduit with instance reuse (`WASMHOST_MAX_INSTANCE_REUSE={reuse['max_instance_reuse']}`) "
            "against a fresh instance per request",
            "",
            f"The same build, one replica each, called directly; {reuse['connections']} connections, "
            f"{reuse['seconds']}s per run, {reuse['rounds']} interleaved rounds, median round shown. "
            f"The reuse replica created {reuse['instances_created']:.0f} instances and reused them "
            f"{reuse['instances_reused']:.0f} times.",
            "",
            "| scenario | fresh req/s | reuse req/s | reuse / fresh | fresh p99 ms | reuse p99 ms "
            "| fresh replica CPU ms/req | reuse replica CPU ms/req | fresh peak RSS MiB | reuse peak RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for scenario, entry in reuse["scenarios"].items():
            fresh, reused = entry["fresh"], entry["reuse"]
            lines.append(
                f"| `{scenario}` | {fmt(fresh['rps'])} | {fmt(reused['rps'])} | **{entry['ratio']}x** "
                f"| {fmt(fresh['latency_ms']['p99'], 1)} | {fmt(reused['latency_ms']['p99'], 1)} "
                f"| {fmt(fresh.get('replica_cpu_ms_per_request'), 3)} | {fmt(reused.get('replica_cpu_ms_per_request'), 3)} "
                f"| {fmt(peak_rss(fresh))} | {fmt(peak_rss(reused))} |"
            )
        lines.append("")

    counts = report.get("counts")
    if counts:
        kept, not_kept = counts["kept"], counts["not_kept"]
        lines += [
            "## What keeping `articlesCount` costs article creation",
            "",
            f"`create_article` on one replica, called directly; {counts['connections']} connections, "
            f"{counts['seconds']}s per run, {counts['rounds']} interleaved rounds, median round shown; between runs "
            f"the triggers that keep the counts (`{'`, `'.join(counts['triggers'])}`) are enabled or disabled. "
            f"Counts exact after the comparison: {'yes' if counts['counts_exact_after'] else '**no**'}.",
            "",
            "| counts | req/s | p99 ms | replica CPU ms/req | PostgreSQL CPU ms/req | req/s each round |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for label, run in (("kept by the triggers (as deployed)", kept), ("not kept (triggers off)", not_kept)):
            lines.append(
                f"| {label} | {fmt(run['rps'])} | {fmt(run['latency_ms']['p99'], 1)} "
                f"| {fmt(run.get('replica_cpu_ms_per_request'), 3)} | {fmt(run.get('postgres_cpu_ms_per_request'), 3)} "
                f"| {', '.join(fmt(x, 0) for x in run['rounds_rps'])} |"
            )
        lines += ["", f"- kept / not kept: **{counts['ratio']}x**", ""]
    tracing = report.get("tracing")
    if tracing:
        lines += [
            "## Conduit with OpenTelemetry traces off, at 100% and at 10% sampling",
            "",
            f"The same build, three fresh replicas per scenario, called directly; {tracing['connections']} "
            f"connections, {tracing['seconds']}s per run, {tracing['rounds']} interleaved rounds, median round "
            f"shown. The traced replicas export over OTLP ({tracing['protocol']}) to `bench otlp-sink`, one "
            "receiver each; a replica's spans (counted after it stopped and flushed its last batch) are divided "
            "by the requests it answered. Environment on top of the stack's: "
            + "; ".join(f"`{variant}` " + (", ".join(f"`{k}={v}`" for k, v in env.items()) or "no OTLP endpoint")
                        for variant, env in tracing["variants"].items())
            + (f". The sink used {tracing['sink_cpu_ms_per_1000_spans']} ms of CPU per 1,000 spans."
               if tracing.get("sink_cpu_ms_per_1000_spans") is not None else "."),
            "",
            "| scenario | tracing | req/s | / off | p99 ms | replica CPU ms/req | / off | peak RSS MiB "
            "| spans/req | spans (exports) | req/s each round |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        labels = {"off": "off", "on_100": "on, 100%", "on_10": "on, 10%"}
        for scenario, entry in tracing["scenarios"].items():
            for variant in [v for v in ("off", "on_100", "on_10") if v in entry]:
                run = entry[variant]
                spans = f"{run['spans']} ({run['exports']})" if "spans" in run else "-"
                lines.append(
                    f"| `{scenario}` | {labels[variant]} | {fmt(run['rps'])} "
                    f"| {('**' + fmt(run['rps_vs_off'], 2) + 'x**') if run.get('rps_vs_off') is not None else '-'} "
                    f"| {fmt(run['latency_ms']['p99'], 1)} | {fmt(run.get('replica_cpu_ms_per_request'), 3)} "
                    f"| {(fmt(run['cpu_vs_off'], 2) + 'x') if run.get('cpu_vs_off') is not None else '-'} "
                    f"| {fmt(run.get('replica_peak_rss_mib_final', peak_rss(run)))} "
                    f"| {fmt(run.get('spans_per_request'), 2)} | {spans} "
                    f"| {', '.join(fmt(x, 0) for x in run['rounds_rps'])} |"
                )
        lines.append("")

    levels = report["levels"]
    lines += ["## Conduit scenarios", ""] if report["targets"] else []
    for target in report["targets"]:
        lines += [f"### {target['label']}", ""]
        lines += [
            "| scenario | conns | req/s | 2xx/s | p50 ms | p90 ms | p99 ms | max ms | errors | 429 | SQL/req | replica CPU ms/req | PG CPU ms/req | nginx CPU ms/req | peak RSS MiB per replica |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for scenario in report["scenarios"]:
            for run in target["runs"].get(scenario, []):
                lat = run["latency_ms"]
                rss = " / ".join(f"{v:.0f}" for v in run["replica_peak_rss_mib"].values())
                lines.append(
                    f"| {scenario} | {run['connections']} | {fmt(run['rps'])} | {fmt(run['ok'] / run['seconds'])} "
                    f"| {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} "
                    f"| {fmt(lat['p99'], 2)} | {fmt(lat['max'], 2)} | {run['errors']} | {run['rate_limited_429']} "
                    f"| {fmt(run['sql_per_request'], 2)} | {fmt(run['replica_cpu_ms_per_request'], 2)} "
                    f"| {fmt(run['postgres_cpu_ms_per_request'], 2)} "
                    f"| {fmt(run['nginx_cpu_ms_per_request'], 2) if target['key'] == 'nginx' else '-'} | {rss} |"
                )
        lines.append("")

    if report["pgbench"] or host:
        lines += ["## Baselines", ""]
    if report["pgbench"]:
        lines += ["### pgbench: the article list's SQL (anonymous viewer, limit 20)", ""]
        lines += [
            "| clients | tx/s | p50 ms | p90 ms | p99 ms | max ms | failed | list through one replica, req/s | ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    direct = next((t for t in report["targets"] if t["key"] == "direct"), None)
    for run in report["pgbench"]:
        api = None
        if direct:
            api = next((r for r in direct["runs"].get("list_anon", []) if r["connections"] == run["requested_connections"]), None)
        lat = run["latency_ms"]
        ratio = round(api["rps"] / run["rps"], 2) if api and run["rps"] else None
        clients = str(run["connections"])
        if run["connections"] != run["requested_connections"]:
            clients = f"{run['connections']} (for {run['requested_connections']})"
        lines.append(
            f"| {clients} | {fmt(run['rps'])} | {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | {fmt(lat['p99'], 2)} "
            f"| {fmt(lat['max'], 2)} | {run['errors']} | {fmt(api['rps']) if api else '-'} | {fmt(ratio, 2)} |"
        )
    if host:
        lines += ["", "### hello component (wasmhost, one process)", ""]
        lines += [
            "| conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | CPU ms/req |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run in host["hello_levels"]:
            lat = run["latency_ms"]
            lines.append(
                f"| {run['connections']} | {fmt(run['rps'])} | {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} "
                f"| {fmt(lat['p99'], 2)} | {fmt(lat['max'], 2)} | {run['errors']} | {fmt(run['replica_cpu_ms_per_request'], 3)} |"
            )
    lines += ["", f"Chart: [{report['chart']}]({report['chart']})" if report.get("chart") else ""]
    if report.get("explain"):
        lines += ["", f"Plan of the list query: [{report['explain']}]({report['explain']})"]
    if report.get("explain_feed"):
        lines += ["", f"Plan of the feed query: [{report['explain_feed']}]({report['explain_feed']})"]
    if report.get("profiles"):
        lines += ["", "Profiles: " + ", ".join(f"[{p}]({p})" for p in report["profiles"])]
    if levels:
        lines += ["", "Levels: " + ", ".join(map(str, levels)), ""]
    if report.get("tls"):
        lines += [""] + tls_compare.markdown(report["tls"])
        if report["tls"].get("chart"):
            lines += [f"Chart: [{report['tls']['chart']}]({report['tls']['chart']})", ""]
    return "\n".join(lines)


def compare_chart(report: dict, path: Path, plt) -> bool:
    """Previous against current build: req/s and p99 per scenario, as bars."""
    compare = report["compare"]
    names = list(compare["scenarios"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.38
    for axis, (title, value) in zip(axes, (
        ("requests per second (median round)", lambda run: run["rps"]),
        ("p99 latency, ms", lambda run: run["latency_ms"]["p99"]),
    )):
        for offset, key, label in ((-width / 2, "previous", compare["label"]), (width / 2, "current", "current build")):
            axis.bar([i + offset for i in range(len(names))],
                     [value(compare["scenarios"][n][key]) for n in names], width, label=label)
        axis.set_xticks(range(len(names)), names, rotation=20)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"One replica, {compare['connections']} connections, {compare['rounds']} interleaved rounds")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def pyplot():
    """matplotlib's pyplot drawing to files, or None when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no chart")
        return None
    return plt


def chart(report: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    targets = report["targets"]
    if not targets:
        return compare_chart(report, path, plt) if report.get("compare") else False
    fig, axes = plt.subplots(2, len(targets), figsize=(7 * len(targets), 9), squeeze=False)
    for column, target in enumerate(targets):
        for scenario in report["scenarios"]:
            runs = target["runs"].get(scenario, [])
            if not runs:
                continue
            # Successful responses only: nginx's 429s for login are cheap and
            # would draw a throughput the API never delivered. Latency is left
            # out where most responses were 429s, for the same reason.
            x = [r["connections"] for r in runs]
            axes[0][column].plot(x, [r["ok"] / r["seconds"] for r in runs], marker="o", label=scenario)
            answered = [r for r in runs if r["ok"] >= r["rate_limited_429"]]
            if answered:
                axes[1][column].plot(
                    [r["connections"] for r in answered], [r["latency_ms"]["p99"] for r in answered],
                    marker="o", label=scenario,
                )
        baselines = [("pgbench list SQL", report["pgbench"], "k--")]
        if report.get("host"):
            baselines.append(("hello component", report["host"]["hello_levels"], "k:"))
        for label, runs, style in baselines:
            x = [r.get("requested_connections", r["connections"]) for r in runs]
            axes[0][column].plot(x, [r["rps"] for r in runs], style, label=label)
            axes[1][column].plot(x, [r["latency_ms"]["p99"] for r in runs], style, label=label)
        for row, ylabel in enumerate(("successful requests/s", "p99 latency (ms)")):
            ax = axes[row][column]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{target['label']}: {ylabel}")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][column].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Conduit on wasmhost, {report['machine']['nproc']} shared cores ({report['name']})")
    fig.tight_layout()
    fig.savefig(path)
    return True


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=datetime.date.today().isoformat())
    parser.add_argument("--levels", default="1,8,32,64,128,256")
    parser.add_argument("--duration", type=int, default=6, help="seconds per scenario run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--targets", default="nginx,direct")
    parser.add_argument("--users", type=int, default=120)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--host-connections", type=int, default=32)
    parser.add_argument("--host-duration", type=int, default=5)
    parser.add_argument("--host-rounds", type=int, default=3)
    parser.add_argument("--candidate-wasmhost", type=Path, help="a second wasmhost build to compare in the host benchmark")
    parser.add_argument("--candidate-label", default="candidate", help="what the candidate build changes")
    parser.add_argument("--previous", type=Path,
                        help="a previous build (a directory with wasmhost and conduit.wasm) to compare with the current one")
    parser.add_argument("--previous-label", default="previous build", help="which build --previous holds")
    parser.add_argument("--compare-scenarios", default="create_article,feed,login,list_auth,article")
    parser.add_argument("--compare-connections", type=int, default=64)
    parser.add_argument("--compare-duration", type=int, default=10)
    parser.add_argument("--compare-rounds", type=int, default=3)
    parser.add_argument("--reuse-scenarios", default="",
                        help="Conduit scenarios measured with instance reuse against without (e.g. article)")
    parser.add_argument("--count-cost", action="store_true",
                        help="measure create_article with the articlesCount triggers on and off, interleaved")
    parser.add_argument("--reuse-count", type=int, default=1000, help="WASMHOST_MAX_INSTANCE_REUSE of the reuse runs")
    parser.add_argument("--tracing-scenarios", default="",
                        help="Conduit scenarios measured with OpenTelemetry traces off, at 100%% and at 10%% sampling "
                             "(e.g. article)")
    parser.add_argument("--wasmtime", type=Path, help="`wasmtime` CLI: its `serve` runs the hello component too")
    parser.add_argument("--skip-host", action="store_true")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--max-concurrency", type=int, default=256)
    parser.add_argument("--pg-pool-size", type=int, default=16)
    parser.add_argument("--pgbench-max-clients", type=int, default=128,
                        help="devstack's PostgreSQL allows 200 connections; the replicas' pools hold up to 48")
    parser.add_argument("--bench-bin", type=Path)
    parser.add_argument("--wasmhost", type=Path, default=ROOT / "target/release/wasmhost")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--command", default=" ".join(sys.argv))
    parser.add_argument("--render", type=Path, help="only write the Markdown and chart again from a report's JSON")
    tls_compare.add_arguments(parser)
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        if report.get("chart"):
            chart(report, args.render.with_suffix(".svg"))
        args.render.with_suffix(".md").write_text(markdown(report))
        return 0
    args.levels = [int(x) for x in args.levels.split(",") if x]
    args.compare_scenarios = [s for s in args.compare_scenarios.split(",") if s]
    args.reuse_scenarios = [s for s in args.reuse_scenarios.split(",") if s]
    args.tracing_scenarios = [s for s in args.tracing_scenarios.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    started = datetime.datetime.now(datetime.timezone.utc)
    deadline_note = time.monotonic()

    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    state = machine_state()
    log(f"nproc={state['nproc']} load={state['load']} command: {args.command}")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0:1]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

    # What was measured: the binaries as built, and any uncommitted change
    # to the code they come from (others may be editing while this runs).
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--short", "--", "host", "components", "devstack", "docker/nginx"],
        capture_output=True, text=True,
    ).stdout.split("\n")
    artifacts = {}
    for artifact in (args.wasmhost, ROOT / "target/wasm32-wasip2/release/conduit.wasm",
                     ROOT / "target/wasm32-wasip2/release/test_app.wasm"):
        if artifact.exists():
            built = datetime.datetime.fromtimestamp(artifact.stat().st_mtime, datetime.timezone.utc)
            artifacts[str(artifact.relative_to(ROOT)) if artifact.is_relative_to(ROOT) else str(artifact)] = (
                built.isoformat(timespec="seconds")
            )

    procs = Processes()
    work_dir = Path(tempfile.mkdtemp(prefix="conduit-bench-"))
    data_dir = work_dir / "data"
    data_dir.mkdir()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict = {
        "name": args.name,
        "command": args.command,
        "commit": commit,
        "uncommitted_changes": [line for line in status if line.strip()],
        "artifacts_built": artifacts,
        "started": started.isoformat(timespec="seconds"),
        "machine": {"nproc": state["nproc"], "cpu": cpu, "load_start": state["load"]},
        "wrk_version": wrk_version[0].split(" [")[0] if wrk_version else "wrk",
        "duration": args.duration,
        "levels": args.levels,
        "scenarios": scenarios,
        "targets": [],
        "pgbench": [],
        "profiles": [],
    }
    try:
        # Run private copies: someone rebuilding target/ during the run would
        # otherwise change what is measured, and perf could no longer read
        # the symbols of the binary it sampled.
        for attribute, file_name in (("wasmhost", "wasmhost"), ("candidate_wasmhost", "wasmhost-candidate")):
            original = getattr(args, attribute)
            if original:
                copy = work_dir / file_name
                shutil.copy2(original, copy)
                setattr(args, attribute, copy)
        args.previous_wasmhost = None
        if args.previous:
            args.previous_wasmhost = work_dir / "wasmhost-previous"
            shutil.copy2(args.previous / "wasmhost", args.previous_wasmhost)
        log("starting the stack (private PostgreSQL, 3 replicas, nginx)")
        stack = procs.start(
            [
                str(args.bench_bin),
                "stack",
                "--root",
                str(ROOT),
                "--state-dir",
                str(work_dir / "stack"),
                "--replicas",
                "3",
                "--env",
                f"WASMHOST_MAX_CONCURRENCY={args.max_concurrency}",
                "--env",
                f"WASMHOST_PG_POOL_SIZE={args.pg_pool_size}",
                "--env",
                "RUST_LOG=warn",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, WASMHOST_BIN=str(args.wasmhost)),
        )
        description = json.loads(stack.stdout.readline() or "null")
        if description is None:
            raise RuntimeError("the stack did not start (see its output above)")
        replicas = [Replica(r["name"], r["api_url"], r["admin_url"], r["pid"]) for r in description["replicas"]]
        database_url = description["app_database_url"]
        pg_dir = Path(description["postgres_data_dir"])
        postgres_pid = int((pg_dir / "postmaster.pid").read_text().split()[0])
        nginx_pid = pid_of(description["nginx_pid_file"])
        report["stack"] = {
            "replicas": len(replicas),
            "max_concurrency": args.max_concurrency,
            "pg_pool_size": args.pg_pool_size,
        }
        log(f"stack up at {description['url']}; replicas {[r.api_url for r in replicas]}")

        report["seed"] = seed(replicas[0].api_url, database_url, data_dir, args.users, args.articles, random.Random(20240611))

        args.results.mkdir(parents=True, exist_ok=True)
        explain = args.results / f"{args.name}-explain-list.txt"
        explain.write_text(explain_list_query(database_url))
        report["explain"] = explain.name
        explain_feed = args.results / f"{args.name}-explain-feed.txt"
        explain_feed.write_text(explain_feed_query(database_url))
        report["explain_feed"] = explain_feed.name

        if args.tls_scenarios:
            report["tls"] = tls_compare.run(
                args, description, replicas, postgres_pid, data_dir, database_url,
                run_wrk=run_wrk, measured=measured, reset_data=reset_data, median_run=median_run,
                pid_of=pid_of, log=log,
            )

        if args.reuse_scenarios:
            report["reuse"] = reuse_comparison(procs, args, replicas, database_url, postgres_pid, data_dir)

        if args.tracing_scenarios:
            report["tracing"] = tracing_comparison(procs, args, replicas, database_url, postgres_pid, data_dir)
        if args.count_cost:
            report["counts"] = counts_comparison(args, replicas, description["owner_database_url"],
                                                 database_url, postgres_pid, data_dir)

        if args.previous:
            report["compare"] = compare_builds(procs, args, work_dir, replicas, database_url, postgres_pid, data_dir)

        if not args.skip_host:
            report["host"] = host_benchmark(procs, args, work_dir, database_url, postgres_pid, data_dir)
            report["host"]["candidate"] = args.candidate_label if args.candidate_wasmhost else None
            for key in ("profile", "candidate_profile"):
                if report["host"].get(key):
                    report["profiles"].append(report["host"][key])

        targets = {
            "nginx": {"key": "nginx", "label": f"through nginx, {len(replicas)} replicas", "url": description["url"]},
            "direct": {"key": "direct", "label": "one replica directly", "url": replicas[0].api_url},
        }
        for key in [k for k in args.targets.split(",") if k]:
            target = dict(targets[key], runs={})
            for level in args.levels:
                for scenario in scenarios:
                    result = measured(
                        replicas, postgres_pid, nginx_pid,
                        lambda: run_wrk(target["url"], scenario, level, args.duration, data_dir),
                    )
                    target["runs"].setdefault(scenario, []).append(result)
                    log(
                        f"{key} {scenario} c={level}: {result['rps']} req/s p99 {result['latency_ms']['p99']} ms "
                        f"errors {result['errors']} 429 {result['rate_limited_429']} SQL/req {fmt(result['sql_per_request'], 2)}"
                    )
                    reset_data(database_url, scenario)
            report["targets"].append({k: v for k, v in target.items() if k != "url"})

        for level in args.levels:
            clients = min(level, args.pgbench_max_clients)
            run = run_pgbench(database_url, clients, args.duration)
            run["requested_connections"] = level
            report["pgbench"].append(run)
            log(f"pgbench c={clients}: {run['rps']} tx/s p99 {run['latency_ms']['p99']} ms")

        args.results.mkdir(parents=True, exist_ok=True)
        if not args.no_profile:
            for scenario in ("list_anon", "login"):
                out = args.results / f"{args.name}-profile-{scenario}.txt"
                if profile(args, replicas[0].pid, replicas[0].api_url, scenario, data_dir, out):
                    report["profiles"].append(out.name)
                    log(f"profile written: {out}")
    finally:
        procs.stop_all()
        shutil.rmtree(work_dir, ignore_errors=True)

    report["machine"]["load_end"] = machine_state()["load"]
    report["elapsed_seconds"] = round(time.monotonic() - deadline_note, 1)
    chart_path = args.results / f"{args.name}.svg"
    if chart(report, chart_path):
        report["chart"] = chart_path.name
    if report.get("tls"):
        tls_chart = args.results / f"{args.name}-tls.svg"
        if tls_chart_written(report["tls"], tls_chart):
            report["tls"]["chart"] = tls_chart.name
    (args.results / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / f"{args.name}.md").write_text(markdown(report))
    log(f"report: {args.results / (args.name + '.md')} ({report['elapsed_seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
