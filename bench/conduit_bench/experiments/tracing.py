"""Conduit with OpenTelemetry traces off, on for every request and on for
one request in ten (`--tracing-scenarios`).

For each scenario three fresh replicas like the stack's first one (so that
each one's peak RSS is its own), called directly, interleaved. The traced
ones export over OTLP/HTTP to `bench otlp-sink`, one receiver each, so the
report can show that the spans arrived: every replica is stopped at the end
of its scenario, which flushes its last batch, and its spans are divided by
the requests it answered (warm-up included, on both sides).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common import ROOT, log
from ..database import reset_data
from ..formatting import fmt, peak_rss, ratio, rounds_rps, split_list
from ..load import run_wrk
from ..measure import ComparisonLoad, interleaved
from ..processes import OtlpSink, start_replica_like
from ..procfs import TICK_MS, cpu_ticks, peak_rss_mib
from .base import Context, Experiment

# Each variant's environment on top of the stack's replica environment. A
# replica with no OTLP endpoint creates no spans; empty values count as unset
# for wasmhost (as for the OpenTelemetry SDKs), which keeps an endpoint from
# the benchmark's own environment out of the `off` replica.
VARIANTS = {
    "off": {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
            "OTEL_TRACES_SAMPLER": "", "OTEL_TRACES_SAMPLER_ARG": ""},
    "on_100": {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": ""},
    "on_10": {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}
TRACED = [variant for variant in VARIANTS if variant != "off"]
LABELS = {"off": "off", "on_100": "on, 100%", "on_10": "on, 10%"}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("OpenTelemetry traces off and on")
    group.add_argument("--tracing-scenarios", type=split_list, default="",
                       help="Conduit scenarios measured with OpenTelemetry traces off, at 100%% and at 10%% sampling "
                            "(e.g. article)")


@dataclass(frozen=True)
class Settings:
    scenarios: list[str]
    load: ComparisonLoad

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.tracing_scenarios:
            return None
        return cls(args.tracing_scenarios, ComparisonLoad.from_args(args))


def start_variants(context: Context, sink: OtlpSink) -> dict[str, tuple]:
    """One fresh replica per variant: (process, Replica)."""
    started = {}
    for variant, env in VARIANTS.items():
        env = dict(env, OTEL_SERVICE_NAME=f"wasmhost-bench-{variant}")
        if variant in TRACED:
            env.update(sink.env(TRACED.index(variant)))
        started[variant] = start_replica_like(context.procs, context.stack.replicas[0], variant, context.wasmhost,
                                              ROOT / "spin.toml", env)
    return started


def stop_variants(context: Context, sink: OtlpSink, started: dict[str, tuple]) -> tuple[dict, dict, list]:
    """Stops the replicas (SIGTERM exports what a batch still holds):
    (requests each answered, each one's peak RSS, the sink's counts before
    they stopped)."""
    answered, peak_rss_mib_final = {}, {}
    counts_running = sink.counts()
    for variant, (child, replica) in started.items():
        answered[variant] = replica.counters()["requests"]
        peak_rss_mib_final[variant] = peak_rss_mib(replica.pid)
        context.procs.stop(child)
    return answered, peak_rss_mib_final, counts_running


def measure_scenario(settings: Settings, context: Context, sink: OtlpSink, scenario: str) -> tuple[dict, int]:
    """One scenario on three fresh replicas: (its entry, the spans received)."""
    counts_before = sink.counts()
    started = start_variants(context, sink)
    for _, replica in started.values():
        run_wrk(replica.api_url, scenario, 8, 2, context.data_dir)
    reset_data(context.stack.database_url, scenario)
    entry = interleaved({variant: replica for variant, (_, replica) in started.items()}, scenario, settings.load,
                        context.data_dir, context.stack.postgres_pid, context.stack.database_url)
    answered, peak_rss_mib_final, counts_running = stop_variants(context, sink, started)
    counts_after = sink.counts()
    spans_total = 0
    for variant in VARIANTS:
        run = entry[variant]
        run["replica_requests_total"] = answered[variant]
        run["replica_peak_rss_mib_final"] = peak_rss_mib_final[variant]
        if variant in TRACED:
            index = TRACED.index(variant)
            spans = counts_after[index]["spans"] - counts_before[index]["spans"]
            spans_total += spans
            run["spans"] = spans
            run["spans_at_shutdown"] = spans - (counts_running[index]["spans"] - counts_before[index]["spans"])
            run["exports"] = counts_after[index]["exports"] - counts_before[index]["exports"]
            run["spans_per_request"] = round(spans / answered[variant], 2) if answered[variant] else None
        if variant != "off":
            off = entry["off"]
            run["rps_vs_off"] = ratio(run["rps"], off["rps"])
            off_cpu, cpu = off.get("replica_cpu_ms_per_request"), run.get("replica_cpu_ms_per_request")
            run["cpu_vs_off"] = round(cpu / off_cpu, 2) if cpu and off_cpu else None
    log(f"{scenario} tracing: " + ", ".join(
        f"{v} {entry[v]['rps']} req/s" + (f" {entry[v]['spans_per_request']} spans/req" if v in TRACED else "")
        for v in VARIANTS))
    return entry, spans_total


def run(settings: Settings, context: Context) -> dict:
    sink = OtlpSink(context.procs, context.bench_bin, len(TRACED))
    sink_ticks = cpu_ticks(sink.child.pid)
    results: dict = {**settings.load.report(), "protocol": sink.receivers[0]["protocol"],
                     "variants": {variant: {k: v for k, v in env.items() if v} for variant, env in VARIANTS.items()},
                     "scenarios": {}}
    spans_total = 0
    for scenario in settings.scenarios:
        results["scenarios"][scenario], spans = measure_scenario(settings, context, sink, scenario)
        spans_total += spans
    sink_ms = (cpu_ticks(sink.child.pid) - sink_ticks) * TICK_MS
    results["sink_cpu_ms_per_1000_spans"] = round(sink_ms / spans_total * 1000, 2) if spans_total else None
    context.procs.stop(sink.child)
    return results


def markdown(report: dict) -> list[str]:
    tracing = report.get("tracing")
    if not tracing:
        return []
    environment = "; ".join(f"`{variant}` " + (", ".join(f"`{k}={v}`" for k, v in env.items()) or "no OTLP endpoint")
                            for variant, env in tracing["variants"].items())
    sink_cost = (f". The sink used {tracing['sink_cpu_ms_per_1000_spans']} ms of CPU per 1,000 spans."
                 if tracing.get("sink_cpu_ms_per_1000_spans") is not None else ".")
    lines = [
        "## Conduit with OpenTelemetry traces off, at 100% and at 10% sampling",
        "",
        f"The same build, three fresh replicas per scenario, called directly; {tracing['connections']} "
        f"connections, {tracing['seconds']}s per run, {tracing['rounds']} interleaved rounds, median round "
        f"shown. The traced replicas export over OTLP ({tracing['protocol']}) to `bench otlp-sink`, one "
        "receiver each; a replica's spans (counted after it stopped and flushed its last batch) are divided "
        "by the requests it answered. Environment on top of the stack's: " + environment + sink_cost,
        "",
        "| scenario | tracing | req/s | / off | p99 ms | replica CPU ms/req | / off | peak RSS MiB "
        "| spans/req | spans (exports) | req/s each round |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario, entry in tracing["scenarios"].items():
        for variant in [v for v in ("off", "on_100", "on_10") if v in entry]:
            run = entry[variant]
            spans = f"{run['spans']} ({run['exports']})" if "spans" in run else "-"
            lines.append(
                f"| `{scenario}` | {LABELS[variant]} | {fmt(run['rps'])} "
                f"| {('**' + fmt(run['rps_vs_off'], 2) + 'x**') if run.get('rps_vs_off') is not None else '-'} "
                f"| {fmt(run['latency_ms']['p99'], 1)} | {fmt(run.get('replica_cpu_ms_per_request'), 3)} "
                f"| {(fmt(run['cpu_vs_off'], 2) + 'x') if run.get('cpu_vs_off') is not None else '-'} "
                f"| {fmt(run.get('replica_peak_rss_mib_final', peak_rss(run)))} "
                f"| {fmt(run.get('spans_per_request'), 2)} | {spans} "
                f"| {rounds_rps(run)} |"
            )
    lines.append("")
    return lines


EXPERIMENT = Experiment(key="tracing", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
