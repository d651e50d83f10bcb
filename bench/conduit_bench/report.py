"""The report of a run: bench/results/<name>.json (every figure), .md (the
tables) and the charts, all drawn from the JSON, so that `--render` can
write the Markdown and the charts again from a report.

The Markdown is the run's description, then each experiment's section in
the order of EXPERIMENTS, then the list of the run's other files, then the
sections that come after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .common import ResultFiles, log
from .experiments import EXPERIMENTS


def header(report: dict) -> list[str]:
    """What was measured, on what, with which data."""
    machine, seed = report["machine"], report["seed"]
    return [
        f"# Benchmark {report['name']}",
        "",
        f"- Command: `{report['command']}`",
        f"- Commit: `{report['commit']}`; date {report['started']}",
        "- Binaries measured (build time): "
        + ", ".join(f"`{name}` ({built})" for name, built in report["artifacts_built"].items()),
        "- Uncommitted changes in host/, components/, devstack/, docker/nginx/ at the time: "
        + (", ".join(f"`{line.strip()}`" for line in report["uncommitted_changes"]) or "none"),
        f"- Machine: {machine['nproc']} cores (`nproc`), {machine['cpu']}; load average at start "
        f"{machine['load_start']}, at end {machine['load_end']}. wrk, nginx, PostgreSQL and the servers "
        "share these cores, and nothing keeps other work off them (the load averages tell how busy the "
        "machine was), so absolute figures move from run to run; ratios taken in the same run are the "
        "meaningful part.",
        f"- Load tool: wrk ({report['wrk_version']}), {report['duration']}s per run, `--timeout 30s`, "
        "2 threads (1 at one connection); pgbench with `-M prepared`.",
        f"- Replicas: {report['stack']['replicas']} wasmhost replicas, "
        f"`WASMHOST_MAX_CONCURRENCY={report['stack']['max_concurrency']}` (503 beyond that per replica), "
        f"`WASMHOST_PG_POOL_SIZE={report['stack']['pg_pool_size']}`, nginx `least_conn` with the project's "
        "config (login/register limited to 5 r/s per client address, burst 10: 429 beyond).",
        f"- Data set (seeded through the API in {seed['seconds']}s): {seed['users']} users, "
        f"{seed['articles']} articles, {seed['tags']} tags, {seed['follows']} follows, "
        f"{seed['favorites']} favorites, {seed['comments']} comments.",
        "",
    ]


def files_section(report: dict) -> list[str]:
    """Links to the main chart, the query plans and the profiles, and the levels."""
    lines = ["", f"Chart: [{report['chart']}]({report['chart']})" if report.get("chart") else ""]
    if report.get("explain"):
        lines += ["", f"Plan of the list query: [{report['explain']}]({report['explain']})"]
    if report.get("explain_feed"):
        lines += ["", f"Plan of the feed query: [{report['explain_feed']}]({report['explain_feed']})"]
    if report.get("profiles"):
        lines += ["", "Profiles: " + ", ".join(f"[{p}]({p})" for p in report["profiles"])]
    if report["levels"]:
        lines += ["", "Levels: " + ", ".join(map(str, report["levels"])), ""]
    return lines


def markdown(report: dict) -> str:
    lines = header(report)
    for experiment in EXPERIMENTS:
        if not experiment.after_files:
            lines += experiment.markdown(report)
    lines += files_section(report)
    for experiment in EXPERIMENTS:
        if experiment.after_files:
            lines += experiment.markdown(report)
    return "\n".join(lines)


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


def draw_charts(report: dict, chart_path: Callable[[str], Path], only_recorded: bool = False) -> None:
    """Each experiment's chart, recorded in the report as it is drawn: the
    main chart (empty suffix) as the report's `chart`, any other as its
    section's. Several experiments may offer the main chart; the first that
    draws it has it. `only_recorded`: redraw only the charts the report
    already lists."""
    plt = None
    main_drawn = False
    for experiment in EXPERIMENTS:
        if experiment.chart is None or experiment.key not in report:
            continue
        main = experiment.chart_suffix == ""
        holder = report if main else report[experiment.key]
        if (main and main_drawn) or (only_recorded and not holder.get("chart")):
            continue
        plt = plt or pyplot()
        if plt is None:
            return
        path = chart_path(experiment.chart_suffix)
        if experiment.chart(report, path, plt):
            holder["chart"] = path.name
            main_drawn = main_drawn or main


def write(report: dict, results: ResultFiles) -> Path:
    """Draws the charts and writes the JSON and the Markdown; returns the Markdown's path."""
    draw_charts(report, lambda suffix: results.path(f"{suffix}.svg"))
    results.path(".json").write_text(json.dumps(report, indent=2) + "\n")
    path = results.path(".md")
    path.write_text(markdown(report))
    return path


def render(json_path: Path) -> None:
    """The Markdown and the charts again, beside a report's JSON."""
    report = json.loads(json_path.read_text())
    draw_charts(report, lambda suffix: json_path.with_name(f"{json_path.stem}{suffix}.svg"), only_recorded=True)
    json_path.with_suffix(".md").write_text(markdown(report))
