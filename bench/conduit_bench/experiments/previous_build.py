"""A previous build against the current one (`--previous DIR`, a directory
holding that build's `wasmhost` and `conduit.wasm`).

The previous build runs as one more replica beside the stack, on the same
database; it and the stack's first replica (the current build) are called
directly, one concurrency level, taking turns over several rounds for every
scenario (`interleaved`). For `create_article` the rows of `tags` each build
updated are counted; for logins the password hash is timed on its own, in
one program (bench/argon2-hash) built natively and for wasm32-wasip2, and
against a login at one connection on each build.

Its chart shares the report's main chart file and is drawn only when the run
measured no Conduit scenario (the usual way to run this comparison).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import ARGON2_NATIVE, ARGON2_WASM, ROOT, log
from ..database import psql
from ..formatting import fmt, peak_rss, ratio, rounds_rps, split_list
from ..load import run_wrk
from ..measure import ComparisonLoad, interleaved
from ..processes import start_replica_like
from .base import Context, Experiment


def add_arguments(parser) -> None:
    group = parser.add_argument_group("previous build against the current one")
    group.add_argument("--previous", type=Path,
                       help="a previous build (a directory with wasmhost and conduit.wasm) to compare with the current one")
    group.add_argument("--previous-label", default="previous build", help="which build --previous holds")
    group.add_argument("--compare-scenarios", type=split_list, default="create_article,feed,login,list_auth,article")


@dataclass(frozen=True)
class Settings:
    directory: Path
    label: str
    scenarios: list[str]
    load: ComparisonLoad
    wasmtime: Path | None       # runs the hash program built for wasm32-wasip2

    @classmethod
    def from_args(cls, args) -> Settings | None:
        if not args.previous:
            return None
        return cls(args.previous, args.previous_label, args.compare_scenarios,
                   ComparisonLoad.from_args(args), args.wasmtime)


def previous_manifest(previous: Path, work_dir: Path) -> Path:
    """The project's spin.toml with the Conduit component taken from the
    previous build; the docs component is the current one."""
    text = (ROOT / "spin.toml").read_text()
    text = text.replace(
        'source = "target/wasm32-wasip2/release/conduit.wasm"',
        f'source = "{(previous / "conduit.wasm").resolve()}"',
    )
    text = text.replace(
        'source = "target/wasm32-wasip2/release/docs.wasm"',
        f'source = "{(ROOT / "target/wasm32-wasip2/release/docs.wasm").resolve()}"',
    )
    manifest = work_dir / "previous-spin.toml"
    manifest.write_text(text)
    return manifest


def tags_updates(database_url: str) -> int:
    """Row updates of the tags table so far (pg_stat_user_tables). A backend
    flushes its statistics at most once a second, and an idle one within ten
    seconds: wait for that, so that each run is charged its own updates."""
    time.sleep(11)
    return int(psql(database_url, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'tags'") or 0)


def argon2_hashes(wasmtime: Path | None, rounds: int = 3, iterations: int = 30) -> dict:
    """The login's argon2id hash, timed by one program (bench/argon2-hash)
    built natively and for wasm32-wasip2 (run by `wasmtime run`, the same
    Cranelift as wasmhost's), in interleaved rounds: the median of the
    rounds' medians, and the best hash of all."""
    commands = {"native": [str(ARGON2_NATIVE), str(iterations)]}
    if wasmtime and ARGON2_WASM.exists():
        commands["wasm"] = [str(wasmtime), "run", str(ARGON2_WASM), str(iterations)]
    else:
        log(f"{ARGON2_WASM} or wasmtime is missing: the hash is timed natively only")
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out))
    hashes: dict = {"params": runs["native"][0]["params"], "rounds": rounds, "iterations": iterations}
    for name, results in runs.items():
        hashes[f"{name}_median_ms"] = round(statistics.median(r["median_ms"] for r in results), 2)
        hashes[f"{name}_min_ms"] = round(min(r["min_ms"] for r in results), 2)
        hashes[f"{name}_rounds_ms"] = [round(r["median_ms"], 2) for r in results]
    if "wasm" in runs:
        hashes["wasm_vs_native"] = round(hashes["wasm_median_ms"] / hashes["native_median_ms"], 2)
    return hashes


def compare_scenario(settings: Settings, context: Context, sides: dict, scenario: str) -> dict:
    database_url = context.stack.database_url
    # For creations, the tags rows each build updated: the counter read
    # after one run is the starting point of the next.
    updates: dict[str, int] = {"previous": 0, "current": 0}
    after_run = None
    if scenario == "create_article":
        counter = {"last": tags_updates(database_url)}

        def count_updates(key: str) -> None:
            now = tags_updates(database_url)
            updates[key] += now - counter["last"]
            counter["last"] = now

        after_run = count_updates

    entry = interleaved(sides, scenario, settings.load, context.data_dir, context.stack.postgres_pid, database_url,
                        after_run)
    entry["ratio"] = ratio(entry["current"]["rps"], entry["previous"]["rps"])
    if scenario == "create_article":
        entry["tags_rows_updated"] = updates
    return entry


def run(settings: Settings, context: Context) -> dict:
    # A private copy, as of the measured build (see runner).
    wasmhost = context.work_dir / "wasmhost-previous"
    shutil.copy2(settings.directory / "wasmhost", wasmhost)
    first = context.stack.replicas[0]
    previous_child, previous = start_replica_like(
        context.procs, first, "previous", wasmhost, previous_manifest(settings.directory, context.work_dir),
    )
    sides = {"previous": previous, "current": first.renamed("current")}
    results: dict = {"label": settings.label, **settings.load.report(), "scenarios": {}}
    for replica in sides.values():
        run_wrk(replica.api_url, "article", 8, 2, context.data_dir)
    for scenario in settings.scenarios:
        results["scenarios"][scenario] = compare_scenario(settings, context, sides, scenario)

    # The login's password hash: the same source (bench/argon2-hash) built
    # natively and for wasm32-wasip2, and the component's (a login at one
    # connection, which is the hash plus one primary-key SELECT).
    hashes = argon2_hashes(settings.wasmtime)
    for key, replica in sides.items():
        login = run_wrk(replica.api_url, "login", 1, settings.load.seconds, context.data_dir)
        hashes[f"{key}_login_c1_p50_ms"] = login["latency_ms"]["p50"]
        hashes[f"{key}_vs_native"] = round(login["latency_ms"]["p50"] / hashes["native_median_ms"], 2)
    results["argon2"] = hashes
    log(f"argon2: native {hashes['native_median_ms']} ms, wasm {hashes.get('wasm_median_ms')} ms; login at c=1 previous "
        f"{hashes['previous_login_c1_p50_ms']} ms, current {hashes['current_login_c1_p50_ms']} ms")
    context.procs.stop(previous_child)
    return results


def hash_lines(hashes: dict) -> list[str]:
    lines = []
    if "wasm_median_ms" in hashes:
        lines.append(
            f"- Password hash ({hashes['params']}), one program (bench/argon2-hash) built natively and "
            f"for wasm32-wasip2 (`wasmtime run`), {hashes.get('rounds', 1)} interleaved rounds of "
            f"{hashes.get('iterations', '?')} hashes: native {hashes['native_median_ms']} ms median "
            f"({hashes['native_min_ms']} ms best), WebAssembly {hashes['wasm_median_ms']} ms median "
            f"({hashes['wasm_min_ms']} ms best): **{hashes['wasm_vs_native']}x** native; medians by round: "
            f"native {', '.join(fmt(x, 1) for x in hashes['native_rounds_ms'])}; "
            f"WebAssembly {', '.join(fmt(x, 1) for x in hashes['wasm_rounds_ms'])}"
        )
    lines.append(
        f"- Password hash ({hashes['params']}): native "
        f"{hashes['native_median_ms']} ms median, {hashes['native_min_ms']} ms best; a login at one "
        f"connection (the hash plus one SELECT), p50: previous build {hashes['previous_login_c1_p50_ms']} ms "
        f"(**{hashes['previous_vs_native']}x** native), current build {hashes['current_login_c1_p50_ms']} ms "
        f"(**{hashes['current_vs_native']}x** native)"
    )
    return lines


def markdown(report: dict) -> list[str]:
    compare = report.get("compare")
    if not compare:
        return []
    lines = [
        f"## Previous build ({compare['label']}) against the current one",
        "",
        f"One replica each, called directly, on the same database; {compare['connections']} connections, "
        f"{compare['seconds']}s per run, {compare['rounds']} interleaved rounds (previous, current, ...), "
        "median round shown.",
        "",
        "| scenario | previous req/s | current req/s | current / previous | previous p99 ms | current p99 ms "
        "| previous SQL/req | current SQL/req | previous replica CPU ms/req | current replica CPU ms/req "
        "| previous peak RSS MiB | current peak RSS MiB | rounds (previous; current) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario, entry in compare["scenarios"].items():
        prev, cur = entry["previous"], entry["current"]
        lines.append(
            f"| `{scenario}` | {fmt(prev['rps'])} | {fmt(cur['rps'])} | **{entry['ratio']}x** "
            f"| {fmt(prev['latency_ms']['p99'], 1)} | {fmt(cur['latency_ms']['p99'], 1)} "
            f"| {fmt(prev.get('sql_per_request'), 2)} | {fmt(cur.get('sql_per_request'), 2)} "
            f"| {fmt(prev.get('replica_cpu_ms_per_request'), 2)} | {fmt(cur.get('replica_cpu_ms_per_request'), 2)} "
            f"| {fmt(peak_rss(prev))} | {fmt(peak_rss(cur))} "
            f"| {rounds_rps(prev)}; {rounds_rps(cur)} |"
        )
    create = compare["scenarios"].get("create_article", {})
    if "tags_rows_updated" in create:
        updated = create["tags_rows_updated"]
        lines += ["", f"- Rows of `tags` updated during the create runs (`pg_stat_user_tables.n_tup_upd`): "
                      f"previous build {updated['previous']}, current build {updated['current']}"]
    if compare.get("argon2"):
        lines += hash_lines(compare["argon2"])
    lines.append("")
    return lines


def chart(report: dict, path: Path, plt) -> bool:
    """Previous against current build: req/s and p99 per scenario, as bars."""
    if report["targets"]:
        return False
    compare = report["compare"]
    names = list(compare["scenarios"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.38
    for axis, (title, value) in zip(axes, (
        ("requests per second (median round)", lambda run: run["rps"]),
        ("p99 latency, ms", lambda run: run["latency_ms"]["p99"]),
    )):
        for offset, key, label in ((-width / 2, "previous", compare["label"]), (width / 2, "current", "current build")):
            axis.bar([i + offset for i in range(len(names))],
                     [value(compare["scenarios"][n][key]) for n in names], width, label=label)
        axis.set_xticks(range(len(names)), names, rotation=20)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"One replica, {compare['connections']} connections, {compare['rounds']} interleaved rounds")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


EXPERIMENT = Experiment(key="compare", add_arguments=add_arguments, settings=Settings.from_args, run=run,
                        markdown=markdown, chart=chart)
