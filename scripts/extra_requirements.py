"""Print the requirements of pyproject.toml extras, one per line: `python scripts/extra_requirements.py airflow`.

The orchestrator environments (.venv-airflow, .venv-kfp) install these, then the project itself
with --no-deps, so that the pins live in pyproject.toml only.
"""

import sys
import tomllib
from pathlib import Path

extras = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())[
    "project"
]["optional-dependencies"]
for name in sys.argv[1:]:
    if name not in extras:
        sys.exit(f"no extra {name!r} in pyproject.toml (have: {', '.join(sorted(extras))})")
    print("\n".join(extras[name]))
