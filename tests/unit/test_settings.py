"""The one TiDB connection model: from the environment, to the environment, JDBC and SQLAlchemy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from providers.tidb import TiDBOfflineStoreConfig
from providers.tidb.errors import TiDBConfigError
from providers.tidb.settings import ENV_PREFIX, REQUIRED, TiDBConnection, TiDBSettings
from tests.utils.jobs import OPTIONAL_VARIABLES, feature_store_variables

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "TIDB_HOST": "tidb.internal",
    "TIDB_PORT": "4000",
    "TIDB_USER": "platform",
    "TIDB_PASSWORD": "p@ss:w/rd%",
    "TIDB_DATABASE": "fraud",
}
ENV_NAMES = {ENV_PREFIX + name.upper() for name in TiDBConnection.model_fields}


def test_from_env_and_back():
    settings = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true", "TIDB_TLS_CA": "/ca.pem"})
    assert (settings.host, settings.port, settings.tls, settings.tls_ca) == (
        "tidb.internal",
        4000,
        True,
        "/ca.pem",
    )
    assert TiDBSettings.from_env(settings.env()) == settings
    assert set(settings.env()) <= ENV_NAMES


def test_from_the_process_environment(monkeypatch):
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TIDB_READ_TIMEOUT_SECONDS", "30")
    settings = TiDBSettings.from_env()
    assert settings.database == "fraud" and settings.read_timeout_seconds == 30


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("TIDB_HOST", {}, "TIDB_HOST: not set"),
        ("TIDB_PASSWORD", {}, "TIDB_PASSWORD: not set"),
        (None, {"TIDB_PORT": "40o0"}, "TIDB_PORT"),
        (None, {"TIDB_TLS_CA": "/ca.pem"}, "set tls: true"),
        (None, {"TIDB_TLS": "maybe"}, "TIDB_TLS"),
    ],
)
def test_bad_environments_name_the_variable(drop, extra, message):
    env = {k: v for k, v in {**BASE, **extra}.items() if k != drop}
    with pytest.raises(TiDBConfigError, match=message):
        TiDBSettings.from_env(env)


def test_empty_optional_variables_mean_unset():
    settings = TiDBSettings.from_env({**BASE, "TIDB_TLS": "", "TIDB_TLS_CA": ""})
    assert settings.tls is False and settings.tls_ca is None


def test_jdbc_url_carries_tls():
    plain = TiDBSettings.from_env(BASE)
    assert plain.jdbc_url() == (
        "jdbc:mysql://tidb.internal:4000/fraud"
        "?rewriteBatchedStatements=true&useServerPrepStmts=false"
    )
    tls = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true", "TIDB_TLS_CA": "/etc/tls/ca.crt"})
    assert tls.jdbc_url().endswith("&useSsl=true&serverSslCert=/etc/tls/ca.crt")
    system_cas = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true"})
    assert system_cas.jdbc_url().endswith("&useSsl=true")
    unverified = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true", "TIDB_TLS_VERIFY": "false"})
    assert unverified.jdbc_url().endswith("&useSsl=true&trustServerCertificate=true")
    mutual = TiDBSettings.from_env(
        {**BASE, "TIDB_TLS": "true", "TIDB_TLS_CERT": "/c.pem", "TIDB_TLS_KEY": "/k.pem"}
    )
    with pytest.raises(TiDBConfigError, match="keystore"):
        mutual.jdbc_url()


def test_sqlalchemy_url_encodes_the_password_and_carries_tls():
    plain = TiDBSettings.from_env(BASE)
    assert plain.sqlalchemy_url() == (
        "mysql+pymysql://platform:p%40ss%3Aw%2Frd%25@tidb.internal:4000/fraud"
    )
    tls = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true", "TIDB_TLS_CA": "/ca.pem"})
    assert tls.sqlalchemy_url().endswith("/fraud?ssl_check_hostname=true&ssl_ca=/ca.pem")


def test_the_feast_config_is_the_same_model():
    settings = TiDBSettings.from_env({**BASE, "TIDB_TLS": "true"})
    cfg = TiDBOfflineStoreConfig(**settings.connection_fields(), write_batch_rows=10)
    assert isinstance(cfg, TiDBConnection)
    assert cfg.connection_fields() == settings.connection_fields()
    assert cfg.jdbc_url() == settings.jdbc_url()


def test_optional_variables_of_feature_store_yaml_are_the_models_optional_fields():
    optional = {
        ENV_PREFIX + name.upper() for name in TiDBConnection.model_fields if name not in REQUIRED
    }
    tidb = {v for v in feature_store_variables(optional=True) if v.startswith(ENV_PREFIX)}
    assert OPTIONAL_VARIABLES == tidb & optional - {"TIDB_PORT"}


@pytest.mark.parametrize(
    "producer",
    [
        "devstack/services.py",
        "pipelines/airflow/hooks.py",
        "pipelines/kubeflow/pipeline.py",
        "k8s/base/kustomization.yaml",
        "k8s/components/tidb-tls/kustomization.yaml",
    ],
)
def test_every_tidb_variable_a_producer_writes_is_one_the_model_reads(producer):
    """The local stack, the orchestrators and k8s hand settings over as TIDB_* variables (their
    environments have no Feast to import the model with): each name must be the model's."""
    names = set(re.findall(r"\bTIDB_[A-Z_]+\b", (ROOT / producer).read_text()))
    assert names and names <= ENV_NAMES, names - ENV_NAMES
