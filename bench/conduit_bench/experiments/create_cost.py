"""Where article creation's PostgreSQL time goes (`--create-cost`):
`create_article` on the stack's first replica with the schema as deployed,
then with one more of the things a creation writes besides its article row
taken away at each step, interleaved:

1. as deployed;
2. without the triggers that keep `articlesCount` (migrations/0009);
3. also without article_tags' foreign keys (the checks, and the key-share
   locks they take on the article and tag rows);
4. also without the article list's two indexes on articles (newest first,
   and by author newest first).

What is left at the last step is the article row with its key and slug
index, the tags (`tag_ids`), the link rows with their two indexes, and the
answer. The differences between steps are what each part costs. Before each
run everything an earlier step took away is put back as it was (the links
the run's deleted articles left behind, with the triggers still as they were
during the run, then the keys and the indexes), and again at the end, so the
database is as deployed afterwards; the counts are checked exact at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..database import psql, psql_pairs
from ..formatting import fmt, rounds_rps
from ..measure import ComparisonLoad, interleaved
from .base import Context, Experiment
from .counts import count_triggers, set_count_triggers

STEPS: list[tuple[str, str]] = [
    ("deployed", "as deployed"),
    ("no_counts", "without the articlesCount triggers"),
    ("no_link_keys", "also without article_tags' foreign keys"),
    ("no_list_indexes", "also without the list's indexes on articles"),
]
LIST_INDEXES = ("articles_created_idx", "articles_author_created_idx")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("where article creation's PostgreSQL time goes")
    group.add_argument("--create-cost", action="store_true",
                       help="measure create_article as deployed and without, in turn, the count triggers, "
                            "article_tags' foreign keys and the list's indexes, interleaved")


@dataclass(frozen=True)
class Settings:
    load: ComparisonLoad

    @classmethod
    def from_args(cls, args) -> Settings | None:
        return cls(ComparisonLoad.from_args(args)) if args.create_cost else None


class Schema:
    """The parts a step takes away, read from the deployed schema, and how
    to take them away and put them back."""

    def __init__(self, owner_url: str) -> None:
        self.owner_url = owner_url
        self.triggers = count_triggers(owner_url)
        if not self.triggers:
            raise RuntimeError("no articlesCount triggers in the database (migrations/0009)")
        self.link_keys = psql_pairs(
            owner_url, "SELECT conname || '|' || pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'article_tags'::regclass AND contype = 'f' ORDER BY conname")
        self.list_indexes = psql_pairs(
            owner_url, "SELECT indexname || '|' || indexdef FROM pg_indexes "
                       "WHERE schemaname = current_schema() AND indexname IN "
                       f"({', '.join(repr(name) for name in LIST_INDEXES)}) ORDER BY indexname")
        if len(self.link_keys) != 2 or len(self.list_indexes) != len(LIST_INDEXES):
            raise RuntimeError(f"unexpected schema: article_tags keys {self.link_keys}, "
                               f"list indexes {self.list_indexes}")
        self.keys_dropped = False
        self.indexes_dropped = False

    def restore(self) -> None:
        if self.keys_dropped:
            # Links of articles deleted while the keys were gone; the count
            # triggers are still as they were when the links were written.
            psql(self.owner_url, "DELETE FROM article_tags l WHERE NOT EXISTS "
                                 "(SELECT 1 FROM articles a WHERE a.id = l.article_id)")
            psql(self.owner_url, "; ".join(f'ALTER TABLE article_tags ADD CONSTRAINT "{name}" {definition}'
                                           for name, definition in self.link_keys))
            self.keys_dropped = False
        if self.indexes_dropped:
            psql(self.owner_url, "; ".join(definition for _, definition in self.list_indexes))
            self.indexes_dropped = False
        set_count_triggers(self.owner_url, self.triggers, True)

    def take_away(self, step: str) -> None:
        index = [key for key, _ in STEPS].index(step)
        if index >= 1:
            set_count_triggers(self.owner_url, self.triggers, False)
        if index >= 2:
            psql(self.owner_url, "; ".join(f'ALTER TABLE article_tags DROP CONSTRAINT "{name}"'
                                           for name, _ in self.link_keys))
            self.keys_dropped = True
        if index >= 3:
            psql(self.owner_url, "; ".join(f'DROP INDEX "{name}"' for name, _ in self.list_indexes))
            self.indexes_dropped = True


def run(settings: Settings, context: Context) -> dict:
    schema = Schema(context.stack.owner_database_url)
    replica = context.stack.replicas[0]

    def before_run(step: str) -> None:
        schema.restore()
        schema.take_away(step)

    try:
        medians = interleaved({key: replica for key, _ in STEPS}, "create_article", settings.load,
                              context.data_dir, context.stack.postgres_pid, context.stack.database_url,
                              before_run=before_run)
    finally:
        schema.restore()
    exact = psql(schema.owner_url, "SELECT (SELECT coalesce(sum(articles), 0) FROM article_counts "
                                   "WHERE filter_kind = 'all') = (SELECT count(*) FROM articles) AND "
                                   "(SELECT coalesce(sum(articles), 0) FROM article_counts "
                                   "WHERE filter_kind = 'tag') = (SELECT count(*) FROM article_tags)").strip() == "t"
    return {**settings.load.report(), "steps": medians, "counts_exact_after": exact}


def markdown(report: dict) -> list[str]:
    cost = report.get("create_cost")
    if not cost:
        return []
    lines = [
        "## Where article creation's PostgreSQL time goes",
        "",
        f"`create_article` on one replica, called directly; {cost['connections']} connections, "
        f"{cost['seconds']}s per run, {cost['rounds']} interleaved rounds, median round shown. Each step takes "
        "one more part away from the deployed schema; the difference from the step above is what that part "
        f"costs. Counts exact after the comparison: {'yes' if cost['counts_exact_after'] else '**no**'}.",
        "",
        "| schema | req/s | p99 ms | replica CPU ms/req | PostgreSQL CPU ms/req | PostgreSQL saved | req/s each round |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    previous = None
    for key, label in STEPS:
        run = cost["steps"].get(key)
        if not run:
            continue
        pg = run.get("postgres_cpu_ms_per_request")
        saved = (previous - pg) if previous is not None and pg is not None else None
        lines.append(
            f"| {label} | {fmt(run['rps'])} | {fmt(run['latency_ms']['p99'], 1)} "
            f"| {fmt(run.get('replica_cpu_ms_per_request'), 3)} | {fmt(pg, 3)} "
            f"| {fmt(saved, 3) if saved is not None else ''} | {rounds_rps(run)} |"
        )
        previous = pg
    lines.append("")
    return lines


EXPERIMENT = Experiment(key="create_cost", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown)
