"""A login flood on one replica (`--login-flood`): `POST /api/users/login`
from many connections at once, each login hashing a password with argon2
(19 MiB of guest memory). One fresh replica per configuration, beside the
stack and on its database, so that each one's peak RSS (VmHWM) is its own:

- `no_flags`: started as an operator who set nothing would start it: no
  route limits, the default guest memory budget;
- `route_limits`: the shipped deployments' route limits (the stack's
  `WASMHOST_ROUTE_LIMITS`: two logins at once per replica, the rest queued),
  with the default budget;
- `unlimited`: no route limits and `WASMHOST_GUEST_MEMORY_BUDGET=unlimited`:
  how the host behaved before it had a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ..common import ROOT, log
from ..formatting import fmt, peak_rss
from ..load import run_wrk
from ..measure import measured
from ..processes import metric_sum, start_replica_like
from .base import Context, Experiment

CONFIGURATIONS = {
    "no_flags": {"without": ("WASMHOST_ROUTE_LIMITS", "WASMHOST_GUEST_MEMORY_BUDGET"), "env": {}},
    "route_limits": {"without": ("WASMHOST_GUEST_MEMORY_BUDGET",), "env": {}},
    "unlimited": {"without": ("WASMHOST_ROUTE_LIMITS",), "env": {"WASMHOST_GUEST_MEMORY_BUDGET": "unlimited"}},
}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("login flood: peak memory and logins/s with and without limits")
    group.add_argument("--login-flood", action="store_true",
                       help="flood one replica per configuration with logins (no flags, route limits, "
                            "no guest memory budget)")
    group.add_argument("--login-flood-connections", type=int, default=64)
    group.add_argument("--login-flood-seconds", type=int, default=20)


@dataclass(frozen=True)
class Settings:
    connections: int
    seconds: int

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.login_flood:
            return None
        return cls(args.login_flood_connections, args.login_flood_seconds)


def guest_memory(text: str) -> dict:
    """The replica's guest memory budget figures, from its metrics."""
    mib = 1 << 20
    return {
        "budget_mib": round(metric_sum(text, "wasmhost_guest_memory_budget_bytes") / mib, 1),
        "peak_in_use_mib": round(metric_sum(text, "wasmhost_guest_memory_peak_bytes") / mib, 1),
        "admission_waits": metric_sum(text, "wasmhost_guest_memory_wait_seconds_count", 'stage="admission"'),
        "growth_waits": metric_sum(text, "wasmhost_guest_memory_wait_seconds_count", 'stage="growth"'),
        "refused": metric_sum(text, "wasmhost_guest_memory_refused_total"),
    }


def run(settings: Settings, context: Context) -> dict:
    first = context.stack.replicas[0]
    results: dict = {"connections": settings.connections, "seconds": settings.seconds, "configurations": {}}
    for name, configuration in CONFIGURATIONS.items():
        child, replica = start_replica_like(
            context.procs, first, name, context.wasmhost, ROOT / "spin.toml", configuration["env"],
            without=configuration["without"],
        )
        run_result = measured([replica], context.stack.postgres_pid, None,
                              partial(run_wrk, replica.api_url, "login", settings.connections,
                                      settings.seconds, context.data_dir))
        run_result["guest_memory"] = guest_memory(replica.metrics())
        context.procs.stop(child)
        results["configurations"][name] = run_result
        log(f"login flood, {name}: {run_result['rps']} logins/s, {run_result['errors']} errors, "
            f"peak RSS {peak_rss(run_result)} MiB")
    return results


DESCRIPTIONS = {
    "no_flags": "no flags (default guest memory budget, no route limits)",
    "route_limits": "the shipped route limits (and the default budget)",
    "unlimited": "no budget, no route limits (the host before the budget)",
}


def markdown(report: dict) -> list[str]:
    flood = report.get("login_flood")
    if not flood:
        return []
    lines = [
        "## Login flood: peak memory and logins/s",
        "",
        f"`POST /api/users/login` from {flood['connections']} connections for {flood['seconds']}s against one "
        "fresh replica per configuration, called directly. Each login hashes a password with argon2 "
        "(19 MiB of guest memory). Failed requests are non-2xx answers and socket errors; peak RSS is the "
        "replica's VmHWM; peak guest memory is `wasmhost_guest_memory_peak_bytes`.",
        "",
        "| configuration | logins/s | failed | p99 ms | peak RSS MiB | guest memory budget MiB "
        "| peak guest memory MiB | waits for admission | waits to grow |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in flood["configurations"].items():
        memory = entry["guest_memory"]
        budget = fmt(memory["budget_mib"]) if memory["budget_mib"] else "unlimited"
        lines.append(
            f"| {DESCRIPTIONS.get(name, name)} | {fmt(entry['rps'], 1)} | {entry['errors']} "
            f"| {fmt(entry['latency_ms']['p99'], 1)} | {fmt(peak_rss(entry))} | {budget} "
            f"| {fmt(memory['peak_in_use_mib'])} | {memory['admission_waits']:.0f} | {memory['growth_waits']:.0f} |"
        )
    lines.append("")
    return lines


EXPERIMENT = Experiment(key="login_flood", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
