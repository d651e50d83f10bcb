"""The baselines the Conduit scenarios are read against: pgbench running the
list endpoint's SQL (bench/pgbench/article_list.sql, prepared, as the host
prepares it) at every concurrency level, and in the same section the hello
component's levels, which the host benchmark measures."""

from __future__ import annotations

from dataclasses import dataclass

from ..common import log
from ..formatting import fmt
from ..load import run_pgbench
from .base import Context, Experiment


def add_arguments(parser) -> None:
    group = parser.add_argument_group("pgbench baseline")
    group.add_argument("--pgbench-max-clients", type=int, default=128,
                       help="devstack's PostgreSQL allows 200 connections; the replicas' pools hold up to 48")


@dataclass(frozen=True)
class Settings:
    levels: list[int]
    seconds: int
    max_clients: int

    @classmethod
    def from_args(cls, args) -> Settings:
        return cls(args.levels, args.duration, args.pgbench_max_clients)


def run(settings: Settings, context: Context) -> list[dict]:
    runs = []
    for level in settings.levels:
        clients = min(level, settings.max_clients)
        pgbench = run_pgbench(context.stack.database_url, clients, settings.seconds)
        pgbench["requested_connections"] = level
        runs.append(pgbench)
        log(f"pgbench c={clients}: {pgbench['rps']} tx/s p99 {pgbench['latency_ms']['p99']} ms")
    return runs


def pgbench_rows(report: dict) -> list[str]:
    """pgbench at each level beside the list through one replica at the same level."""
    direct = next((t for t in report["targets"] if t["key"] == "direct"), None)
    lines = []
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
    return lines


def hello_rows(host: dict) -> list[str]:
    lines = []
    for run in host["hello_levels"]:
        lat = run["latency_ms"]
        lines.append(
            f"| {run['connections']} | {fmt(run['rps'])} | {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} "
            f"| {fmt(lat['p99'], 2)} | {fmt(lat['max'], 2)} | {run['errors']} | {fmt(run['replica_cpu_ms_per_request'], 3)} |"
        )
    return lines


def markdown(report: dict) -> list[str]:
    host = report.get("host")
    lines = []
    if report["pgbench"] or host:
        lines += ["## Baselines", ""]
    if report["pgbench"]:
        lines += [
            "### pgbench: the article list's SQL (anonymous viewer, limit 20)",
            "",
            "| clients | tx/s | p50 ms | p90 ms | p99 ms | max ms | failed | list through one replica, req/s | ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    lines += pgbench_rows(report)
    if host:
        lines += [
            "",
            "### hello component (wasmhost, one process)",
            "",
            "| conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | CPU ms/req |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += hello_rows(host)
    return lines


EXPERIMENT = Experiment(key="pgbench", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
