"""The experiments of a run, in the order of the report; they run in this
order too. Adding one means adding its module here (see base.Experiment and
bench/README.md)."""

from . import (baselines, counts, create_cost, host, key_value, login_flood, peer, previous_build, profiles, reuse,
               scenarios, tls, tracing)
from .base import Context, Experiment

EXPERIMENTS: list[Experiment] = [
    host.EXPERIMENT,
    key_value.EXPERIMENT,
    previous_build.EXPERIMENT,
    reuse.EXPERIMENT,
    counts.EXPERIMENT,
    create_cost.EXPERIMENT,
    tracing.EXPERIMENT,
    peer.EXPERIMENT,
    login_flood.EXPERIMENT,
    scenarios.EXPERIMENT,
    baselines.EXPERIMENT,
    profiles.EXPERIMENT,
    tls.EXPERIMENT,
]

__all__ = ["EXPERIMENTS", "Context", "Experiment"]
