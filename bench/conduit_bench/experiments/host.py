"""The host benchmark: what wasmhost itself costs.

The test fixture component (host/tests/fixtures/test-app) in its own
wasmhost processes: `/hello` against `bench native-hello` (a native hyper
server answering the same text), and `/pg/one` (one parameterised one-row
query) with the prepared-statement cache on and off, at `--host-connections`
and at one connection. With `--wasmtime`, the pure hello component
(bench/hello) on wasmhost and on `wasmtime serve`, each fresh per request
and with instance reuse; with `--candidate-wasmhost`, a second host build
beside the first.

Every server runs at once and the runs alternate over several rounds, so
that a burst of someone else's work on the shared machine hits all of them
alike; each figure is the round with the median throughput. The hello
component is then measured at every concurrency level of the Conduit
scenarios (the "runtime alone" baseline, shown with the baselines).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from ..common import HELLO_WASM, log
from ..formatting import fmt
from ..load import run_wrk
from ..measure import measured, median_run
from ..processes import (
    Replica,
    start_hello_wasmhost,
    start_native_hello,
    start_test_app,
    start_wasmtime_serve,
    test_app_manifest,
)
from ..procfs import TICK_MS, cpu_ticks
from ..profiling import profile
from .base import Context, Experiment


def add_arguments(parser) -> None:
    group = parser.add_argument_group("host benchmark")
    group.add_argument("--skip-host", action="store_true")
    group.add_argument("--host-connections", type=int, default=32)
    group.add_argument("--host-duration", type=int, default=5)
    group.add_argument("--host-rounds", type=int, default=3)
    group.add_argument("--candidate-wasmhost", type=Path, help="a second wasmhost build to compare in the host benchmark")
    group.add_argument("--candidate-label", default="candidate", help="what the candidate build changes")


@dataclass(frozen=True)
class Settings:
    connections: int
    seconds: int
    rounds: int
    levels: list[int]           # the hello component's levels, as the Conduit scenarios'
    level_seconds: int
    candidate: Path | None
    candidate_label: str
    wasmtime: Path | None       # `wasmtime serve` beside wasmhost on the hello component
    reuse_count: int
    profile_seconds: int | None  # None: no profiles

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if args.skip_host:
            return None
        return cls(args.host_connections, args.host_duration, args.host_rounds, args.levels, args.duration,
                   args.candidate_wasmhost, args.candidate_label, args.wasmtime, args.reuse_count,
                   None if args.no_profile else args.profile_seconds)


@dataclass
class Servers:
    """Everything the host benchmark runs at once."""

    native_url: str
    native_pid: int
    cached: Replica
    uncached: Replica
    candidate: Replica | None
    # The pure hello component: (plan key, the server's pid, its URL, its Replica when it is a wasmhost).
    hello: list[tuple[str, int, str, Replica | None]] = field(default_factory=list)
    children: list = field(default_factory=list)


def start_servers(settings: Settings, context: Context, candidate_wasmhost: Path | None) -> Servers:
    procs, work_dir, database_url = context.procs, context.work_dir, context.stack.database_url
    manifest = test_app_manifest(work_dir)
    cache_dir = work_dir / "test-app-cache"
    native, native_url = start_native_hello(procs, context.bench_bin)
    cached_child, cached = start_test_app(procs, context.wasmhost, manifest, database_url, True, cache_dir)
    uncached_child, uncached = start_test_app(procs, context.wasmhost, manifest, database_url, False, cache_dir)
    servers = Servers(native_url, native.pid, cached, uncached, None, children=[native, cached_child, uncached_child])
    if candidate_wasmhost:
        child, servers.candidate = start_test_app(procs, candidate_wasmhost, manifest, database_url, True,
                                                  work_dir / "candidate-cache")
        servers.children.append(child)
    if settings.wasmtime and HELLO_WASM.exists():
        for reuse in (1, settings.reuse_count):
            kind = "fresh" if reuse == 1 else "reuse"
            child, replica = start_hello_wasmhost(procs, context.wasmhost, work_dir, reuse)
            servers.hello.append((f"hello_wasmhost_{kind}", child.pid, replica.api_url, replica))
            servers.children.append(child)
            child, url = start_wasmtime_serve(procs, settings.wasmtime, reuse)
            servers.hello.append((f"hello_wasmtime_{kind}", child.pid, url, None))
            servers.children.append(child)
    elif settings.wasmtime:
        log(f"{HELLO_WASM} is missing: build bench/hello for wasm32-wasip2 to compare with wasmtime serve")
    return servers


def measurement_plan(settings: Settings, context: Context, servers: Servers) -> dict[str, Callable[[], dict]]:
    """Every figure of the rounds: its name and the run that measures it."""
    c, d, data_dir, postgres_pid = settings.connections, settings.seconds, context.data_dir, context.stack.postgres_pid

    def process_run(pid: int, url: str) -> Callable[[], dict]:
        """A server that is no wasmhost: CPU from /proc, no counters."""
        def action() -> dict:
            ticks_before = cpu_ticks(pid)
            run = run_wrk(url, "hello", c, d, data_dir, "/hello")
            run["replica_cpu_ms_per_request"] = (cpu_ticks(pid) - ticks_before) * TICK_MS / run["requests"]
            return run
        return action

    def app_run(replica: Replica, path: str, connections: int, pg: bool) -> Callable[[], dict]:
        return partial(measured, [replica], postgres_pid if pg else None, None,
                       partial(run_wrk, replica.api_url, "hello", connections, d, data_dir, path))

    plan = {
        "native_hello": process_run(servers.native_pid, servers.native_url),
        "wasmhost_hello": app_run(servers.cached, "/hello", c, False),
        "pg_one_cache_on": app_run(servers.cached, "/pg/one", c, True),
        "pg_one_cache_off": app_run(servers.uncached, "/pg/one", c, True),
        "pg_one_cache_on_c1": app_run(servers.cached, "/pg/one", 1, True),
        "pg_one_cache_off_c1": app_run(servers.uncached, "/pg/one", 1, True),
    }
    for key, pid, url, replica in servers.hello:
        plan[key] = app_run(replica, "/hello", c, False) if replica else process_run(pid, url)
    if servers.candidate:
        plan["candidate_hello"] = app_run(servers.candidate, "/hello", c, False)
        plan["candidate_pg_one"] = app_run(servers.candidate, "/pg/one", c, True)
    return plan


def measure_rounds(settings: Settings, context: Context, servers: Servers) -> dict[str, dict]:
    plan = measurement_plan(settings, context, servers)
    # Warm-up: compiled code paged in, pools filled, statement caches primed.
    for replica in [r for r in (servers.cached, servers.uncached, servers.candidate) if r]:
        run_wrk(replica.api_url, "hello", settings.connections, 1, context.data_dir, "/pg/one")
    rounds: dict[str, list[dict]] = {name: [] for name in plan}
    for round_number in range(settings.rounds):
        for name, action in plan.items():
            rounds[name].append(action())
        log(f"host round {round_number + 1}: " + ", ".join(f"{n} {r[-1]['rps']}" for n, r in rounds.items()))
    return {name: median_run(runs) for name, runs in rounds.items()}


def hello_levels(settings: Settings, context: Context, replica: Replica) -> list[dict]:
    """The hello baseline at every level of the Conduit runs: the runtime's
    cost without any database work."""
    runs = []
    for level in settings.levels:
        runs.append(measured([replica], None, None, partial(run_wrk, replica.api_url, "hello", level,
                                                            settings.level_seconds, context.data_dir, "/hello")))
        log(f"hello c={level}: {runs[-1]['rps']} req/s")
    return runs


def hello_profiles(settings: Settings, context: Context, servers: Servers) -> dict[str, str]:
    profiles = {}
    for key, replica, suffix in (("profile", servers.cached, "-profile-hello.txt"),
                                 ("candidate_profile", servers.candidate, "-profile-hello-candidate.txt")):
        if replica is None:
            continue
        written = profile(settings.profile_seconds, replica.pid, replica.api_url, "hello", context.data_dir,
                          context.results.path(suffix), "/hello")
        if written:
            profiles[key] = written
    return profiles


def ratios(results: dict) -> dict:
    def ratio(a: str, b: str) -> float:
        return round(results[a]["rps"] / results[b]["rps"], 2)

    out = {}
    if "hello_wasmtime_fresh" in results:
        out["wasmhost_vs_wasmtime_fresh"] = ratio("hello_wasmhost_fresh", "hello_wasmtime_fresh")
        out["wasmhost_vs_wasmtime_reuse"] = ratio("hello_wasmhost_reuse", "hello_wasmtime_reuse")
        out["wasmhost_reuse_vs_native"] = ratio("hello_wasmhost_reuse", "native_hello")
    out["hello_vs_native"] = ratio("wasmhost_hello", "native_hello")
    out["cache_on_vs_off"] = ratio("pg_one_cache_on", "pg_one_cache_off")
    out["cache_on_vs_off_c1"] = ratio("pg_one_cache_on_c1", "pg_one_cache_off_c1")
    # On a shared machine throughput is bounded by whoever else runs; CPU per
    # request says what each server itself costs.
    out["native_vs_hello_cpu_per_request"] = round(
        results["wasmhost_hello"]["replica_cpu_ms_per_request"] / results["native_hello"]["replica_cpu_ms_per_request"], 1
    )
    if "candidate_hello" in results:
        out["candidate_hello_vs_hello"] = ratio("candidate_hello", "wasmhost_hello")
        out["candidate_hello_vs_native"] = ratio("candidate_hello", "native_hello")
    return out


def run(settings: Settings, context: Context) -> dict:
    candidate_wasmhost = None
    if settings.candidate:
        # A private copy, as of the measured build (see runner).
        candidate_wasmhost = context.work_dir / "wasmhost-candidate"
        shutil.copy2(settings.candidate, candidate_wasmhost)
    servers = start_servers(settings, context, candidate_wasmhost)
    results: dict = {"connections": settings.connections, "seconds": settings.seconds, "rounds": settings.rounds}
    if servers.hello:
        results["reuse_count"] = settings.reuse_count
    results.update(measure_rounds(settings, context, servers))
    results["hello_levels"] = hello_levels(settings, context, servers.cached)
    if settings.profile_seconds is not None:
        results.update(hello_profiles(settings, context, servers))
    for child in servers.children:
        context.procs.stop(child)
    results.update(ratios(results))
    results["candidate"] = settings.candidate_label if settings.candidate else None
    return results


ROWS = [
    ("native_hello", "native hyper `hello`"),
    ("wasmhost_hello", "wasmhost `/hello`"),
    ("pg_one_cache_on", "wasmhost `/pg/one`, statement cache on"),
    ("pg_one_cache_off", "wasmhost `/pg/one`, statement cache off"),
    ("pg_one_cache_on_c1", "wasmhost `/pg/one`, cache on, **1 connection**"),
    ("pg_one_cache_off_c1", "wasmhost `/pg/one`, cache off, **1 connection**"),
    ("hello_wasmhost_fresh", "wasmhost, pure hello component, fresh instance per request"),
    ("hello_wasmhost_reuse", "wasmhost, pure hello component, `--max-instance-reuse {reuse_count}`"),
    ("hello_wasmtime_fresh", "`wasmtime serve`, the same component, fresh instance per request"),
    ("hello_wasmtime_reuse", "`wasmtime serve --max-instance-reuse-count {reuse_count}`"),
    ("candidate_hello", "candidate wasmhost `/hello` ({candidate})"),
    ("candidate_pg_one", "candidate wasmhost `/pg/one` ({candidate})"),
]


def table(host: dict) -> list[str]:
    lines = [
        "| server | req/s (median) | req/s each round | p50 ms | p90 ms | p99 ms | max ms | errors | SQL/req | cache hits/misses | server CPU ms/req | PG CPU ms/req |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {"reuse_count": host.get("reuse_count"), "candidate": host.get("candidate", "")}
    for key, label in ROWS:
        if key not in host:
            continue
        r = host[key]
        lat = r["latency_ms"]
        cache = f"{r['statement_cache_hits']:.0f}/{r['statement_cache_misses']:.0f}" if "statement_cache_hits" in r else "-"
        lines.append(
            f"| {label.format(**names)} | {fmt(r['rps'])} | {', '.join(fmt(x, 0) for x in r.get('rounds_rps', []))} "
            f"| {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | {fmt(lat['p99'], 2)} "
            f"| {fmt(lat['max'], 2)} | {r['errors']} | {fmt(r.get('sql_per_request'), 2)} | {cache} "
            f"| {fmt(r.get('replica_cpu_ms_per_request'), 3)} | {fmt(r.get('postgres_cpu_ms_per_request'), 3)} |"
        )
    return lines


def findings(host: dict) -> list[str]:
    hello_ok = "meets" if host["hello_vs_native"] >= 0.5 else "misses"
    cache_ok = "meets" if host["cache_on_vs_off"] >= 1.3 else "misses"
    lines = [
        f"- hello through wasmhost / native hyper: **{host['hello_vs_native']}x** (target ≥ 0.5x: {hello_ok})",
        f"- `/pg/one` statement cache on / off: **{host['cache_on_vs_off']}x** at {host['connections']} connections "
        f"(target ≥ 1.3x: {cache_ok}); **{host.get('cache_on_vs_off_c1', '-')}x** at 1 connection",
        f"- CPU per request, wasmhost `/hello` / native hyper: {host['native_vs_hello_cpu_per_request']}x "
        "(wrk runs on the same cores, so the native server's throughput is bounded by wrk itself)",
    ]
    if "wasmhost_vs_wasmtime_fresh" in host:
        lines.append(
            f"- pure hello, wasmhost / `wasmtime serve`, fresh instance per request: "
            f"**{host['wasmhost_vs_wasmtime_fresh']}x** (target ≥ 2.0x); with reuse: "
            f"**{host['wasmhost_vs_wasmtime_reuse']}x** (target ≥ 1.5x); wasmhost with reuse / native hyper: "
            f"{host['wasmhost_reuse_vs_native']}x"
        )
    if "candidate_hello_vs_hello" in host:
        lines.append(
            f"- candidate wasmhost ({host.get('candidate', '')}) `/hello` / current wasmhost: "
            f"**{host['candidate_hello_vs_hello']}x**; / native: **{host['candidate_hello_vs_native']}x**"
        )
    return lines


def markdown(report: dict) -> list[str]:
    host = report.get("host")
    if not host:
        return []
    heading = (f"## Host benchmark ({host['connections']} connections unless marked, {host['seconds']}s per run, "
               f"{host.get('rounds', 1)} interleaved rounds, median shown)")
    return [heading, ""] + table(host) + [""] + findings(host) + [""]


EXPERIMENT = Experiment(key="host", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
