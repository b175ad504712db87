"""`python -m benchmarks.report`: the results of every measure as one Markdown table and a chart.

Reads `benchmarks/results/*.json` (written by the measures) and writes
`benchmarks/results/RESULTS.md` and `benchmarks/results/results.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.common import RESULTS

ORDER = ["online", "materialize", "historical", "reader", "spark_backfill", "stream"]
# The metric columns worth a table, per measure, in order; anything else stays in the JSON.
COLUMNS = {
    "online": ["concurrency", "requests", "rps", "p50_ms", "p95_ms", "p99_ms"],
    "materialize": ["rows", "wall_s", "rows_per_s", "peak_rss_mib"],
    "historical": ["entity_rows", "feature_rows", "wall_s", "peak_rss_mib"],
    "reader": ["read_s", "rows_per_s", "wall_s", "peak_rss_mib"],
    "spark_backfill": ["master", "events", "feature_rows", "wall_s", "events_per_s"],
    "stream": ["rate", "offered_per_s", "consumed_events", "kept_up", "p50_ms", "p99_ms", "max_ms"],
}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def load(results: Path = RESULTS) -> list[dict]:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    return [found[m] for m in [*ORDER, *sorted(set(found) - set(ORDER))] if m in found]


def markdown(measures: list[dict]) -> str:
    if not measures:
        return "No results yet: run `make bench`.\n"
    m0 = measures[0]["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m0['cores']} cores, {m0['memory_gib']} GiB ({m0['cpu']}), {m0['os']}.",
        f"Versions: Python {m0['python']}, Feast {m0['feast']}, Redis {m0['redis_server']}, "
        f"MariaDB {m0['mariadb']} (TiDB stand-in), PostgreSQL {m0['postgres']}, "
        f"DuckDB {m0['duckdb']}, PySpark {m0['pyspark']}, Java {m0['java']}.",
        "",
    ]
    for measure in measures:
        rows = measure["rows"]
        columns = COLUMNS.get(measure["measure"]) or sorted(
            {k for r in rows for k in r} - {"system"}
        )
        columns = [c for c in columns if any(c in r for r in rows)]
        params = ", ".join(f"{k}={v}" for k, v in measure["params"].items())
        lines += [f"## {measure['measure']}", "", f"Run {measure['started']}; {params}.", ""]
        lines.append("| system | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for r in rows:
            lines.append(
                f"| {r['system']} | " + " | ".join(_cell(r.get(c)) for c in columns) + " |"
            )
        if measure["ratios"]:
            lines += ["", "| ratio | value | target | met |", "|---|---:|---|---|"]
            for ratio in measure["ratios"]:
                met = "" if ratio["met"] is None else ("yes" if ratio["met"] else "**no**")
                lines.append(
                    f"| {ratio['label']} | {ratio['value']:.2f} | {ratio['target'] or ''} | {met} |"
                )
        for note in measure.get("notes", []):
            lines.append(f"\n- {note}")
        lines.append("")
    return "\n".join(lines) + "\n"


def chart(measures: list[dict], path: Path) -> None:
    """One panel per measure: the main figure of each system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = {
        "online": ("p99_ms", "p99 latency (ms)"),
        "materialize": ("rows_per_s", "rows/s"),
        "historical": ("wall_s", "wall time (s)"),
        "reader": ("read_s", "read time (s)"),
        "spark_backfill": ("events_per_s", "events/s"),
        "stream": ("p99_ms", "event-to-online p99 (ms)"),
    }
    shown = [m for m in measures if m["measure"] in main]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.5), squeeze=False)
    for ax, measure in zip(axes[0], shown, strict=True):
        metric, label = main[measure["measure"]]
        rows = [r for r in measure["rows"] if metric in r]
        ax.barh([r["system"] for r in rows], [r[metric] for r in rows], color="#4a7ab5")
        ax.set_title(measure["measure"])
        ax.set_xlabel(label)
        ax.invert_yaxis()
        if measure["measure"] == "online":
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    measures = load()
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = markdown(measures)
    (RESULTS / "RESULTS.md").write_text(text)
    chart(measures, RESULTS / "results.png")
    print(text)
    print(f"wrote {RESULTS / 'RESULTS.md'} and {RESULTS / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
