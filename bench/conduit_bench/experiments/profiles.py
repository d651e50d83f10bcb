"""CPU profiles of one replica of the stack under `list_anon` and `login`
(perf, see profiling), listed in the report with the host benchmark's
profiles of the hello component."""

from __future__ import annotations

from dataclasses import dataclass

from ..common import log
from ..profiling import profile
from .base import Context, Experiment, no_arguments

SCENARIOS = ("list_anon", "login")


@dataclass(frozen=True)
class Settings:
    seconds: int | None     # None: no profiles of the stack's replica

    @classmethod
    def from_args(cls, args) -> Settings:
        return cls(None if args.no_profile else args.profile_seconds)


def run(settings: Settings, context: Context) -> list[str]:
    host = context.report.get("host") or {}
    files = [host[key] for key in ("profile", "candidate_profile") if host.get(key)]
    if settings.seconds is None:
        return files
    replica = context.stack.replicas[0]
    for scenario in SCENARIOS:
        out = context.results.path(f"-profile-{scenario}.txt")
        if profile(settings.seconds, replica.pid, replica.api_url, scenario, context.data_dir, out):
            files.append(out.name)
            log(f"profile written: {out}")
    return files


def markdown(report: dict) -> list[str]:
    # Listed with the report's other files (report.files_section).
    return []


EXPERIMENT = Experiment(key="profiles", add_arguments=no_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
