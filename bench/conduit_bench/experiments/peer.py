"""Conduit on wasmhost against another Conduit server (`--peer-command`),
for instance a native Rust one (bench/README.md says how to build
launchbadge/realworld-axum-sqlx for it).

Every server (a "side") gets a fresh database of its own on one PostgreSQL
cluster that this experiment starts (private_postgres: the stack's cluster
settings plus `pg_stat_statements`), its schema (`wasmhost migrate` with
migrations/ for wasmhost; the peer runs its own migrations when it starts),
the same data set seeded through its own API (the same size, random seed and
user names), then `VACUUM ANALYZE`. The sides:

- `wasmhost`: one replica as the stack runs one (the environment of the
  stack's first replica: the password routes' limits, the compiled-component
  cache, the run's concurrency and pool size), on its own database;
- `wasmhost-default` (`--peer-wasmhost`): `wasmhost serve` with default
  flags, given only the Spin variables and the compiled-component cache (so
  that it starts without compiling and the compiler is not in its peak RSS);
- the peer: `--peer-command`, started with `DATABASE_URL`, `BIND_ADDRESS`
  (127.0.0.1:PORT) and `PORT` in its environment and `{database_url}` and
  `{port}` in the command replaced, reached at http://127.0.0.1:PORT.

Each scenario runs on every side in turn, `--peer-rounds` times, the order
reversed every other round, so that drift on a shared machine hits every
side alike; the median round is shown. Per run: wrk's figures; CPU per
request of the server's processes, of the PostgreSQL backends connected to
its database and of wrk itself (from its rusage); SQL statements and their
execution time per request (pg_stat_statements, top-level statements); the
server's peak RSS (VmHWM). A run with any response other than 2xx, or any
socket error, is a failed run and is reported as failed, never as a speed.
"""

from __future__ import annotations

import os
import resource
import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from ..common import ROOT, log
from ..database import backend_ticks, delete_in_batches, psql
from ..formatting import fmt, ratio, rounds_rps, split_list
from ..load import run_wrk
from ..measure import median_run
from ..private_postgres import PrivatePostgres, remove, start_private_postgres
from ..processes import Processes, free_port, http_get, start_replica_like, start_wasmhost
from ..procfs import TICK_MS, memory_kib, process_tree, ticks_spent, tree_ticks
from ..seeding import SeedSize, seed
from .base import Context, Experiment

WASMHOST_VARIANTS = {
    "shipped": ("wasmhost", "wasmhost, the stack's replica settings"),
    "default": ("wasmhost-default", "wasmhost, default flags"),
}
PEER_KEY = "peer"
DEFAULT_SCENARIOS = "list_anon,list_auth,article,feed,tags,create_article,login"
# The seeded users' names: the same on every side.
RUN_TAG = "peer"
# Where the load's articles are deleted from after a create run: the first
# of these tables the server's schema has.
ARTICLE_TABLES = ("articles", "article")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("Conduit on wasmhost against another Conduit server")
    group.add_argument("--peer-command",
                       help="command that starts the other server on {database_url} and {port} (also given as "
                            "DATABASE_URL, BIND_ADDRESS and PORT); empty: skip this experiment")
    group.add_argument("--peer-label", default="peer", help="what the other server is, in the report")
    group.add_argument("--peer-env", action="append", default=[], metavar="NAME=VALUE",
                       help="more environment for the other server (repeatable)")
    group.add_argument("--peer-wasmhost", type=split_list, default="shipped,default",
                       help=f"wasmhost sides, of {','.join(WASMHOST_VARIANTS)}")
    group.add_argument("--peer-scenarios", type=split_list, default=DEFAULT_SCENARIOS)
    group.add_argument("--peer-connections", type=int, default=64)
    group.add_argument("--peer-duration", type=int, default=20, help="seconds per run")
    group.add_argument("--peer-rounds", type=int, default=2)
    group.add_argument("--peer-users", type=int, default=50)
    group.add_argument("--peer-articles", type=int, default=500)
    group.add_argument("--peer-follows", type=int, default=500)
    group.add_argument("--peer-favorites", type=int, default=1000)
    group.add_argument("--peer-comments", type=int, default=500)
    group.add_argument("--peer-ready-timeout", type=float, default=120.0,
                       help="seconds the other server may take to answer GET /api/tags")


@dataclass(frozen=True)
class Settings:
    command: str
    label: str
    env: dict[str, str]
    wasmhost_variants: list[str]
    scenarios: list[str]
    connections: int
    seconds: int
    rounds: int
    size: SeedSize
    ready_timeout: float

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.peer_command:
            return None
        unknown = [variant for variant in args.peer_wasmhost if variant not in WASMHOST_VARIANTS]
        if unknown:
            raise SystemExit(f"--peer-wasmhost: unknown {', '.join(unknown)} (known: {', '.join(WASMHOST_VARIANTS)})")
        malformed = [item for item in args.peer_env if "=" not in item]
        if malformed:
            raise SystemExit(f"--peer-env: expected NAME=VALUE, got {', '.join(malformed)}")
        size = SeedSize(args.peer_users, args.peer_articles, args.peer_follows, args.peer_favorites,
                        args.peer_comments)
        return cls(args.peer_command, args.peer_label, dict(item.split("=", 1) for item in args.peer_env),
                   args.peer_wasmhost, args.peer_scenarios, args.peer_connections, args.peer_duration,
                   args.peer_rounds, size, args.peer_ready_timeout)


@dataclass(frozen=True)
class Side:
    """One server under test, on its own database."""

    key: str
    label: str
    url: str
    child: subprocess.Popen
    database: str
    data_dir: Path


def side_database(key: str) -> str:
    return f"conduit_{key.replace('-', '_')}"


def wasmhost_env(cluster: PrivatePostgres, database: str, base: dict[str, str]) -> dict[str, str]:
    """`base` with the Spin variables pointing the component at `database`."""
    return {
        **base,
        "SPIN_VARIABLE_DB_URL": cluster.url(database),
        "SPIN_VARIABLE_DB_HOST": "127.0.0.1",
        "SPIN_VARIABLE_DB_PORT": str(cluster.port),
    }


def process_environment(pid: int) -> dict[str, str]:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)


def start_wasmhost_side(context: Context, cluster: PrivatePostgres, variant: str, database: str):
    """A wasmhost replica of the project's manifest on `database`: (its
    process, its API URL)."""
    subprocess.run([str(context.wasmhost), "migrate", "--database-url", cluster.url(database),
                    "--migrations-dir", str(ROOT / "migrations")], check=True, capture_output=True, cwd=ROOT)
    key = WASMHOST_VARIANTS[variant][0]
    first = context.stack.replicas[0]
    if variant == "shipped":
        extra = wasmhost_env(cluster, database, {})
        child, replica = start_replica_like(context.procs, first, key, context.wasmhost, ROOT / "spin.toml", extra)
        return child, replica.api_url
    stack_env = process_environment(first.pid)
    base = {name: value for name, value in os.environ.items() if not name.startswith("WASMHOST_")}
    env = wasmhost_env(cluster, database, {**base, "RUST_LOG": "warn",
                                           "SPIN_VARIABLE_JWT_SECRET": secrets.token_hex(32)})
    cache_dir = stack_env.get("WASMHOST_CACHE_DIR") or str(context.work_dir / "peer-component-cache")
    child, replica = start_wasmhost(context.procs, key, context.wasmhost, ROOT / "spin.toml",
                                    options=["--cache-dir", cache_dir], env=env, cwd=ROOT, ready_timeout=300.0)
    return child, replica.api_url


def start_peer(settings: Settings, procs: Processes, cluster: PrivatePostgres, work_dir: Path, database: str):
    """The other server on `database`, once it answers GET /api/tags: (its
    process, its URL)."""
    port = free_port()
    database_url = cluster.url(database)
    command = [part.replace("{database_url}", database_url).replace("{port}", str(port))
               for part in shlex.split(settings.command)]
    env = dict(os.environ, DATABASE_URL=database_url, BIND_ADDRESS=f"127.0.0.1:{port}", PORT=str(port),
               **settings.env)
    log_path = work_dir / "peer.log"
    with open(log_path, "wb") as log_file:
        # Its own working directory: no .env file of someone else's is read.
        child = procs.start(command, env=env, cwd=work_dir, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + settings.ready_timeout
    while not answers(f"{url}/api/tags"):
        if child.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {child.returncode}" if child.poll() is not None else "not ready in time"
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{settings.label} did not start ({state}); its output:\n{tail}")
        time.sleep(0.2)
    return child, url


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def prepare_side(settings: Settings, cluster: PrivatePostgres, key: str, label: str,
                 start: Callable[[str], tuple[subprocess.Popen, str]], work_dir: Path) -> tuple[Side, dict]:
    """A side on a fresh database: created, its server started by `start`
    (given the database's name, returning the process and its URL), seeded
    and vacuumed. Returns the side and what the report says about it."""
    database = side_database(key)
    psql(cluster.url(), f"CREATE DATABASE {database}")
    child, url = start(database)
    data_dir = work_dir / key
    seeded = seed(url, cluster.url(database), data_dir, settings.size, RUN_TAG)
    psql(cluster.url(database), "VACUUM ANALYZE")
    side = Side(key, label, url, child, database, data_dir)
    # Warm-up: code paged in, pool connections opened, the tables cached.
    run_wrk(url, "article", 8, 2, data_dir)
    log(f"peer: {label} seeded in {seeded['seconds']}s at {url}")
    return side, {"label": label, "seed": seeded, "password_hash": password_hash_scheme(cluster.url(database))}


def password_hash_scheme(database_url: str) -> str | None:
    """The scheme and parameters of the first stored password hash (the
    PHC string up to the salt, e.g. `$argon2id$v=19$m=19456,t=2,p=1`): the
    login's cost depends on them, and the servers may differ."""
    column = psql(database_url, "SELECT format('%I.%I', table_name, column_name) FROM information_schema.columns "
                                "WHERE table_schema = 'public' AND column_name LIKE '%password%' LIMIT 1")
    if not column:
        return None
    stored = psql(database_url, f"SELECT {column} FROM {column.split('.')[0]} LIMIT 1")
    return "$".join(stored.split("$")[:4]) if stored.startswith("$") else None


@dataclass(frozen=True)
class Reading:
    """The counters of one side at one moment."""

    server_ticks: int
    backend_ticks: dict[int, int]
    statements: float
    exec_ms: float

    @classmethod
    def take(cls, side: Side, cluster: PrivatePostgres) -> Reading:
        calls, exec_ms = psql(cluster.url(), (
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements s "
            f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{side.database}'")).split("|")
        return cls(tree_ticks(side.child.pid), backend_ticks(cluster.url(), side.database), float(calls),
                   float(exec_ms))


def children_cpu_ms() -> float:
    """CPU time of this process's finished children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def peak_rss_of_tree(pid: int) -> float:
    """The largest VmHWM among the server's processes, in MiB."""
    return round(max((memory_kib(p).get("VmHWM", 0) for p in process_tree(pid)), default=0) / 1024, 1)


def measure_run(settings: Settings, side: Side, scenario: str, cluster: PrivatePostgres) -> dict:
    before = Reading.take(side, cluster)
    client_before = children_cpu_ms()
    run = run_wrk(side.url, scenario, settings.connections, settings.seconds, side.data_dir)
    client_after = children_cpu_ms()
    after = Reading.take(side, cluster)
    requests = run["requests"]

    def per_request(value: float) -> float | None:
        return round(value / requests, 4) if requests else None

    run.update({
        "non_2xx": requests - run["ok"],
        "failed": run["errors"] > 0 or run["ok"] < requests or requests == 0,
        "server_cpu_ms_per_request": per_request((after.server_ticks - before.server_ticks) * TICK_MS),
        "postgres_cpu_ms_per_request": per_request(ticks_spent(before.backend_ticks, after.backend_ticks) * TICK_MS),
        "client_cpu_ms_per_request": per_request(client_after - client_before),
        "statements_per_request": per_request(after.statements - before.statements),
        "postgres_exec_ms_per_request": per_request(after.exec_ms - before.exec_ms),
        "server_peak_rss_mib": peak_rss_of_tree(side.child.pid),
    })
    return run


def delete_load_articles(database_url: str) -> None:
    """What a create run added, from whichever articles table the schema has."""
    for table in ARTICLE_TABLES:
        if psql(database_url, f"SELECT to_regclass('{table}') IS NOT NULL") == "t":
            delete_in_batches(database_url, table, "title LIKE 'Load article %'")


def median_with_failures(runs: list[dict]) -> dict:
    """The median round, with how many rounds failed and the non-2xx
    responses and socket errors of all rounds: one failed round fails the
    scenario, whichever round is the median."""
    chosen = median_run(runs)
    chosen["failed_rounds"] = sum(1 for run in runs if run["failed"])
    chosen["non_2xx_all_rounds"] = sum(run["non_2xx"] for run in runs)
    chosen["errors_all_rounds"] = sum(run["errors"] for run in runs)
    return chosen


def compare_scenario(settings: Settings, sides: list[Side], scenario: str, cluster: PrivatePostgres) -> dict:
    runs: dict[str, list[dict]] = {side.key: [] for side in sides}
    for round_number in range(settings.rounds):
        order = sides if round_number % 2 == 0 else list(reversed(sides))
        for side in order:
            runs[side.key].append(measure_run(settings, side, scenario, cluster))
            if scenario == "create_article":
                delete_load_articles(cluster.url(side.database))
        log(f"peer {scenario} round {round_number + 1}: " + ", ".join(
            f"{key} {values[-1]['rps']} req/s" + (f" FAILED ({values[-1]['non_2xx']} non-2xx, "
                                                  f"{values[-1]['errors']} errors)" if values[-1]["failed"] else "")
            for key, values in runs.items()))
    entry: dict = {key: median_with_failures(values) for key, values in runs.items()}
    peer = entry[PEER_KEY]
    entry["ratio_to_peer"] = {
        key: (ratio(run["rps"], peer["rps"]) if not run["failed_rounds"] and not peer["failed_rounds"] else None)
        for key, run in entry.items() if key != PEER_KEY
    }
    return entry


def run(settings: Settings, context: Context) -> dict:
    work_dir = context.work_dir / "peer"
    work_dir.mkdir()
    cluster = start_private_postgres(context.procs)
    psql(cluster.url(), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    log(f"peer: PostgreSQL {cluster.version} on port {cluster.port}, with pg_stat_statements")
    starts = [(*WASMHOST_VARIANTS[variant], partial(start_wasmhost_side, context, cluster, variant))
              for variant in settings.wasmhost_variants]
    starts.append((PEER_KEY, settings.label, partial(start_peer, settings, context.procs, cluster, work_dir)))
    sides: list[Side] = []
    try:
        results: dict = {
            "label": settings.label,
            "command": settings.command,
            "postgres": f"PostgreSQL {cluster.version}, a cluster of the run's own (the stack's settings, "
                        "max_connections=200, plus pg_stat_statements)",
            "connections": settings.connections, "seconds": settings.seconds, "rounds": settings.rounds,
            "sides": {}, "scenarios": {},
        }
        for key, label, start in starts:
            side, described = prepare_side(settings, cluster, key, label, start, work_dir)
            sides.append(side)
            results["sides"][key] = described
        for scenario in settings.scenarios:
            results["scenarios"][scenario] = compare_scenario(settings, sides, scenario, cluster)
        return results
    finally:
        for side in sides:
            context.procs.stop(side.child)
        remove(context.procs, cluster)


def run_cell(run: dict, value: str) -> str:
    return "**failed**" if run["failed_rounds"] else value


def throughput_rows(peer: dict) -> list[str]:
    rows = []
    for scenario, entry in peer["scenarios"].items():
        for key in peer["sides"]:
            run = entry[key]
            latency = run["latency_ms"]
            to_peer = "-" if key == PEER_KEY else f"**{fmt(entry['ratio_to_peer'].get(key), 2)}x**"
            rows.append(
                f"| `{scenario}` | {peer['sides'][key]['label']} | {run_cell(run, fmt(run['rps']))} "
                f"| {rounds_rps(run)} | {run_cell(run, to_peer)} | {fmt(latency['p50'], 2)} "
                f"| {fmt(latency['p99'], 2)} | {run['non_2xx_all_rounds']} | {run['errors_all_rounds']} "
                f"| {fmt(run['statements_per_request'], 2)} | {fmt(run['postgres_exec_ms_per_request'], 3)} "
                f"| {fmt(run['server_peak_rss_mib'])} |"
            )
    return rows


def cpu_rows(peer: dict) -> list[str]:
    rows = []
    for scenario, entry in peer["scenarios"].items():
        for key in peer["sides"]:
            run = entry[key]
            parts = [run["server_cpu_ms_per_request"], run["postgres_cpu_ms_per_request"],
                     run["client_cpu_ms_per_request"]]
            total = sum(parts) if all(part is not None for part in parts) else None
            split = run_cell(run, " / ".join(fmt(part, 3) for part in parts))
            rows.append(f"| `{scenario}` | {peer['sides'][key]['label']} | {split} | {run_cell(run, fmt(total, 3))} |")
    return rows


def markdown(report: dict) -> list[str]:
    peer = report.get("peer")
    if not peer:
        return []
    seed_size = next(iter(peer["sides"].values()))["seed"]
    lines = [
        f"## Conduit on wasmhost against {peer['label']}",
        "",
        f"Each server on a fresh database of its own in one {peer['postgres']}; the same data set seeded through "
        f"each server's API ({seed_size['users']} users, {seed_size['articles']} articles, {seed_size['follows']} "
        f"follows, {seed_size['favorites']} favorites, {seed_size['comments']} comments), then `VACUUM ANALYZE`. "
        f"Servers called directly; {peer['connections']} connections, {peer['seconds']}s per run, "
        f"{peer['rounds']} interleaved rounds (the order reversed every other round), median round shown. "
        f"{peer['label']}: `{peer['command']}`. Peak RSS is the largest `VmHWM` of the server's processes "
        "since it started, its seeding included; statements are the top-level ones of its database and their "
        "execution time is wall time in PostgreSQL (`pg_stat_statements` `calls` and `total_exec_time`: waiting "
        "for a core on a busy machine counts too).",
        "",
        "| scenario | server | req/s (median) | req/s each round | req/s / peer's | p50 ms | p99 ms | non-2xx (all rounds) "
        "| socket errors (all rounds) "
        "| SQL statements/req | PG exec ms/req (wall) | peak RSS MiB since start |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *throughput_rows(peer),
        "",
        "CPU ms per request: server / PostgreSQL / client (the server's processes; the PostgreSQL backends "
        "connected to its database; wrk), median round:",
        "",
        "| scenario | server | server / PostgreSQL / client | total |",
        "| --- | --- | --- | ---: |",
        *cpu_rows(peer),
        "",
    ]
    for key, side in peer["sides"].items():
        lines.append(f"- {side['label']}: seeded in {side['seed']['seconds']}s; stored password hashes "
                     f"`{side['password_hash'] or 'unknown'}`")
    lines.append("")
    if peer.get("chart"):
        lines += [f"Chart: [{peer['chart']}]({peer['chart']})", ""]
    return lines


CPU_PARTS = (("server", ""), ("postgres", "//"), ("client", ".."))


def cpu_total(run: dict) -> float:
    return sum(run[f"{part}_cpu_ms_per_request"] or 0.0 for part, _ in CPU_PARTS)


def chart(report: dict, path: Path, plt) -> bool:
    """Requests per second and p99 latency per scenario (log scales), and
    CPU per request as a multiple of the peer's (server, PostgreSQL and
    client stacked; linear, so that login's hash does not flatten the
    rest), the servers side by side."""
    peer = report["peer"]
    scenarios, keys = list(peer["scenarios"]), list(peer["sides"])
    peer_totals = [cpu_total(peer["scenarios"][scenario][PEER_KEY]) for scenario in scenarios]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    width = 0.8 / len(keys)
    for index, key in enumerate(keys):
        positions = [i + (index - (len(keys) - 1) / 2) * width for i in range(len(scenarios))]
        runs = [peer["scenarios"][scenario][key] for scenario in scenarios]
        label = peer["sides"][key]["label"]
        axes[0].bar(positions, [0 if run["failed_rounds"] else run["rps"] for run in runs], width, label=label)
        axes[1].bar(positions, [0 if run["failed_rounds"] else run["latency_ms"]["p99"] for run in runs], width,
                    label=label)
        bottom = [0.0] * len(runs)
        for part, hatch in CPU_PARTS:
            values = [0.0 if run["failed_rounds"] or not total else (run[f"{part}_cpu_ms_per_request"] or 0.0) / total
                      for run, total in zip(runs, peer_totals)]
            axes[2].bar(positions, values, width, bottom=bottom, hatch=hatch, color=f"C{index}", edgecolor="white")
            bottom = [b + v for b, v in zip(bottom, values)]
    titles = ("requests per second (median round)", "p99 latency, ms",
              "CPU per request, multiple of the peer's: server, PostgreSQL (//), client (..)")
    for axis, title in zip(axes, titles):
        axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
        axis.set_xticks(range(len(scenarios)), scenarios, rotation=25)
    for axis in axes[:2]:
        axis.set_yscale("log")
    axes[2].set_xticks(range(len(scenarios)),
                       [f"{scenario}\n(peer {total:.2f} ms)" for scenario, total in zip(scenarios, peer_totals)],
                       rotation=25, fontsize=8)
    axes[2].axhline(1.0, color="black", linewidth=0.8)
    fig.suptitle(f"Conduit on wasmhost against {peer['label']}, {peer['connections']} connections, "
                 f"{peer['rounds']} interleaved rounds ({report['name']}); failed runs drawn as 0")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=len(keys), fontsize=9,
               bbox_to_anchor=(0.5, 0.93))
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.savefig(path)
    plt.close(fig)
    return True


EXPERIMENT = Experiment(key="peer", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown, chart=chart, chart_suffix="-peer")
