"""A load run with what it cost: counters of the replicas, PostgreSQL and
nginx read before and after (`measured`), and comparisons that take turns
over several rounds and keep the median round (`interleaved`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from .common import log
from .database import reset_data
from .load import run_wrk
from .processes import Replica
from .procfs import TICK_MS, peak_rss_mib, rss_mib, tree_ticks


class Sample:
    """Counters of a set of replicas (and their database and proxy) at one moment."""

    def __init__(self, replicas: list[Replica], postgres_pid: int | None, nginx_pid: int | None):
        self.per_replica = {r.name: r.counters() for r in replicas}
        self.postgres_ticks = tree_ticks(postgres_pid)
        self.nginx_ticks = tree_ticks(nginx_pid)


def sample_delta(before: Sample, after: Sample, replicas: list[Replica]) -> dict:
    def total(key: str) -> float:
        return sum(after.per_replica[n][key] - before.per_replica[n][key] for n in after.per_replica)

    requests = total("requests")
    per_request = (lambda value: value / requests) if requests else (lambda value: None)
    return {
        "host_requests": requests,
        "host_rejected": total("rejected"),
        "sql_per_request": per_request(total("statements")),
        "statement_cache_hits": total("cache_hit"),
        "statement_cache_misses": total("cache_miss"),
        "replica_cpu_ms_per_request": per_request(total("cpu_ticks") * TICK_MS),
        "postgres_cpu_ms_per_request": per_request((after.postgres_ticks - before.postgres_ticks) * TICK_MS),
        "nginx_cpu_ms_per_request": per_request((after.nginx_ticks - before.nginx_ticks) * TICK_MS),
        "replica_requests": {
            n: after.per_replica[n]["requests"] - before.per_replica[n]["requests"]
            for n in after.per_replica
        },
        "replica_peak_rss_mib": {r.name: peak_rss_mib(r.pid) for r in replicas},
        "replica_rss_mib": {r.name: rss_mib(r.pid) for r in replicas},
    }


def measured(replicas: list[Replica], postgres_pid: int | None, nginx_pid: int | None,
             action: Callable[[], dict]) -> dict:
    """`action`'s result (a load run) with the counters' deltas over it."""
    before = Sample(replicas, postgres_pid, nginx_pid)
    result = action()
    after = Sample(replicas, postgres_pid, nginx_pid)
    result.update(sample_delta(before, after, replicas))
    return result


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput, with every round's figure kept."""
    ordered = sorted(runs, key=lambda run: run["rps"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rounds_rps"] = [run["rps"] for run in runs]
    return chosen


@dataclass(frozen=True)
class ComparisonLoad:
    """The load of a comparison between replicas (`--compare-*`): every side
    in turn at `connections` for `seconds`, `rounds` times."""

    connections: int
    seconds: int
    rounds: int

    @classmethod
    def from_args(cls, args) -> ComparisonLoad:
        return cls(args.compare_connections, args.compare_duration, args.compare_rounds)

    def report(self) -> dict:
        return {"connections": self.connections, "seconds": self.seconds, "rounds": self.rounds}


def interleaved(replicas: dict[str, Replica], scenario: str, load: ComparisonLoad, data_dir: Path,
                postgres_pid: int, database_url: str,
                after_run: Callable[[str], None] | None = None,
                before_run: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Each replica in turn, `load.rounds` times; the median round of each.
    `before_run(key)` is called before each run; `after_run(key)` after it,
    before its data is reset."""
    runs: dict[str, list[dict]] = {key: [] for key in replicas}
    for round_number in range(load.rounds):
        for key, replica in replicas.items():
            if before_run:
                before_run(key)
            runs[key].append(measured([replica], postgres_pid, None,
                                      partial(run_wrk, replica.api_url, scenario, load.connections, load.seconds,
                                              data_dir)))
            if after_run:
                after_run(key)
            reset_data(database_url, scenario)
        log(f"{scenario} round {round_number + 1}: " + ", ".join(f"{k} {v[-1]['rps']}" for k, v in runs.items()))
    return {key: median_run(value) for key, value in runs.items()}
