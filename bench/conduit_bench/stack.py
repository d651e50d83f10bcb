"""The local stack under test (`bench stack`): a private PostgreSQL cluster,
three wasmhost replicas and nginx with the project's config over HTTPS, plus
a second nginx without TLS for the TLS comparison. The Rust side
(bench/src/main.rs, on the devstack library) starts it and describes it as
one JSON line; it stops when its stdin closes."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .common import ROOT
from .processes import Processes, Replica
from .procfs import pid_of


@dataclass(frozen=True)
class Stack:
    replicas: list[Replica]
    url: str                    # nginx over HTTPS, as clients reach the API
    plain_url: str              # the second nginx, its API server block without TLS
    ca: Path                    # the stack's local CA, which signed nginx's certificate
    database_url: str           # the application's role
    owner_database_url: str     # the role that owns the schema (can alter triggers)
    postgres_pid: int
    nginx_pid: int | None
    plain_nginx_pid: int | None


def start_stack(procs: Processes, bench_bin: Path, wasmhost: Path, state_dir: Path, *,
                max_concurrency: int, pg_pool_size: int) -> Stack:
    child = procs.start(
        [
            str(bench_bin), "stack",
            "--root", str(ROOT),
            "--state-dir", str(state_dir),
            "--replicas", "3",
            "--env", f"WASMHOST_MAX_CONCURRENCY={max_concurrency}",
            "--env", f"WASMHOST_PG_POOL_SIZE={pg_pool_size}",
            "--env", "RUST_LOG=warn",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, WASMHOST_BIN=str(wasmhost)),
    )
    description = json.loads(child.stdout.readline() or "null")
    if description is None:
        raise RuntimeError("the stack did not start (see its output above)")
    pg_dir = Path(description["postgres_data_dir"])
    return Stack(
        replicas=[Replica(r["name"], r["api_url"], r["admin_url"], r["pid"]) for r in description["replicas"]],
        url=description["url"],
        plain_url=description["plain_url"],
        ca=Path(description["ca"]),
        database_url=description["app_database_url"],
        owner_database_url=description["owner_database_url"],
        postgres_pid=int((pg_dir / "postmaster.pid").read_text().split()[0]),
        nginx_pid=pid_of(description["nginx_pid_file"]),
        plain_nginx_pid=pid_of(description["plain_nginx_pid_file"]),
    )
