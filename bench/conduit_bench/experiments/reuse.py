"""Conduit with instance reuse against a fresh instance per request
(`--reuse-scenarios`): the stack's first replica and one more replica of the
same build with `WASMHOST_MAX_INSTANCE_REUSE`, called directly, interleaved."""

from __future__ import annotations

from dataclasses import dataclass

from ..common import ROOT
from ..formatting import fmt, peak_rss, ratio, split_list
from ..measure import ComparisonLoad, interleaved
from ..processes import metric_sum, start_replica_like
from .base import Context, Experiment


def add_arguments(parser) -> None:
    group = parser.add_argument_group("instance reuse against a fresh instance per request")
    group.add_argument("--reuse-scenarios", type=split_list, default="",
                       help="Conduit scenarios measured with instance reuse against without (e.g. article)")


@dataclass(frozen=True)
class Settings:
    scenarios: list[str]
    load: ComparisonLoad
    reuse_count: int

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.reuse_scenarios:
            return None
        return cls(args.reuse_scenarios, ComparisonLoad.from_args(args), args.reuse_count)


def run(settings: Settings, context: Context) -> dict:
    first = context.stack.replicas[0]
    child, reuse = start_replica_like(
        context.procs, first, "reuse", context.wasmhost, ROOT / "spin.toml",
        {"WASMHOST_MAX_INSTANCE_REUSE": str(settings.reuse_count)},
    )
    sides = {"fresh": first.renamed("fresh"), "reuse": reuse}
    results: dict = {**settings.load.report(), "max_instance_reuse": settings.reuse_count, "scenarios": {}}
    for scenario in settings.scenarios:
        entry = interleaved(sides, scenario, settings.load, context.data_dir, context.stack.postgres_pid,
                            context.stack.database_url)
        entry["ratio"] = ratio(entry["reuse"]["rps"], entry["fresh"]["rps"])
        results["scenarios"][scenario] = entry
    text = reuse.metrics()
    results["instances_created"] = metric_sum(text, "wasmhost_instances_total")
    results["instances_reused"] = metric_sum(text, "wasmhost_instances_reused_total")
    context.procs.stop(child)
    return results


def markdown(report: dict) -> list[str]:
    reuse = report.get("reuse")
    if not reuse:
        return []
    lines = [
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
    return lines


EXPERIMENT = Experiment(key="reuse", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
