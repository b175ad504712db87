"""Airflow tests run in .venv-airflow (`make test-orchestration`), with Airflow's home in a temp dir.

Airflow reads its configuration when first imported, so the environment is set here, before any
test module imports it.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
# The shipped DAGs are the deployment's dags folder, as README "Use from Airflow" sets it up.
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(
    os.path.dirname(__file__), "..", "..", "pipelines", "airflow", "dags"
)
