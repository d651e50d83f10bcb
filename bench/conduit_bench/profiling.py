"""CPU profiles of one wasmhost process under load: `perf record` with the
software clock (the VM has no hardware counters), summarised as text by kind
of code, top functions and the inclusive time of a few functions of
interest. wasmtime maps precompiled components from files, so perf names the
guest's functions (`wasm[0]::function[N]::<Rust name>`), still mangled."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from .load import run_wrk

RUST_ESCAPES = {
    "$LT$": "<", "$GT$": ">", "$RF$": "&", "$BP$": "*", "$SP$": "@", "$LP$": "(", "$RP$": ")",
    "$C$": ",", "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]", "$u7b$": "{", "$u7d$": "}",
    "$u7e$": "~", "$u3b$": ";", "$u2b$": "+", "$u22$": '"',
}

INCLUSIVE_OF_INTEREST = (
    "decommit_pages",
    "exc_page_fault",
    "__x64_sys_madvise",
    "Instantiator::run",
    "call_unchecked_raw",
    "write_vectored",
    "tokio_postgres",
    "serde_json",
)

# Connections of the load while a profile is recorded.
PROFILE_CONNECTIONS = 8


def demangle_rust(symbol: str) -> str:
    """Rust's legacy mangling (_ZN<len><part>...E) inside wasmtime's
    `wasm[0]::function[N]::<name>` symbols, which perf leaves mangled."""

    def one(match: re.Match) -> str:
        text, position, parts, truncated = match.group(0), 3, [], False
        while position < len(text) and text[position].isdigit():
            digits = re.match(r"\d+", text[position:]).group(0)
            position += len(digits)
            part = text[position : position + int(digits)]
            truncated = len(part) < int(digits)
            position += int(digits)
            # A part that starts with an escape is prefixed with `_`.
            parts.append(part[1:] if part.startswith("_$") else part)
        if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
            parts.pop()
        name = "::".join(parts)
        for escape, char in RUST_ESCAPES.items():
            name = name.replace(escape, char)
        return name.replace("..", "::") + ("…" if truncated else "")

    return re.sub(r"_ZN[0-9A-Za-z_$.]+", one, symbol)


def perf_lines(perf_data: Path, *options: str) -> list[str]:
    report = subprocess.run(
        ["perf", "report", "-i", str(perf_data), "--stdio", "-g", "none", *options],
        capture_output=True,
        text=True,
    )
    return [line.rstrip() for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]


def kind_of_code(dso: str) -> str:
    if dso.endswith(".cwasm") or dso.startswith("[JIT]"):
        return "guest code (the component, compiled by wasmtime)"
    if dso.startswith("[kernel"):
        return "kernel (syscalls, page faults, network, scheduling)"
    if dso.startswith("wasmhost"):
        return "wasmhost (wasmtime runtime, tokio, hyper, tokio-postgres)"
    if dso.startswith("lib"):
        return "C library (malloc, memcpy)"
    return "other"


def perf_summary(perf_data: Path, title: str, inclusive_patterns: tuple[str, ...] = ()) -> str:
    """Where a process's CPU went: by kind of code, top functions, and the
    inclusive share of a few functions of interest."""
    kinds: dict[str, float] = {}
    for line in perf_lines(perf_data, "--no-children", "--sort", "dso", "-w", "9,400"):
        percent, _, dso = line.strip().partition("%")
        kind = kind_of_code(dso.strip())
        kinds[kind] = kinds.get(kind, 0.0) + float(percent)
    out = [f"# {title}", "", "## By kind of code", ""]
    out += [f"{share:6.2f}%  {kind}" for kind, share in sorted(kinds.items(), key=lambda kv: -kv[1])]
    out += ["", "## Top functions (self time)", ""]
    for line in perf_lines(perf_data, "--no-children", "--sort", "sym", "-w", "9,400", "--percent-limit", "0.5")[:40]:
        out.append(demangle_rust(" ".join(line.split())))
    if inclusive_patterns:
        out += ["", "## Inclusive time of functions of interest (self + callees)", ""]
        for line in perf_lines(perf_data, "--children", "--sort", "sym", "-w", "9,9,400", "--percent-limit", "0.5"):
            if any(pattern in line for pattern in inclusive_patterns):
                children, _self_time, symbol = line.split(None, 2)
                out.append(f"{children:>8}  {demangle_rust(symbol)}")
    return "\n".join(out) + "\n"


def record_profile(pid: int, load: Callable[[], object]) -> Path:
    """perf with the software clock, call graphs included, while `load`
    runs; returns the perf.data path."""
    perf_data = Path(tempfile.mkdtemp(prefix="bench-perf-")) / "perf.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-p", str(pid), "-o", str(perf_data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    load()
    recorder.send_signal(signal.SIGINT)
    recorder.wait(60)
    return perf_data


def profile(seconds: int, pid: int, url: str, scenario: str, data_dir: Path, out: Path, path: str = "") -> str | None:
    """Profiles the wasmhost process `pid` while wrk runs `scenario` against
    `url` for `seconds`; writes the summary to `out` and returns its file
    name (None without perf)."""
    if shutil.which("perf") is None:
        return None
    perf_data = record_profile(pid, lambda: run_wrk(url, scenario, PROFILE_CONNECTIONS, seconds, data_dir, path))
    what = f"scenario {scenario}{' ' + path if path else ''}"
    title = f"perf profile of one wasmhost process: {what}, {PROFILE_CONNECTIONS} connections, {seconds}s"
    out.write_text(perf_summary(perf_data, title, INCLUSIVE_OF_INTEREST))
    shutil.rmtree(perf_data.parent, ignore_errors=True)
    return out.name
