"""What every benchmark shares: the machine and versions, results files, ratio lines, services.

A benchmark writes `benchmarks/results/<measure>.json`:
  {"measure", "started", "machine": {...}, "params": {...}, "rows": [{"system": ..., metrics}],
   "ratios": [{"label", "value", "target", "met"}]}
and prints one `RATIO` line per comparison. `python -m benchmarks.report` turns them into a table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUFFER_POOL = "2G"  # MariaDB's, see stack()
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))


def _version(cmd: list[str], pattern: str = r"(\d+\.\d+(?:\.\d+)?)") -> str:
    if shutil.which(cmd[0]) is None:
        return "absent"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict:
    """The machine's size and every version a figure depends on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    postgres = shutil.which("postgres") or "/usr/lib/postgresql/15/bin/postgres"
    return {
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_gib, 1),
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "feast": _package("feast"),
        "pandas": _package("pandas"),
        "pyarrow": _package("pyarrow"),
        "duckdb": _package("duckdb"),
        "psycopg": _package("psycopg"),
        "pymysql": _package("pymysql"),
        "redis_py": _package("redis"),
        "pyspark": _package("pyspark"),
        "redis_server": _version(["redis-server", "--version"], r"v=(\S+)"),
        "mariadb": _version(["mariadbd", "--version"], r"Ver (\S+)"),
        "mariadb_buffer_pool": BUFFER_POOL,
        "postgres": _version([postgres, "--version"]),
        "java": _version(["java", "-version"], r'version "([^"]+)"'),
        "wrk": _version(["wrk", "--version"], r"wrk (\S+)"),
    }


class Result:
    """Rows and ratios of one measure; `save()` writes them with the machine and parameters."""

    def __init__(self, measure: str, params: dict):
        self.measure = measure
        self.params = params
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.rows: list[dict] = []
        self.ratios: list[dict] = []
        self.notes: list[str] = []

    def add(self, system: str, **metrics) -> dict:
        row = {"system": system, **metrics}
        self.rows.append(row)
        print(f"  {system}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()), flush=True)
        return row

    def ratio(self, label: str, value: float, target: str | None = None, met: bool | None = None):
        """One comparison; `target` says what the issue asks for and `met` whether this run meets it."""
        self.ratios.append({"label": label, "value": value, "target": target, "met": met})
        verdict = "" if met is None else ("  (target met)" if met else "  (target NOT met)")
        goal = f"  target {target}" if target else ""
        print(f"RATIO {self.measure}: {label} = {value:.2f}{goal}{verdict}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.measure}.json"
        payload = {
            "measure": self.measure,
            "started": self.started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "params": self.params,
            "rows": self.rows,
            "ratios": self.ratios,
            "notes": self.notes,
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
        return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@contextlib.contextmanager
def stack(keep: bool = False) -> Iterator[dict[str, str]]:
    """Fresh MariaDB (the TiDB stand-in) and Redis on free loopback ports, data in a temp dir.

    MariaDB gets a buffer pool of BUFFER_POOL. InnoDB reads with O_DIRECT, so the pool is its only
    cache, while PostgreSQL (benchmarks/postgres.py) reads through the OS page cache, i.e. all of
    the machine's free memory, besides its shared_buffers, and DuckDB reads parquet through it too.
    With devstack's 512 MiB default the 4 x 163 MiB of the historical measure's tables did not
    fit and every pass re-read pages from disk; 2 GiB holds each measure's data, as a DBA would
    size a database server's cache (TiKV's block cache defaults to 45% of memory)."""
    from devstack import MariaDB, Redis

    base = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    mariadb = redis = None
    try:
        mariadb = MariaDB(base / "mariadb", buffer_pool=BUFFER_POOL).start()
        redis = Redis(base / "redis").start()
        # the pid file: the online benchmark hangs this Redis (SIGSTOP) to measure an outage
        yield {**mariadb.env(), **redis.env(), "BENCH_REDIS_PID_FILE": str(redis.pid_file)}
    finally:
        for server in (redis, mariadb):
            if server is not None:
                server.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def _vm_hwm_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_measured(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> dict:
    """Run `cmd` to completion: wall seconds and the peak resident memory of the process (MiB).

    Peak memory is the process's own high-water mark (VmHWM), read every 20 ms while it runs,
    plus that of every child it forks (summed: an upper bound when children do not overlap).
    Not `ru_maxrss` from wait4: Linux carries the forking parent's peak into the child across
    exec, so every child of a big benchmark process would report the parent's size. Database
    servers are separate processes and are not counted.
    """
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    started = time.perf_counter()
    peaks: dict[int, float] = {}  # pid -> its VmHWM, for the process and its descendants
    try:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
        while proc.poll() is None:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                peaks[pid] = max(peaks.get(pid, 0.0), _vm_hwm_mib(pid))
            time.sleep(0.02)
    finally:
        if log:
            out.close()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{tail}")
    return {"wall_s": wall, "peak_rss_mib": sum(peaks.values())}


def python() -> str:
    return sys.executable


def header(measure: str, params: dict) -> Result:
    info = machine()
    print(
        f"== {measure}: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; "
        f"feast {info['feast']}, python {info['python']}",
        flush=True,
    )
    print("   params: " + ", ".join(f"{k}={v}" for k, v in params.items()), flush=True)
    return Result(measure, params)
