"""The stack's PostgreSQL through psql: statements, plans, and putting the
seeded data set back after a write scenario."""

from __future__ import annotations

import subprocess
import urllib.parse

from .common import FEED_SQL, LIST_SQL
from .procfs import cpu_ticks


def psql(database_url: str, sql: str) -> str:
    completed = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql, database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"psql failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


def psql_pairs(database_url: str, sql: str) -> list[tuple[str, str]]:
    """The rows of a query that selects `first || '|' || second`, each as
    (first, second); `first` holds no '|' (a name)."""
    return [tuple(line.split("|", 1)) for line in psql(database_url, sql).splitlines() if "|" in line]


def database_url(admin_url: str, database: str) -> str:
    """`admin_url` pointed at another database of the same server."""
    parsed = urllib.parse.urlsplit(admin_url)
    query = parsed.query or "sslmode=disable"
    return urllib.parse.urlunsplit(parsed._replace(path=f"/{database}", query=query))


def backend_ticks(admin_url: str, database: str) -> dict[int, int]:
    """CPU ticks of each PostgreSQL backend connected to `database` (the
    server must run on this machine)."""
    pids = psql(admin_url, f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'")
    return {int(pid): cpu_ticks(int(pid)) for pid in pids.split()}


# Rows deleted per transaction by `delete_in_batches`.
DELETE_BATCH = 1000


def delete_in_batches(database_url: str, table: str, condition: str) -> None:
    """Deletes the rows of `table` that match `condition`, a batch per
    transaction. One transaction that deletes tens of thousands of articles
    changes the same count rows (migrations/0009) once per article, and each
    change walks the versions the transaction left before it: a create run's
    46,000 articles took more than two minutes that way."""
    while int(psql(database_url, f"WITH gone AS (DELETE FROM {table} WHERE ctid IN "
                                 f"(SELECT ctid FROM {table} WHERE {condition} LIMIT {DELETE_BATCH}) "
                                 "RETURNING 1) SELECT count(*) FROM gone")) > 0:
        pass


def reset_data(database_url: str, scenario: str) -> None:
    """Deletes what a write scenario added, so that every run reads the
    seeded data set."""
    if scenario == "create_article":
        delete_in_batches(database_url, "articles", "title LIKE 'Load article %'")
    elif scenario == "comment":
        delete_in_batches(database_url, "comments", "body LIKE 'Load comment %'")


def database_deadlocks(database_url: str) -> int:
    return int(psql(database_url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))


def _explain(database_url: str, sql_file, parameters: dict[str, str]) -> str:
    """EXPLAIN ANALYZE of a pgbench script's statement, its `:name::`
    variables replaced by `parameters`."""
    sql = "\n".join(line for line in sql_file.read_text().splitlines() if not line.startswith(("--", "\\")))
    for name, value in parameters.items():
        sql = sql.replace(f":{name}::", f"{value}::")
    return psql(database_url, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql.rstrip().rstrip(";"))


def explain_list_query(database_url: str) -> str:
    """PostgreSQL's plan and timings for the list endpoint's statement."""
    plan = _explain(database_url, LIST_SQL, {"viewer": "0", "page_limit": "20", "page_offset": "0"})
    return "# EXPLAIN ANALYZE of the article list's statement (anonymous viewer, limit 20), seeded data\n\n" + plan + "\n"


def explain_feed_query(database_url: str) -> str:
    """The plan and timings of the feed's statement, for the seeded user who
    follows the most authors."""
    follower = psql(database_url, "SELECT follower_id FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    follows = psql(database_url, f"SELECT count(*) FROM follows WHERE follower_id = {int(follower)}")
    plan = _explain(database_url, FEED_SQL, {"viewer": follower, "page_limit": "20", "page_offset": "0"})
    return (f"# EXPLAIN ANALYZE of the feed's statement (user {follower}, who follows {follows} authors; "
            "limit 20), seeded data\n\n" + plan + "\n")
