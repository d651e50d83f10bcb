"""A PostgreSQL cluster of the benchmark's own: initdb in a temporary
directory, the server on a free loopback port with the settings the stack's
cluster has (devstack's PostgresCluster) plus `pg_stat_statements`, which
needs `shared_preload_libraries` and so a server started for it.

Trust authentication on 127.0.0.1 only; no Unix socket. Run as root, the
server runs as the `postgres` system user, as PostgreSQL requires.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .database import psql
from .processes import Processes, free_port

SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "200",
    "log_min_messages": "warning",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
}


@dataclass(frozen=True)
class PrivatePostgres:
    child: subprocess.Popen
    directory: Path
    port: int
    version: str

    @property
    def pid(self) -> int:
        return self.child.pid

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"


def server_bin_dir() -> Path:
    """The newest installed server's binaries (initdb, postgres)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    if not candidates:
        found = shutil.which("initdb")
        if found is None:
            raise RuntimeError("no PostgreSQL server installed (initdb not found)")
        return Path(found).parent
    return candidates[-1].parent


def server_user() -> dict:
    """Popen's user and group arguments: the `postgres` system user when
    running as root (the server refuses to run as root), nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid}


def wait_accepting(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            psql(url, "SELECT 1")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_private_postgres(procs: Processes) -> PrivatePostgres:
    """initdb and the server, ready; stopped with the other processes (its
    directory is removed by `remove`)."""
    directory = Path(tempfile.mkdtemp(prefix="conduit-bench-pg-"))
    data_dir = directory / "data"
    user = server_user()
    if user:
        os.chown(directory, user["user"], user["group"])
    bin_dir = server_bin_dir()
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-E", "UTF8", "--locale=C",
                    "--auth=trust"], check=True, capture_output=True, **user)
    port = free_port()
    settings = [arg for name, value in SETTINGS.items() for arg in ("-c", f"{name}={value}")]
    with open(directory / "server.log", "wb") as log_file:
        child = procs.start([str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port), *settings],
                            stdout=log_file, stderr=subprocess.STDOUT, **user)
    cluster = PrivatePostgres(child, directory, port, version="")
    wait_accepting(cluster.url())
    version = psql(cluster.url(), "SHOW server_version").split()[0]
    return PrivatePostgres(child, directory, port, version)


def remove(procs: Processes, cluster: PrivatePostgres) -> None:
    procs.stop(cluster.child)
    shutil.rmtree(cluster.directory, ignore_errors=True)
