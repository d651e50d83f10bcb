"""Starting and stopping what the benchmark measures.

Every process goes through `Processes`, which stops what is still running in
reverse order when the run ends (or fails). `wasmhost_serve_command` is the
one place that knows wasmhost's command line; the test fixture, the hello
component and the extra Conduit replicas differ only in their manifest,
options and environment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

from .common import HELLO_WASM, ROOT, TEST_APP_WASM
from .procfs import cpu_ticks


class Processes:
    """Everything this run started, stopped in reverse order on exit."""

    def __init__(self):
        self.children: list[subprocess.Popen] = []

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        child = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.children.append(child)
        return child

    def stop(self, child: subprocess.Popen, timeout: float = 60.0) -> None:
        if child.poll() is None:
            if child.stdin:
                child.stdin.close()
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request("GET", parsed.path or "/")
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get(url)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout:.0f}s")
        time.sleep(0.2)


def metric_sum(text: str, name: str, label: str | None = None) -> float:
    """Sum of every sample of `name` (optionally only those with `label`)
    in Prometheus' text format."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if rest[:1] not in ("{", " "):
            continue
        if label is not None and label not in rest:
            continue
        total += float(line.rsplit(" ", 1)[1])
    return total


class Replica:
    """One wasmhost process: where it answers, and its counters."""

    def __init__(self, name: str, api_url: str, admin_url: str, pid: int):
        self.name, self.api_url, self.admin_url, self.pid = name, api_url, admin_url, pid

    def renamed(self, name: str) -> Replica:
        """The same process under another name (a side of a comparison)."""
        return Replica(name, self.api_url, self.admin_url, self.pid)

    def metrics(self) -> str:
        return http_get(self.admin_url + "/metrics")[1]

    def counters(self) -> dict[str, float]:
        text = self.metrics()
        return {
            "requests": metric_sum(text, "wasmhost_requests_total"),
            "rejected": metric_sum(text, "wasmhost_requests_rejected_total"),
            "statements": metric_sum(text, "wasmhost_pg_statements_total"),
            "cache_hit": metric_sum(text, "wasmhost_pg_statement_cache_total", 'result="hit"'),
            "cache_miss": metric_sum(text, "wasmhost_pg_statement_cache_total", 'result="miss"'),
            "cpu_ticks": cpu_ticks(self.pid),
        }


def wasmhost_serve_command(wasmhost: Path, manifest: Path, api_port: int, admin_port: int,
                           options: list[str]) -> list[str]:
    """`wasmhost serve` of one manifest on loopback ports, plus `options`."""
    return [
        str(wasmhost), "serve",
        "--manifest", str(manifest),
        "--listen", f"127.0.0.1:{api_port}",
        "--admin-listen", f"127.0.0.1:{admin_port}",
        *options,
    ]


def start_wasmhost(procs: Processes, name: str, wasmhost: Path, manifest: Path, *, options: tuple[str, ...] | list[str] = (),
                   env: dict[str, str], cwd: Path | None = None, ready_timeout: float = 120.0):
    """wasmhost serving `manifest`, once its admin port answers ready:
    (the process, the Replica that reads its counters)."""
    api_port, admin_port = free_port(), free_port()
    child = procs.start(
        wasmhost_serve_command(wasmhost, manifest, api_port, admin_port, list(options)),
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{admin_port}/readyz", timeout=ready_timeout)
    return child, Replica(name, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}", child.pid)


def test_app_manifest(work_dir: Path) -> Path:
    """The host tests' fixture manifest, pointed at the release build."""
    fixture = ROOT / "host/tests/fixtures/test-app"
    manifest = work_dir / "test-app.toml"
    manifest.write_text((fixture / "spin.toml").read_text()
                        .replace("WASM_PATH", str(TEST_APP_WASM)).replace("STATIC_DIR", str(fixture / "static")))
    return manifest


def start_test_app(procs: Processes, wasmhost: Path, manifest: Path, database_url: str, statement_cache: bool,
                   cache_dir: Path, name: str = "test-app", options: tuple[str, ...] | list[str] = ()):
    """The test fixture component, its database variables set to
    `database_url`, plus `options` (a runtime-config file, a state
    directory)."""
    parsed = urllib.parse.urlsplit(database_url)
    env = dict(
        os.environ,
        SPIN_VARIABLE_DB_URL=database_url,
        SPIN_VARIABLE_DB_HOST=parsed.hostname or "127.0.0.1",
        SPIN_VARIABLE_DB_PORT=str(parsed.port or 5432),
        RUST_LOG="warn",
    )
    flags = ["--pg-statement-cache", "true" if statement_cache else "false", "--cache-dir", str(cache_dir), *options]
    return start_wasmhost(procs, name, wasmhost, manifest, options=flags, env=env)


def start_hello_wasmhost(procs: Processes, wasmhost: Path, work_dir: Path, reuse: int):
    """wasmhost serving the pure hello component (bench/hello), with
    `--max-instance-reuse reuse`."""
    manifest = work_dir / "hello.toml"
    manifest.write_text((ROOT / "bench/hello/spin.toml").read_text().replace("WASM_PATH", str(HELLO_WASM)))
    options = ["--cache-dir", str(work_dir / "hello-cache"), "--max-instance-reuse", str(reuse)]
    return start_wasmhost(procs, f"hello-wasmhost-reuse-{reuse}", wasmhost, manifest, options=options,
                          env=dict(os.environ, RUST_LOG="warn"))


def start_replica_like(procs: Processes, like: Replica, name: str, wasmhost: Path, manifest: Path,
                       extra_env: dict[str, str] | None = None, without: tuple[str, ...] = ()):
    """A replica beside the stack: the same command line shape and
    environment as the stack's replica `like` (read from /proc), on the same
    database, with the given wasmhost, manifest and extra environment, and
    without the variables named in `without`."""
    environ = Path(f"/proc/{like.pid}/environ").read_bytes().split(b"\0")
    env = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
    for variable in without:
        env.pop(variable, None)
    env.update(extra_env or {})
    return start_wasmhost(procs, name, wasmhost, manifest, env=env, cwd=ROOT, ready_timeout=300.0)


def start_wasmtime_serve(procs: Processes, wasmtime: Path, reuse: int):
    """`wasmtime serve` running the hello component; `reuse` > 1 sets
    `--max-instance-reuse-count` (its default for WASIp2 components is 1).
    Returns (the process, its URL)."""
    port = free_port()
    # `-S cli=y`: Rust's standard library in the component imports
    # wasi:cli/environment, which `wasmtime serve` adds only on request.
    command = [str(wasmtime), "serve", "-S", "cli=y", "--addr", f"127.0.0.1:{port}"]
    if reuse > 1:
        command += ["--max-instance-reuse-count", str(reuse)]
    child = procs.start(command + [str(HELLO_WASM)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/hello")
    return child, f"http://127.0.0.1:{port}"


def start_native_hello(procs: Processes, bench_bin: Path):
    """`bench native-hello`, the native hyper server answering the same text
    as the hello component. Returns (the process, its URL)."""
    port = free_port()
    child = procs.start([str(bench_bin), "native-hello", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/")
    return child, f"http://127.0.0.1:{port}"


class OtlpSink:
    """`bench otlp-sink`: one counting OTLP receiver per traced replica, in
    one process; the counts are read by writing a line to its stdin."""

    def __init__(self, procs: Processes, bench_bin: Path, receivers: int):
        self.child = procs.start(
            [str(bench_bin), "otlp-sink"] + ["--listen", "127.0.0.1:0"] * receivers,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started = json.loads(self.child.stdout.readline() or "null")
        if started is None:
            raise RuntimeError("bench otlp-sink did not start")
        self.receivers = started["receivers"]

    def env(self, receiver: int) -> dict[str, str]:
        """The environment that points a replica at one receiver."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.receivers[receiver]["endpoint"],
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.receivers[receiver]["protocol"],
        }

    def counts(self) -> list[dict]:
        """Spans and export requests received so far, per receiver."""
        self.child.stdin.write("counts\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())["receivers"]
