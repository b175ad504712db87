"""`offline_store:` settings: validation, and loading through Feast's own feature_store.yaml path."""

from __future__ import annotations

from pathlib import Path

import pytest
from feast.repo_config import FeastConfigError, load_repo_config
from pydantic import ValidationError

from providers.tidb import TiDBOfflineStoreConfig
from providers.tidb.errors import TiDBConfigError

_DROP = object()  # marks a key to leave out


def settings(**overrides) -> dict:
    values = {
        "type": "providers.tidb.TiDBOfflineStore",
        "host": "tidb.internal",
        "port": 4000,
        "user": "feast",
        "password": "s3cret",
        "database": "features",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not _DROP}


def test_valid_config_and_defaults():
    cfg = TiDBOfflineStoreConfig(**settings())
    assert (cfg.host, cfg.port, cfg.user, cfg.password, cfg.database) == (
        "tidb.internal",
        4000,
        "feast",
        "s3cret",
        "features",
    )
    assert cfg.tls is False
    assert cfg.tls_verify is True
    assert cfg.connect_timeout_seconds == 10
    assert cfg.read_timeout_seconds is None
    assert cfg.write_batch_rows == 5000


def test_port_defaults_to_4000_and_type_has_a_default():
    cfg = TiDBOfflineStoreConfig(**settings(port=_DROP, type=_DROP))
    assert cfg.port == 4000
    assert cfg.type == "providers.tidb.TiDBOfflineStore"


def test_full_module_path_type_accepted():
    cfg = TiDBOfflineStoreConfig(**settings(type="providers.tidb.offline_store.TiDBOfflineStore"))
    assert cfg.type == "providers.tidb.offline_store.TiDBOfflineStore"


def test_other_type_rejected():
    with pytest.raises(ValidationError, match="type"):
        TiDBOfflineStoreConfig(**settings(type="file"))


@pytest.mark.parametrize("key", ["host", "user", "database", "password"])
def test_missing_required_key(key):
    with pytest.raises(ValidationError, match=key) as info:
        TiDBOfflineStoreConfig(**settings(**{key: _DROP}))
    assert any(e["type"] == "missing" and e["loc"] == (key,) for e in info.value.errors())


def test_password_may_be_empty_or_null():
    assert TiDBOfflineStoreConfig(**settings(password="")).password == ""
    assert TiDBOfflineStoreConfig(**settings(password=None)).password is None


@pytest.mark.parametrize("key", ["host", "user", "database"])
def test_blank_required_value(key):
    with pytest.raises(ValidationError, match=f"offline_store.{key} must not be empty"):
        TiDBOfflineStoreConfig(**settings(**{key: "  "}))


@pytest.mark.parametrize("typo", ["hots", "pasword", "tls_verfy", "write_batch_size"])
def test_unknown_key_rejected(typo):
    with pytest.raises(ValidationError, match=typo) as info:
        TiDBOfflineStoreConfig(**settings(**{typo: "x"}))
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("key", "value", "var"),
    [
        ("host", "${TIDB_HOST}", "TIDB_HOST"),
        ("password", " ${TIDB_PASSWORD} ", "TIDB_PASSWORD"),
        ("database", "${TIDB_DATABASE}", "TIDB_DATABASE"),
        ("port", "${TIDB_PORT}", "TIDB_PORT"),
    ],
)
def test_unexpanded_placeholder_names_the_variable(key, value, var):
    with pytest.raises(ValidationError) as info:
        TiDBOfflineStoreConfig(**settings(**{key: value}))
    message = str(info.value)
    assert f"offline_store.{key}" in message
    assert f"the environment variable {var} is not set" in message


def test_unset_optional_placeholders_take_their_defaults():
    """feature_store.yaml offers `tls: ${TIDB_TLS}` to deployments that set it; others do not."""
    cfg = TiDBOfflineStoreConfig(
        **settings(tls="${TIDB_TLS}", tls_ca="${TIDB_TLS_CA}", read_timeout_seconds="")
    )
    assert (cfg.tls, cfg.tls_ca, cfg.read_timeout_seconds) == (False, None, None)


def test_placeholder_error_is_a_tidb_config_error():
    with pytest.raises(TiDBConfigError, match="TIDB_HOST"):
        TiDBOfflineStoreConfig._no_unexpanded_placeholders({"host": "${TIDB_HOST}"})


def test_values_that_merely_contain_a_dollar_are_accepted():
    cfg = TiDBOfflineStoreConfig(**settings(password="pa$$word!", user="u${X}y"))
    assert cfg.password == "pa$$word!"
    assert cfg.user == "u${X}y"


@pytest.mark.parametrize(("given", "port"), [("4000", 4000), (" 4001 ", 4001), (3306, 3306)])
def test_port_as_string_accepted(given, port):
    assert TiDBOfflineStoreConfig(**settings(port=given)).port == port


@pytest.mark.parametrize("port", [0, -1, 65536, 100000, "0", "65536", "-1", "40o0", "", 4000.5])
def test_port_out_of_range_or_not_a_number_rejected(port):
    with pytest.raises(ValidationError, match="port"):
        TiDBOfflineStoreConfig(**settings(port=port))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("write_batch_rows", 0),
        ("write_batch_rows", 200_001),
        ("connect_timeout_seconds", 0),
        ("connect_timeout_seconds", 601),
        ("read_timeout_seconds", 0),
    ],
)
def test_numeric_bounds(key, value):
    with pytest.raises(ValidationError, match=key):
        TiDBOfflineStoreConfig(**settings(**{key: value}))


def test_tls_settings():
    cfg = TiDBOfflineStoreConfig(
        **settings(tls=True, tls_ca="/ca.pem", tls_cert="/c.pem", tls_key="/k.pem")
    )
    assert (cfg.tls, cfg.tls_ca, cfg.tls_cert, cfg.tls_key) == (True, "/ca.pem", "/c.pem", "/k.pem")
    assert TiDBOfflineStoreConfig(**settings(tls=True)).tls_ca is None


@pytest.mark.parametrize(
    "extra", [{"tls": True, "tls_cert": "/c.pem"}, {"tls": True, "tls_key": "/k.pem"}]
)
def test_tls_cert_and_key_go_together(extra):
    with pytest.raises(ValidationError, match="tls_cert and tls_key go together"):
        TiDBOfflineStoreConfig(**settings(**extra))


@pytest.mark.parametrize(
    "extra",
    [
        {"tls_ca": "/ca.pem"},
        {"tls": False, "tls_ca": "/ca.pem"},
        {"tls_cert": "/c", "tls_key": "/k"},
    ],
)
def test_tls_files_need_tls_true(extra):
    with pytest.raises(ValidationError, match="set tls: true"):
        TiDBOfflineStoreConfig(**settings(**extra))


# --------------------------------------------------------------------------- through Feast

FEATURE_STORE_YAML = """\
project: fraud_unit
provider: local
registry: data/registry.db
online_store:
  type: redis
  connection_string: "localhost:6379"
offline_store:
  type: providers.tidb.TiDBOfflineStore
  host: ${TIDB_HOST}
  port: ${TIDB_PORT}
  user: ${TIDB_USER}
  password: ${TIDB_PASSWORD}
  database: ${TIDB_DATABASE}
entity_key_serialization_version: 3
"""

ENV = {
    "TIDB_HOST": "10.1.2.3",
    "TIDB_PORT": "4001",
    "TIDB_USER": "feast_user",
    "TIDB_PASSWORD": "pw-from-env",
    "TIDB_DATABASE": "fraud",
}


@pytest.fixture
def repo(tmp_path, monkeypatch) -> tuple[Path, Path]:
    yaml_path = tmp_path / "feature_store.yaml"
    yaml_path.write_text(FEATURE_STORE_YAML)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return tmp_path, yaml_path


def test_feast_loads_the_config_from_env(repo):
    repo_path, yaml_path = repo
    config = load_repo_config(repo_path, yaml_path)
    cfg = config.offline_store
    assert isinstance(cfg, TiDBOfflineStoreConfig)
    assert (cfg.host, cfg.port, cfg.user, cfg.password, cfg.database) == (
        "10.1.2.3",
        4001,
        "feast_user",
        "pw-from-env",
        "fraud",
    )
    assert config.project == "fraud_unit"


def test_feast_load_without_tidb_host_names_it(repo, monkeypatch):
    repo_path, yaml_path = repo
    monkeypatch.delenv("TIDB_HOST")
    with pytest.raises((FeastConfigError, ValidationError)) as info:
        config = load_repo_config(repo_path, yaml_path)
        config.offline_store  # noqa: B018 - Feast may build the store config lazily
    assert "TIDB_HOST" in str(info.value)
    assert "is not set" in str(info.value)


def test_feast_load_with_a_typo_fails(repo):
    repo_path, yaml_path = repo
    yaml_path.write_text(FEATURE_STORE_YAML.replace("  host:", "  hots:"))
    with pytest.raises((FeastConfigError, ValidationError), match="hots"):
        load_repo_config(repo_path, yaml_path).offline_store  # noqa: B018


def test_feast_load_accepts_an_expanded_password_starting_with_dollar(repo, monkeypatch):
    repo_path, yaml_path = repo
    monkeypatch.setenv("TIDB_PASSWORD", "$ecretPw")
    monkeypatch.delenv("ecretPw", raising=False)
    cfg = load_repo_config(repo_path, yaml_path).offline_store
    assert cfg.password == "$ecretPw"


def test_tls_context_honours_ca_verification_and_client_certificate(tmp_path):
    import ssl

    from providers.tidb import TiDBOfflineStoreConfig
    from providers.tidb.connection import connect_kwargs

    base = dict(host="h", user="u", password="p", database="d", tls=True)
    ctx = connect_kwargs(TiDBOfflineStoreConfig(**base))["ssl"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    off = connect_kwargs(TiDBOfflineStoreConfig(**base, tls_verify=False))["ssl"]
    assert not off.check_hostname and off.verify_mode == ssl.CERT_NONE
    with pytest.raises(FileNotFoundError):  # the CA file is used, not silently dropped
        connect_kwargs(TiDBOfflineStoreConfig(**base, tls_ca=str(tmp_path / "missing-ca.pem")))
    with pytest.raises(FileNotFoundError):  # and so is the client certificate
        connect_kwargs(
            TiDBOfflineStoreConfig(
                **base, tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem")
            )
        )
    plain = connect_kwargs(TiDBOfflineStoreConfig(**{**base, "tls": False}))
    assert "ssl" not in plain
    assert plain["ssl_disabled"] is True  # not pymysql's unverified "preferred" TLS
    assert "ssl_disabled" not in connect_kwargs(TiDBOfflineStoreConfig(**base))
