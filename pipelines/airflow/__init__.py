"""Airflow provider for the feature platform: a hook and operators that run the platform's own
commands (the stock `feast` CLI, the Spark jobs, training, the skew report).

Install into an Airflow 3 deployment with `pip install --no-deps fraud-feature-platform` next to
Airflow (README, "Use from Airflow"): this package imports only Airflow and the standard library,
and runs the commands in the platform's environment (the connection's `python` extra).
"""

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Airflow's provider metadata (the `apache_airflow_provider` entry point)."""
    return {
        "package-name": "fraud-feature-platform",
        "name": "Fraud feature platform (Feast on TiDB)",
        "description": "Hook and operators for the Feast feature platform on TiDB, Spark and Redis.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "feature_platform",
                "hook-class-name": "pipelines.airflow.hooks.FeaturePlatformHook",
            }
        ],
        "operators": [
            {
                "integration-name": "Feature platform",
                "python-modules": ["pipelines.airflow.operators"],
            }
        ],
    }
