"""One run of the benchmark, start to end: the facts about what is measured,
a private copy of the host build, the stack, the seeded data and the query
plans, then every experiment that was asked for, in order, and the report.
Whatever was started is stopped when the run ends, however it ends."""

from __future__ import annotations

import datetime
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import report as report_files
from .common import ROOT, WASM, ResultFiles, log
from .database import explain_feed_query, explain_list_query
from .experiments import Context, Experiment
from .processes import Processes
from .procfs import cpu_model, machine_state
from .seeding import SeedSize, seed
from .stack import start_stack


@dataclass(frozen=True)
class RunSettings:
    """What every run has, whichever experiments it holds."""

    name: str
    command: str
    results: Path
    wasmhost: Path
    bench_bin: Path
    users: int
    articles: int
    max_concurrency: int
    pg_pool_size: int
    duration: int
    levels: list[int]
    scenarios: list[str]

    @classmethod
    def from_args(cls, args) -> RunSettings:
        return cls(args.name, args.command, args.results, args.wasmhost, args.bench_bin, args.users, args.articles,
                   args.max_concurrency, args.pg_pool_size, args.duration, args.levels, args.scenarios)


def git(*arguments: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *arguments], capture_output=True, text=True).stdout


def describe_run(settings: RunSettings) -> dict:
    """The report's opening facts: the command, the code and the binaries
    measured, the machine and the load tool."""
    started = datetime.datetime.now(datetime.timezone.utc)
    state = machine_state()
    log(f"nproc={state['nproc']} load={state['load']} command: {settings.command}")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0:1]
    # What was measured: the binaries as built, and any uncommitted change
    # to the code they come from (others may be editing while this runs).
    status = git("status", "--short", "--", "host", "components", "devstack", "docker/nginx").split("\n")
    artifacts = {}
    for artifact in (settings.wasmhost, WASM / "conduit.wasm", WASM / "test_app.wasm"):
        if artifact.exists():
            built = datetime.datetime.fromtimestamp(artifact.stat().st_mtime, datetime.timezone.utc)
            name = str(artifact.relative_to(ROOT)) if artifact.is_relative_to(ROOT) else str(artifact)
            artifacts[name] = built.isoformat(timespec="seconds")
    return {
        "name": settings.name,
        "command": settings.command,
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted_changes": [line for line in status if line.strip()],
        "artifacts_built": artifacts,
        "started": started.isoformat(timespec="seconds"),
        "machine": {"nproc": state["nproc"], "cpu": cpu_model(), "load_start": state["load"]},
        "wrk_version": wrk_version[0].split(" [")[0] if wrk_version else "wrk",
        "duration": settings.duration,
        "levels": settings.levels,
        "scenarios": settings.scenarios,
    }


def prepare(settings: RunSettings, procs: Processes, work_dir: Path, report: dict) -> Context:
    """The stack, started and seeded, and the plans of its list and feed
    statements written beside the report."""
    # Run a private copy: someone rebuilding target/ during the run would
    # otherwise change what is measured, and perf could no longer read the
    # symbols of the binary it sampled. Experiments that measure other
    # builds copy theirs too.
    wasmhost = work_dir / "wasmhost"
    shutil.copy2(settings.wasmhost, wasmhost)
    log("starting the stack (private PostgreSQL, 3 replicas, nginx)")
    stack = start_stack(procs, settings.bench_bin, wasmhost, work_dir / "stack",
                        max_concurrency=settings.max_concurrency, pg_pool_size=settings.pg_pool_size)
    report["stack"] = {
        "replicas": len(stack.replicas),
        "max_concurrency": settings.max_concurrency,
        "pg_pool_size": settings.pg_pool_size,
    }
    log(f"stack up at {stack.url}; replicas {[r.api_url for r in stack.replicas]}")
    data_dir = work_dir / "data"
    data_dir.mkdir()
    report["seed"] = seed(stack.replicas[0].api_url, stack.database_url, data_dir,
                          SeedSize(settings.users, settings.articles))
    results = ResultFiles(settings.results, settings.name)
    explain = results.path("-explain-list.txt")
    explain.write_text(explain_list_query(stack.database_url))
    report["explain"] = explain.name
    explain_feed = results.path("-explain-feed.txt")
    explain_feed.write_text(explain_feed_query(stack.database_url))
    report["explain_feed"] = explain_feed.name
    return Context(procs=procs, stack=stack, wasmhost=wasmhost, bench_bin=settings.bench_bin, work_dir=work_dir,
                   data_dir=data_dir, results=results, report=report)


def run(settings: RunSettings, plan: list[tuple[Experiment, Any]]) -> int:
    """`plan`: every experiment with its settings, None for those left out."""
    started = time.monotonic()
    report = describe_run(settings)
    procs = Processes()
    work_dir = Path(tempfile.mkdtemp(prefix="conduit-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        context = prepare(settings, procs, work_dir, report)
        for experiment, experiment_settings in plan:
            if experiment_settings is not None:
                report[experiment.key] = experiment.run(experiment_settings, context)
    finally:
        procs.stop_all()
        shutil.rmtree(work_dir, ignore_errors=True)

    report["machine"]["load_end"] = machine_state()["load"]
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    path = report_files.write(report, ResultFiles(settings.results, settings.name))
    log(f"report: {path} ({report['elapsed_seconds']}s)")
    return 0
