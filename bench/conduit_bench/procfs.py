"""What /proc says about processes and the machine: CPU time, memory, load."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TICK_MS = 1000.0 / CLOCK_TICKS


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def ticks_spent(before: dict[int, int], after: dict[int, int]) -> int:
    """CPU ticks a set of processes spent between two readings (pid: ticks);
    a process that started in between counts from its start."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def process_tree(root_pid: int) -> list[int]:
    """root_pid and its descendants (postmaster + backends, nginx + workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, queue = [], [root_pid]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(parents.get(pid, []))
    return tree


def tree_ticks(root_pid: int | None) -> int:
    if root_pid is None:
        return 0
    return sum(cpu_ticks(pid) for pid in process_tree(root_pid))


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS of one process, in KiB."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values


def peak_rss_mib(pid: int) -> float:
    return round(memory_kib(pid).get("VmHWM", 0) / 1024, 1)


def rss_mib(pid: int) -> float:
    return round(memory_kib(pid).get("VmRSS", 0) / 1024, 1)


def machine_state() -> dict:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return {"nproc": os.cpu_count(), "load": [float(one), float(five), float(fifteen)]}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def pid_of(pid_file: str | Path) -> int | None:
    """The process id in a pid file (nginx's), None when there is none."""
    path = Path(pid_file)
    return int(path.read_text().split()[0]) if path.exists() else None
