"""Paths and logging every part of the benchmark uses."""

from __future__ import annotations

import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench"
WASM = ROOT / "target/wasm32-wasip2/release"

# What the Conduit scenarios and pgbench run: the Lua script that makes
# wrk's requests, and the SQL the list and feed endpoints send.
WRK_SCRIPT = BENCH / "wrk" / "scenario.lua"
LIST_SQL = BENCH / "pgbench" / "article_list.sql"
FEED_SQL = BENCH / "pgbench" / "feed.sql"

# The components and programs measured besides the stack's replicas.
TEST_APP_WASM = WASM / "test_app.wasm"
HELLO_WASM = WASM / "hello.wasm"
ARGON2_NATIVE = ROOT / "target/release/argon2-hash"
ARGON2_WASM = WASM / "argon2-hash.wasm"


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", flush=True)


class ResultFiles:
    """Where a run's files go: bench/results/<name><suffix>."""

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name

    def path(self, suffix: str) -> Path:
        """The file `<name><suffix>` (e.g. `.json`, `-profile-login.txt`),
        its directory created."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{self.name}{suffix}"
