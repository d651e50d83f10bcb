"""The benchmark behind `bench/run` (see bench/README.md).

One run, one report:

1. The local stack (`bench stack`: a private PostgreSQL, three wasmhost
   replicas, nginx with the project's config over HTTPS), seeded through the
   public API.
2. The experiments asked for, in the report's order: the host benchmark
   (the test fixture's `/hello` against a native hyper server, `/pg/one`
   with the prepared-statement cache on and off, the hello component on
   `wasmtime serve`), the comparisons between replicas (a previous build,
   instance reuse, the articlesCount triggers, tracing), every Conduit
   scenario at every concurrency level through nginx and against one replica
   directly, pgbench running the list endpoint's SQL as a baseline, perf
   profiles, and HTTPS against plain HTTP through nginx.

Results go to bench/results/<name>.md, .json and .svg.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from . import report, runner
from .common import BENCH, ROOT
from .experiments import EXPERIMENTS
from .formatting import split_list

# Read-only scenarios first, so the data they read is the seeded set; the
# writes come after them at every level, and what they add is deleted again.
SCENARIOS = [
    "list_anon",
    "list_auth",
    "article",
    "feed",
    "tags",
    "create_article",
    "favorite",
    "comment",
    "login",
]


def int_list(text: str) -> list[int]:
    return [int(item) for item in split_list(text)]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every run, and those several experiments share."""
    parser.add_argument("--name", default=datetime.date.today().isoformat())
    parser.add_argument("--levels", type=int_list, default="1,8,32,64,128,256")
    parser.add_argument("--duration", type=int, default=6, help="seconds per scenario run")
    parser.add_argument("--scenarios", type=split_list, default=",".join(SCENARIOS))
    parser.add_argument("--users", type=int, default=120)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--max-concurrency", type=int, default=256)
    parser.add_argument("--pg-pool-size", type=int, default=16)
    parser.add_argument("--bench-bin", type=Path)
    parser.add_argument("--wasmhost", type=Path, default=ROOT / "target/release/wasmhost")
    parser.add_argument("--wasmtime", type=Path, help="`wasmtime` CLI: its `serve` runs the hello component too")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--command", default=" ".join(sys.argv))
    parser.add_argument("--render", type=Path, help="only write the Markdown and chart again from a report's JSON")
    profiles = parser.add_argument_group("profiles (of the stack's replica and of the hello component)")
    profiles.add_argument("--profile-seconds", type=int, default=10)
    profiles.add_argument("--no-profile", action="store_true")
    comparisons = parser.add_argument_group(
        "comparisons between replicas (previous build, instance reuse, counts, tracing)")
    comparisons.add_argument("--compare-connections", type=int, default=64)
    comparisons.add_argument("--compare-duration", type=int, default=10)
    comparisons.add_argument("--compare-rounds", type=int, default=3)
    comparisons.add_argument("--reuse-count", type=int, default=1000,
                             help="WASMHOST_MAX_INSTANCE_REUSE of the reuse runs")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    for experiment in EXPERIMENTS:
        experiment.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.render:
        report.render(args.render)
        return 0
    # Every experiment's settings first, so that a bad flag fails before
    # anything starts.
    plan = [(experiment, experiment.settings(args)) for experiment in EXPERIMENTS]
    return runner.run(runner.RunSettings.from_args(args), plan)
