"""Key-value stores through one wasmhost replica (`--kv-backends`): the test
fixture's `/kv/default/KEY` (host/tests/fixtures/test-app, spin-sdk's
key-value interface) on each store the runtime-config file can name:

- `sqlite`: `type = "spin"`, a SQLite file under the replica's `--state-dir`
  (in the run's scratch directory; the report names its filesystem);
- `redis`: `type = "redis"`, a private `redis-server` on a free port without
  persistence (`--save '' --appendonly no`);
- `postgres`: `type = "postgres"`, a table in a scratch database created on
  the PostgreSQL server of `--kv-postgres-url` and dropped at the end.

One replica per store, all running at once. `--kv-keys` keys of
`--kv-value-bytes` bytes are seeded through the API first; `get` reads a
random seeded key and `set` overwrites one (scenario.lua's `kv_get` and
`kv_set`), so every store holds the same keys throughout. The runs take turns
store by store and operation by operation over `--kv-rounds` rounds, so that
a burst of someone else's work hits every store alike; each figure is the
median round.

Besides the replica's CPU per request, the store's own: redis-server's
process, and for PostgreSQL only the backends connected to the scratch
database (the server is shared with whatever else runs on the machine).
SQLite runs inside the replica, so its cost is in the replica's figure.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from ..common import log
from ..database import backend_ticks, database_url, psql
from ..formatting import fmt, rounds_rps, split_list
from ..load import run_wrk
from ..measure import measured, median_run
from ..processes import Processes, Replica, free_port, start_test_app, test_app_manifest
from ..procfs import TICK_MS, cpu_ticks, ticks_spent
from .base import Context, Experiment

BACKENDS = ("sqlite", "redis", "postgres")
OPERATIONS = ("get", "set")
# The fixture's route of the store every replica's runtime config defines.
STORE_PATH = "/kv/default/"


def add_arguments(parser) -> None:
    group = parser.add_argument_group("key-value stores through one wasmhost replica")
    group.add_argument("--kv-backends", type=split_list, default="",
                       help=f"stores measured, of {','.join(BACKENDS)} (empty: skip the key-value experiment)")
    group.add_argument("--kv-connections", type=int, default=32)
    group.add_argument("--kv-duration", type=int, default=5, help="seconds per run")
    group.add_argument("--kv-rounds", type=int, default=3)
    group.add_argument("--kv-keys", type=int, default=1000, help="keys seeded before the runs")
    group.add_argument("--kv-value-bytes", type=int, default=128, help="size of every value seeded and set")
    group.add_argument("--kv-postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                       help="a role that may create databases, on the server holding the PostgreSQL store")
    group.add_argument("--redis-server", default="redis-server", help="the redis-server program")


@dataclass(frozen=True)
class Settings:
    backends: list[str]
    connections: int
    seconds: int
    rounds: int
    keys: int
    value_bytes: int
    postgres_admin_url: str
    redis_server: str

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.kv_backends:
            return None
        unknown = [backend for backend in args.kv_backends if backend not in BACKENDS]
        if unknown:
            raise SystemExit(f"--kv-backends: unknown {', '.join(unknown)} (known: {', '.join(BACKENDS)})")
        return cls(args.kv_backends, args.kv_connections, args.kv_duration, args.kv_rounds, args.kv_keys,
                   args.kv_value_bytes, args.kv_postgres_url, args.redis_server)


@dataclass
class Backend:
    """One store and the replica in front of it."""

    name: str
    replica: Replica
    children: list[subprocess.Popen]                # the replica, and the store's server when it has one
    description: str                                # what the report says about the store
    store_ticks: Callable[[], dict[int, int]] | None = None  # CPU ticks so far per process of the store;
                                                             # None: the store runs inside the replica


def key_names(count: int) -> list[str]:
    return [f"key-{number:06d}" for number in range(1, count + 1)]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
            time.sleep(0.05)


def start_redis(procs: Processes, program: str, directory: Path) -> tuple[subprocess.Popen, int]:
    """A redis-server of its own, without persistence: (the process, its port)."""
    directory.mkdir(parents=True)
    port = free_port()
    child = procs.start([program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--dir", str(directory)], stdout=subprocess.DEVNULL)
    wait_listening(port)
    return child, port


def redis_version(program: str) -> str:
    out = subprocess.run([program, "--version"], capture_output=True, text=True).stdout
    version = next((part for part in out.split() if part.startswith("v=")), "v=?")
    return version[2:]


def process_ticks(pid: int) -> dict[int, int]:
    return {pid: cpu_ticks(pid)}


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding `path` (ext4, tmpfs, overlay)."""
    completed = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], capture_output=True, text=True)
    return completed.stdout.strip() or "an unknown filesystem"


def seed_keys(replica: Replica, keys: list[str], value: bytes) -> float:
    """Every key set through the replica, on one kept-alive connection;
    returns the seconds it took."""
    started = time.monotonic()
    parsed = urllib.parse.urlsplit(replica.api_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        for key in keys:
            conn.request("PUT", STORE_PATH + key, body=value)
            response = conn.getresponse()
            response.read()
            if response.status != 204:
                raise RuntimeError(f"{replica.name}: seeding {key} answered {response.status}")
    finally:
        conn.close()
    return round(time.monotonic() - started, 1)


def start_backends(settings: Settings, context: Context, kv_dir: Path, scratch_database: str) -> dict[str, Backend]:
    procs = context.procs
    manifest = test_app_manifest(context.work_dir)
    # Compiled once beforehand, so that every replica loads the component
    # from the cache and none carries the compiler's memory.
    cache_dir = kv_dir / "cache"
    subprocess.run([str(context.wasmhost), "compile", "--manifest", str(manifest), "--cache-dir", str(cache_dir)],
                   check=True, capture_output=True)
    backends: dict[str, Backend] = {}
    for name in settings.backends:
        state_dir = kv_dir / f"{name}-state"
        children = []
        if name == "sqlite":
            config = '[key_value_store.default]\ntype = "spin"\n'
            description = (f"SQLite file under `--state-dir` (WAL, `synchronous = NORMAL`), "
                           f"on {filesystem_of(kv_dir)}")
            store_ticks = None
        elif name == "redis":
            redis, port = start_redis(procs, settings.redis_server, kv_dir / "redis")
            children.append(redis)
            config = f'[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:{port}/0"\n'
            description = f"redis-server {redis_version(settings.redis_server)}, `--save '' --appendonly no`"
            store_ticks = partial(process_ticks, redis.pid)
        else:
            url = database_url(settings.postgres_admin_url, scratch_database)
            config = f'[key_value_store.default]\ntype = "postgres"\nurl = "{url}"\ntable = "spin_key_value"\n'
            version = psql(settings.postgres_admin_url, "SHOW server_version").split()[0]
            description = (f"PostgreSQL {version}, table `spin_key_value` in a scratch database; "
                           "store CPU counts only the backends connected to it")
            store_ticks = partial(backend_ticks, settings.postgres_admin_url, scratch_database)
        config_path = kv_dir / f"{name}-runtime-config.toml"
        config_path.write_text(config)
        child, replica = start_test_app(
            procs, context.wasmhost, manifest, context.stack.database_url, True, cache_dir,
            name=f"kv-{name}", options=["--runtime-config-file", str(config_path), "--state-dir", str(state_dir)],
        )
        backends[name] = Backend(name, replica, [child, *children], description, store_ticks)
    return backends


def measure_run(settings: Settings, backend: Backend, operation: str, data_dir: Path, seconds: int) -> dict:
    """One wrk run of `operation` on a store, with the replica's counters
    and the store's CPU over it."""
    load = partial(run_wrk, backend.replica.api_url, f"kv_{operation}", settings.connections, seconds, data_dir,
                   STORE_PATH, {"BENCH_KV_VALUE_BYTES": str(settings.value_bytes)})
    store_before = backend.store_ticks() if backend.store_ticks else None
    run = measured([backend.replica], None, None, load)
    if backend.store_ticks and run["host_requests"]:
        spent = ticks_spent(store_before, backend.store_ticks())
        run["store_cpu_ms_per_request"] = spent * TICK_MS / run["host_requests"]
    else:
        run["store_cpu_ms_per_request"] = None
    return run


def run(settings: Settings, context: Context) -> dict:
    kv_dir = context.work_dir / "key-value"
    kv_dir.mkdir()
    keys = key_names(settings.keys)
    (kv_dir / "kv_keys.txt").write_text("\n".join(keys) + "\n")
    value = b"v" * settings.value_bytes
    scratch_database = f"wasmhost_kv_bench_{os.getpid()}"
    uses_postgres = "postgres" in settings.backends
    if uses_postgres:
        psql(settings.postgres_admin_url, f"CREATE DATABASE {scratch_database}")
    backends: dict[str, Backend] = {}
    try:
        backends = start_backends(settings, context, kv_dir, scratch_database)
        results: dict = {
            "connections": settings.connections, "seconds": settings.seconds, "rounds": settings.rounds,
            "keys": settings.keys, "value_bytes": settings.value_bytes,
            "backends": {name: {"store": backend.description} for name, backend in backends.items()},
        }
        for name, backend in backends.items():
            results["backends"][name]["seed_seconds"] = seed_keys(backend.replica, keys, value)
            # Warm-up: compiled code paged in, connections opened, the
            # store's pages cached.
            measure_run(settings, backend, "get", kv_dir, 1)
        log(f"key-value: {settings.keys} keys seeded in each of {', '.join(backends)}")
        runs: dict[tuple[str, str], list[dict]] = {}
        for round_number in range(settings.rounds):
            for operation in OPERATIONS:
                for name, backend in backends.items():
                    runs.setdefault((name, operation), []).append(
                        measure_run(settings, backend, operation, kv_dir, settings.seconds))
            log(f"key-value round {round_number + 1}: " + ", ".join(
                f"{name} {operation} {values[-1]['rps']}" for (name, operation), values in runs.items()))
        for (name, operation), values in runs.items():
            results["backends"][name][operation] = median_run(values)
        return results
    finally:
        for backend in backends.values():
            for child in backend.children:
                context.procs.stop(child)
        if uses_postgres:
            psql(settings.postgres_admin_url, f"DROP DATABASE IF EXISTS {scratch_database} WITH (FORCE)")


def rss_after(run: dict) -> float | None:
    """The replica's RSS at the end of a run, in MiB: what it holds with
    its store open and in use (its peak is of the busiest moment)."""
    return next(iter(run.get("replica_rss_mib", {}).values()), None)


def markdown(report: dict) -> list[str]:
    kv = report.get("key_value")
    if not kv:
        return []
    lines = [
        "## Key-value stores through one wasmhost replica",
        "",
        f"The test fixture's `{STORE_PATH}KEY` (spin-sdk's key-value interface), one replica per store, called "
        f"directly; {kv['keys']} keys of {kv['value_bytes']} bytes seeded through the API; `get` reads a random "
        f"seeded key, `set` overwrites one (PUT). {kv['connections']} connections, {kv['seconds']}s per run, "
        f"{kv['rounds']} interleaved rounds (every store's get, then every store's set), median round shown.",
        "",
        "| store | operation | req/s (median) | req/s each round | p50 ms | p90 ms | p99 ms | max ms | errors "
        "| replica CPU ms/req | store CPU ms/req | replica RSS MiB after |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, backend in kv["backends"].items():
        for operation in OPERATIONS:
            run = backend[operation]
            latency = run["latency_ms"]
            lines.append(
                f"| {name} | {operation} | {fmt(run['rps'])} | {rounds_rps(run)} | {fmt(latency['p50'], 2)} "
                f"| {fmt(latency['p90'], 2)} | {fmt(latency['p99'], 2)} | {fmt(latency['max'], 2)} "
                f"| {run['errors']} | {fmt(run.get('replica_cpu_ms_per_request'), 3)} "
                f"| {fmt(run.get('store_cpu_ms_per_request'), 3)} | {fmt(rss_after(run))} |"
            )
    lines.append("")
    for name, backend in kv["backends"].items():
        lines.append(f"- {name}: {backend['store']}; {kv['keys']} keys seeded in {backend['seed_seconds']}s")
    lines.append("")
    if kv.get("chart"):
        lines += [f"Chart: [{kv['chart']}]({kv['chart']})", ""]
    return lines


def chart(report: dict, path: Path, plt) -> bool:
    """Requests per second and p99 latency per store, get and set side by side."""
    kv = report["key_value"]
    names = list(kv["backends"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    width = 0.38
    for axis, (title, value) in zip(axes, (
        ("requests per second (median round)", lambda run: run["rps"]),
        ("p99 latency, ms", lambda run: run["latency_ms"]["p99"]),
    )):
        for offset, operation in ((-width / 2, "get"), (width / 2, "set")):
            axis.bar([i + offset for i in range(len(names))],
                     [value(kv["backends"][name][operation]) for name in names], width, label=operation)
        axis.set_xticks(range(len(names)), names)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Key-value stores through one wasmhost replica, {kv['connections']} connections, "
                 f"{kv['rounds']} interleaved rounds ({report['name']})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


EXPERIMENT = Experiment(key="key_value", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown, chart=chart, chart_suffix="-kv")
