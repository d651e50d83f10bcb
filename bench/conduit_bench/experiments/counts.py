"""What keeping `articlesCount` costs the writes (`--count-cost`):
`create_article` on the stack's first replica with the count triggers
(migrations/0009) on, as deployed, and off, interleaved. Each run's articles
are deleted while the triggers are as they were during the run, so the
counts stay exact (checked at the end)."""

from __future__ import annotations

from dataclasses import dataclass

from ..database import psql, psql_pairs
from ..formatting import fmt, ratio, rounds_rps
from ..measure import ComparisonLoad, interleaved
from .base import Context, Experiment


def add_arguments(parser) -> None:
    group = parser.add_argument_group("what keeping articlesCount costs")
    group.add_argument("--count-cost", action="store_true",
                       help="measure create_article with the articlesCount triggers on and off, interleaved")


@dataclass(frozen=True)
class Settings:
    load: ComparisonLoad

    @classmethod
    def from_args(cls, args) -> Settings | None:
        return cls(ComparisonLoad.from_args(args)) if args.count_cost else None


def count_triggers(owner_url: str) -> list[tuple[str, str]]:
    """The triggers that keep articlesCount (migrations/0009): (table, name)."""
    return psql_pairs(owner_url, "SELECT tgrelid::regclass || '|' || tgname FROM pg_trigger "
                                 "WHERE tgfoid IN ('count_articles'::regproc, 'count_article_tags'::regproc, "
                                 "'count_favorites'::regproc) ORDER BY 1")


def set_count_triggers(owner_url: str, triggers: list[tuple[str, str]], enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    psql(owner_url, "; ".join(f'ALTER TABLE {table} {verb} TRIGGER "{name}"' for table, name in triggers))


def run(settings: Settings, context: Context) -> dict:
    owner_url = context.stack.owner_database_url
    triggers = count_triggers(owner_url)
    if not triggers:
        raise RuntimeError("no articlesCount triggers in the database (migrations/0009)")
    replica = context.stack.replicas[0]
    try:
        medians = interleaved({"kept": replica, "not_kept": replica}, "create_article", settings.load,
                              context.data_dir, context.stack.postgres_pid, context.stack.database_url,
                              before_run=lambda key: set_count_triggers(owner_url, triggers, key == "kept"))
    finally:
        set_count_triggers(owner_url, triggers, True)
    exact = psql(owner_url, "SELECT (SELECT coalesce(sum(articles), 0) FROM article_counts "
                            "WHERE filter_kind = 'all') = (SELECT count(*) FROM articles)").strip() == "t"
    kept, not_kept = medians["kept"], medians["not_kept"]
    return {
        **settings.load.report(), "triggers": [f"{t}.{n}" for t, n in triggers],
        "kept": kept, "not_kept": not_kept, "counts_exact_after": exact,
        "ratio": ratio(kept["rps"], not_kept["rps"]),
    }


def markdown(report: dict) -> list[str]:
    counts = report.get("counts")
    if not counts:
        return []
    lines = [
        "## What keeping `articlesCount` costs article creation",
        "",
        f"`create_article` on one replica, called directly; {counts['connections']} connections, "
        f"{counts['seconds']}s per run, {counts['rounds']} interleaved rounds, median round shown; between runs "
        f"the triggers that keep the counts (`{'`, `'.join(counts['triggers'])}`) are enabled or disabled. "
        f"Counts exact after the comparison: {'yes' if counts['counts_exact_after'] else '**no**'}.",
        "",
        "| counts | req/s | p99 ms | replica CPU ms/req | PostgreSQL CPU ms/req | req/s each round |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, run in (("kept by the triggers (as deployed)", counts["kept"]),
                       ("not kept (triggers off)", counts["not_kept"])):
        lines.append(
            f"| {label} | {fmt(run['rps'])} | {fmt(run['latency_ms']['p99'], 1)} "
            f"| {fmt(run.get('replica_cpu_ms_per_request'), 3)} | {fmt(run.get('postgres_cpu_ms_per_request'), 3)} "
            f"| {rounds_rps(run)} |"
        )
    lines += ["", f"- kept / not kept: **{counts['ratio']}x**", ""]
    return lines


EXPERIMENT = Experiment(key="counts", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
