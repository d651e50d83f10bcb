"""What TLS costs at the edge: HTTPS against plain HTTP through nginx.

Two nginx instances run the project's nginx.conf in front of the same
replicas (`bench stack`): the production one, whose API server block listens
with TLS and HTTP/2, and a second one whose same server block listens without
TLS, only so that the difference can be measured. Both are measured in one
run, interleaved round by round, so that whatever else the machine does hits
both alike:

- keep-alive throughput: wrk, 64 connections, per scenario (the wrk
  connections are opened once; only the record layer costs per request);
- new connections per second: client processes that each open a connection,
  send one `GET /api/tags` with `Connection: close` and read the answer, in a
  loop: over plain HTTP, over TLS with a full handshake every time, and over
  TLS resuming the previous session (nginx's shared session cache; the
  fraction of connections actually resumed is counted, not assumed).

It has its own chart, `<name>-tls.svg`, and its section follows the list of
the report's files.
"""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..common import log
from ..database import reset_data
from ..formatting import split_list
from ..load import run_wrk
from ..measure import measured, median_run
from .base import Context, Experiment

SCENARIOS = ("article", "list_anon")
HANDSHAKE_MODES = ("plain", "tls_full", "tls_resumed")
MODE_LABELS = {
    "plain": "plain HTTP",
    "tls_full": "TLS, full handshake",
    "tls_resumed": "TLS, session resumed",
}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("HTTPS against plain HTTP through nginx")
    group.add_argument("--tls-scenarios", type=split_list, default=",".join(SCENARIOS),
                       help="keep-alive scenarios measured over HTTPS and plain HTTP through nginx "
                            "(empty: skip the TLS comparison)")
    group.add_argument("--tls-connections", type=int, default=64)
    group.add_argument("--tls-duration", type=int, default=10, help="seconds per run")
    group.add_argument("--tls-rounds", type=int, default=3)
    group.add_argument("--tls-clients", type=int, default=4,
                       help="client processes opening connections in the new-connection runs")


@dataclass(frozen=True)
class Settings:
    scenarios: list[str]
    connections: int
    seconds: int
    rounds: int
    clients: int

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.tls_scenarios:
            return None
        return cls(args.tls_scenarios, args.tls_connections, args.tls_duration, args.tls_rounds, args.tls_clients)


@dataclass(frozen=True)
class Edge:
    url: str
    nginx_pid: int | None


def _connection_loop(mode: str, host: str, port: int, ca: str | None, seconds: float, out) -> None:
    """One client process: new connections until the time is up."""
    context = None
    if mode != "plain":
        context = ssl.create_default_context(cafile=ca)
        # HTTP/1.1 over TLS, as wrk speaks it; ALPN still runs.
        context.set_alpn_protocols(["http/1.1"])
    request = f"GET /api/tags HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    session = None
    connections = resumed = failures = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            raw = socket.create_connection((host, port), timeout=10)
            if context is None:
                stream = raw
            else:
                stream = context.wrap_socket(raw, server_hostname=host,
                                             session=session if mode == "tls_resumed" else None)
            stream.sendall(request)
            head = b""
            while True:
                chunk = stream.recv(65536)
                if not chunk:
                    break
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                failures += 1
            elif context is not None:
                if stream.session_reused:
                    resumed += 1
                # TLS 1.3 tickets arrive after the handshake: the session is
                # complete only once the answer has been read.
                session = stream.session
            connections += 1
            stream.close()
        except OSError:
            failures += 1
    out.put((connections, resumed, failures))


def new_connections(url: str, mode: str, ca: str | None, clients: int, seconds: float) -> dict:
    parsed = urllib.parse.urlsplit(url)
    results = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_connection_loop,
                                args=(mode, parsed.hostname, parsed.port, ca, seconds, results))
        for _ in range(clients)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    totals = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    connections = sum(t[0] for t in totals)
    resumed = sum(t[1] for t in totals)
    return {
        "mode": mode,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "connections": connections,
        "per_second": round(connections / elapsed, 1) if elapsed else 0.0,
        "resumed_fraction": round(resumed / connections, 3) if connections and mode != "plain" else None,
        "failures": sum(t[2] for t in totals),
    }


def keepalive(settings: Settings, context: Context, edges: dict[str, Edge], scenario: str) -> dict:
    """wrk over both edges in turn, `settings.rounds` times; the median round of each."""
    stack = context.stack
    runs: dict[str, list[dict]] = {key: [] for key in edges}
    for round_number in range(settings.rounds):
        for key, edge in edges.items():
            runs[key].append(measured(
                stack.replicas, stack.postgres_pid, edge.nginx_pid,
                partial(run_wrk, edge.url, scenario, settings.connections, settings.seconds, context.data_dir),
            ))
            reset_data(stack.database_url, scenario)
        log(f"tls {scenario} round {round_number + 1}: "
            + ", ".join(f"{key} {value[-1]['rps']}" for key, value in runs.items()))
    entry = {key: median_run(value) for key, value in runs.items()}
    entry["ratio"] = round(entry["https"]["rps"] / entry["http"]["rps"], 3) if entry["http"]["rps"] else None
    return entry


def connection_rates(settings: Settings, context: Context, edges: dict[str, Edge]) -> dict:
    """New connections per second in every handshake mode, in turn,
    `settings.rounds` times; the median round of each."""
    stack = context.stack
    ca = str(stack.ca) if stack.ca.exists() else None
    samples: dict[str, list[dict]] = {mode: [] for mode in HANDSHAKE_MODES}
    for round_number in range(settings.rounds):
        for mode in HANDSHAKE_MODES:
            edge = edges["http" if mode == "plain" else "https"]
            holder: dict = {}

            def action(mode=mode, edge=edge, holder=holder):
                holder.update(new_connections(edge.url, mode, ca, settings.clients, settings.seconds))
                return {"requests": holder["connections"], "rps": holder["per_second"]}

            sample = measured(stack.replicas, stack.postgres_pid, edge.nginx_pid, action)
            holder["nginx_cpu_ms_per_connection"] = sample.get("nginx_cpu_ms_per_request")
            samples[mode].append(holder)
        log(f"tls new connections round {round_number + 1}: "
            + ", ".join(f"{mode} {value[-1]['per_second']}/s" for mode, value in samples.items()))
    rates = {}
    for mode, values in samples.items():
        middle = sorted(values, key=lambda v: v["per_second"])[len(values) // 2]
        middle["all_rounds_per_second"] = [v["per_second"] for v in values]
        rates[mode] = middle
    return rates


def run(settings: Settings, context: Context) -> dict:
    stack = context.stack
    edges = {"https": Edge(stack.url, stack.nginx_pid), "http": Edge(stack.plain_url, stack.plain_nginx_pid)}
    result: dict = {
        "connections": settings.connections,
        "seconds": settings.seconds,
        "rounds": settings.rounds,
        "keepalive": {},
        "new_connections": {},
    }
    for scenario in settings.scenarios:
        result["keepalive"][scenario] = keepalive(settings, context, edges, scenario)
    result["new_connections"] = connection_rates(settings, context, edges)
    return result


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(report: dict) -> list[str]:
    section = report.get("tls")
    if not section:
        return []
    lines = [
        "",
        "## HTTPS against plain HTTP through nginx",
        "",
        "The same nginx.conf in front of the same replicas, once with its API server block over TLS "
        "(production: TLS 1.3 with X25519 and an ECDSA P-256 certificate, HTTP/2 offered over ALPN) and once "
        "without TLS (measurement only); interleaved, "
        f"{section['rounds']} rounds, medians.",
        "",
        f"Keep-alive throughput, wrk with {section['connections']} connections, "
        f"{section['seconds']} s per run (wrk speaks HTTP/1.1 over TLS):",
        "",
        "| scenario | HTTPS req/s | HTTP req/s | HTTPS / HTTP | HTTPS p99 ms | HTTP p99 ms "
        "| nginx CPU ms/req HTTPS | nginx CPU ms/req HTTP | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, entry in section["keepalive"].items():
        https, http = entry["https"], entry["http"]
        lines.append(
            f"| {scenario} | {https['rps']:,.0f} | {http['rps']:,.0f} | {entry['ratio']:.3f} "
            f"| {https['latency_ms']['p99']} | {http['latency_ms']['p99']} "
            f"| {_ms(https.get('nginx_cpu_ms_per_request'))} | {_ms(http.get('nginx_cpu_ms_per_request'))} "
            f"| {https['errors'] + http['errors']} |"
        )
    lines += [
        "",
        "New connections per second: client processes each opening a connection, sending one "
        "`GET /api/tags` with `Connection: close` and reading the answer, in a loop "
        "(the clients run on the same cores as nginx and the replicas):",
        "",
        "| connection | per second | rounds | resumed | nginx CPU ms per connection | failures |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for mode, entry in section["new_connections"].items():
        resumed = "-" if entry["resumed_fraction"] is None else f"{entry['resumed_fraction']:.0%}"
        rounds = ", ".join(f"{v:,.0f}" for v in entry["all_rounds_per_second"])
        lines.append(
            f"| {MODE_LABELS[mode]} ({entry['clients']} clients) | {entry['per_second']:,.0f} | {rounds} "
            f"| {resumed} | {_ms(entry.get('nginx_cpu_ms_per_connection'))} | {entry['failures']} |"
        )
    lines.append("")
    if section.get("chart"):
        lines += [f"Chart: [{section['chart']}]({section['chart']})", ""]
    return lines


def chart(report: dict, path: Path, plt) -> bool:
    section = report["tls"]
    if not section.get("keepalive") and not section.get("new_connections"):
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    scenarios = list(section["keepalive"])
    width = 0.38
    positions = range(len(scenarios))
    left.bar([p - width / 2 for p in positions], [section["keepalive"][s]["https"]["rps"] for s in scenarios],
             width, label="HTTPS")
    left.bar([p + width / 2 for p in positions], [section["keepalive"][s]["http"]["rps"] for s in scenarios],
             width, label="plain HTTP")
    left.set_xticks(list(positions), scenarios)
    left.set_ylabel("requests per second")
    left.set_title(f"keep-alive, {section['connections']} connections")
    left.legend()
    modes = list(section["new_connections"])
    right.bar(range(len(modes)), [section["new_connections"][m]["per_second"] for m in modes],
              color=["tab:gray", "tab:red", "tab:green"][: len(modes)])
    right.set_xticks(range(len(modes)), [MODE_LABELS[m] for m in modes], rotation=12)
    right.set_ylabel("new connections per second")
    right.set_title("one request per connection")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


EXPERIMENT = Experiment(key="tls", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown, chart=chart, chart_suffix="-tls", after_files=True)
