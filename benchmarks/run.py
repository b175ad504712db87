"""`make bench` / `python -m benchmarks.run`: every measure, one after another, then the report.

Each measure runs in its own process (they start their own services) and prints its RATIO lines;
one failing measure does not stop the others, but makes the run exit non-zero. `--quick` runs
every measure at a small scale, to check the benchmarks themselves in a few minutes; its figures
are not the published ones.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import ROOT, machine

MEASURES = ["online", "materialize", "historical", "reader", "spark_backfill", "stream"]
QUICK = {
    "online": ["--users", "1000", "--requests", "2000", "--concurrency", "1", "8"],
    "materialize": ["--rows", "40000"],
    "historical": ["--entity-rows", "5000", "--rows-per-view", "50000", "--users", "5000"],
    "reader": ["--rows", "20000", "--repeat", "1"],
    "spark_backfill": ["--days", "30", "--users", "300"],
    "stream": ["--rates", "200", "--seconds", "10"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=MEASURES, default=MEASURES)
    parser.add_argument("--quick", action="store_true", help="Small scale: checks, not figures.")
    args = parser.parse_args(argv)
    info = machine()
    print(f"Benchmarks on {info['cores']} cores, {info['memory_gib']} GiB ({info['cpu']})")
    failed = []
    for measure in args.only:
        started = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            f"benchmarks.{measure}",
            *(QUICK[measure] if args.quick else []),
        ]
        print(f"\n### {measure}: {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            failed.append(measure)
        print(f"### {measure} took {time.perf_counter() - started:.0f} s", flush=True)
    subprocess.run([sys.executable, "-m", "benchmarks.report"], cwd=ROOT, check=True)
    if failed:
        print(f"error: these measures failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
