"""The Conduit scenarios: every scenario (`--scenarios`) at every
concurrency level (`--levels`) for `--duration` seconds, through nginx (the
stack's three replicas, over HTTPS as clients reach it) and against one
replica directly (`--targets`), with wrk driving the load.

Its chart is the report's main one: throughput and p99 latency against
concurrency, one column per target, with the pgbench and hello baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..common import log
from ..database import reset_data
from ..formatting import fmt, split_list
from ..load import run_wrk
from ..measure import measured
from .base import Context, Experiment

TARGETS = ("nginx", "direct")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("Conduit scenarios")
    group.add_argument("--targets", type=split_list, default=",".join(TARGETS))


@dataclass(frozen=True)
class Settings:
    targets: list[str]
    scenarios: list[str]
    levels: list[int]
    seconds: int

    @classmethod
    def from_args(cls, args) -> Settings:
        unknown = [target for target in args.targets if target not in TARGETS]
        if unknown:
            raise SystemExit(f"--targets: unknown {', '.join(unknown)} (known: {', '.join(TARGETS)})")
        return cls(args.targets, args.scenarios, args.levels, args.duration)


def run_target(settings: Settings, context: Context, key: str) -> dict:
    stack = context.stack
    targets = {
        "nginx": {"key": "nginx", "label": f"through nginx, {len(stack.replicas)} replicas", "url": stack.url},
        "direct": {"key": "direct", "label": "one replica directly", "url": stack.replicas[0].api_url},
    }
    target = dict(targets[key], runs={})
    for level in settings.levels:
        for scenario in settings.scenarios:
            result = measured(stack.replicas, stack.postgres_pid, stack.nginx_pid,
                              partial(run_wrk, target["url"], scenario, level, settings.seconds, context.data_dir))
            target["runs"].setdefault(scenario, []).append(result)
            log(
                f"{key} {scenario} c={level}: {result['rps']} req/s p99 {result['latency_ms']['p99']} ms "
                f"errors {result['errors']} 429 {result['rate_limited_429']} SQL/req {fmt(result['sql_per_request'], 2)}"
            )
            reset_data(stack.database_url, scenario)
    return {k: v for k, v in target.items() if k != "url"}


def run(settings: Settings, context: Context) -> list[dict]:
    return [run_target(settings, context, key) for key in settings.targets]


def markdown(report: dict) -> list[str]:
    lines = ["## Conduit scenarios", ""] if report["targets"] else []
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
    return lines


def plot_target(axes, column: int, target: dict, report: dict) -> None:
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


def chart(report: dict, path: Path, plt) -> bool:
    targets = report["targets"]
    if not targets:
        return False
    fig, axes = plt.subplots(2, len(targets), figsize=(7 * len(targets), 9), squeeze=False)
    for column, target in enumerate(targets):
        plot_target(axes, column, target, report)
    fig.suptitle(f"Conduit on wasmhost, {report['machine']['nproc']} shared cores ({report['name']})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


EXPERIMENT = Experiment(key="targets", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown, chart=chart)
