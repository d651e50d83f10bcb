"""What an experiment is, and what it is given to run.

An experiment owns its command-line flags, its settings (built from the
parsed flags; None when the run did not ask for it), its measurement, its
section of the Markdown report and optionally a chart. Its result is stored
in the report's JSON under its `key`, and its section and chart are drawn
from the JSON alone, so that `--render` can write them again.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..common import ResultFiles
from ..processes import Processes
from ..stack import Stack


@dataclass
class Context:
    """The running benchmark, as every experiment sees it."""

    procs: Processes        # start more processes here; what is left running is stopped at the end
    stack: Stack            # the stack under test, seeded
    wasmhost: Path          # the measured host build (a private copy, see runner)
    bench_bin: Path         # the `bench` helper binary (native-hello, otlp-sink)
    work_dir: Path          # scratch space, removed at the end
    data_dir: Path          # the seeded data wrk reads (tokens, slugs, logins)
    results: ResultFiles    # where files beside the report go (profiles)
    report: dict            # the report so far, for experiments that build on earlier ones


@dataclass(frozen=True)
class Experiment:
    key: str
    """Where its result goes in the report's JSON."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    settings: Callable[[argparse.Namespace], Any]
    """Its settings from the parsed flags; None when this run leaves it out."""
    run: Callable[[Any, Context], Any]
    markdown: Callable[[dict], list[str]]
    """Its section of the report, from the whole report ([] when it has none)."""
    chart: Callable[[dict, Path, Any], bool] | None = None
    """Draws its chart from the whole report with pyplot into the path given;
    False when there is nothing to draw."""
    chart_suffix: str = ""
    """Its chart is `<name><chart_suffix>.svg`; the empty suffix is the
    report's main chart, recorded as the report's `chart`, any other is
    recorded as the `chart` of its own section."""
    after_files: bool = False
    """Its section comes after the list of the report's files (where the
    first appended section stayed, so that reports compare line by line)."""


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For experiments whose flags are all shared ones (defined in cli)."""
