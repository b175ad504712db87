"""The TiDB connection: one settings model for every process of the platform.

`TiDBConnection` holds the fields and their validation. Feast reads it from feature_store.yaml
(`TiDBOfflineStoreConfig` extends it); everything else (the Spark jobs, serving, the training
and skew commands, the benchmarks, the demo) reads it from `TIDB_*` environment variables with
`TiDBSettings.from_env()`, a pydantic-settings model with the same fields. Orchestrators and the
local stack produce those variables (`env()` lists them), and the Spark jobs get their JDBC URL,
TLS included, from `jdbc_url()`.

| variable | field | default |
|---|---|---|
| `TIDB_HOST`, `TIDB_PORT`, `TIDB_USER`, `TIDB_PASSWORD`, `TIDB_DATABASE` | the server | port 4000 |
| `TIDB_TLS` | connect with TLS | false |
| `TIDB_TLS_CA` | CA bundle that signs the server certificate | the system's CAs |
| `TIDB_TLS_CERT`, `TIDB_TLS_KEY` | client certificate (mutual TLS; not for Spark's JDBC) | none |
| `TIDB_TLS_VERIFY` | verify the certificate and host name | true |
| `TIDB_CONNECT_TIMEOUT_SECONDS`, `TIDB_READ_TIMEOUT_SECONDS` | time limits | 10, none |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from providers.tidb.errors import TiDBConfigError

ENV_PREFIX = "TIDB_"
REQUIRED = ("host", "user", "password", "database")
# Must be given as a value when given at all: an empty or unexpanded port is a mistake, not "unset".
_STRICT = (*REQUIRED, "port")
# Feast expands ${VAR} once; one left as is means VAR was not set. (`$name` alone may be real data.)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INTEGERS = ("port", "connect_timeout_seconds", "read_timeout_seconds")


class TiDBConnection(BaseModel):
    """Where TiDB is and how to reach it. Unknown keys are errors (typos fail at load)."""

    model_config = ConfigDict(extra="forbid")

    host: StrictStr = Field(description="TiDB / MySQL host, e.g. ${TIDB_HOST}.")
    port: StrictInt = Field(4000, ge=1, le=65535, description="Port (TiDB listens on 4000).")
    user: StrictStr = Field(description="User name, e.g. ${TIDB_USER}. No default on purpose.")
    password: StrictStr | None = Field(description="Password, e.g. ${TIDB_PASSWORD}; may be empty.")
    database: StrictStr = Field(description="Database holding sources, scratch and log tables.")
    tls: bool = Field(False, description="Connect with TLS (TiDB Cloud requires it).")
    tls_ca: StrictStr | None = Field(None, description="CA bundle path; system CAs when unset.")
    tls_cert: StrictStr | None = Field(None, description="Client certificate path (mutual TLS).")
    tls_key: StrictStr | None = Field(None, description="Client key path (mutual TLS).")
    tls_verify: bool = Field(True, description="Verify the server certificate and host name.")
    connect_timeout_seconds: StrictInt = Field(10, ge=1, le=600)
    read_timeout_seconds: StrictInt | None = Field(
        None, ge=1, description="Per-query read timeout."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unexpanded_placeholders(cls, values: Any) -> Any:
        """A required setting left as `${VAR}` names VAR; an optional one takes its default
        (so feature_store.yaml can offer `tls: ${TIDB_TLS}` to deployments that set it)."""
        if not isinstance(values, dict):
            return values
        out = {}
        for key, value in values.items():
            if key not in _STRICT and (value is None or value == ""):
                continue  # an empty variable (TIDB_TLS_CA=) means not set
            if isinstance(value, str) and (m := _PLACEHOLDER.fullmatch(value.strip())):
                if key not in _STRICT:
                    continue
                raise TiDBConfigError(
                    f"offline_store.{key} is '{value}': the environment variable {m.group(1)} "
                    f'is not set. Export it (e.g. `eval "$(python -m devstack env)"` for the local stack).'
                )
            if key in _INTEGERS and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            out[key] = value
        return out

    @field_validator("host", "user", "database")
    @classmethod
    def _not_blank(cls, value: str, info) -> str:
        if not value.strip():
            raise TiDBConfigError(f"offline_store.{info.field_name} must not be empty.")
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> TiDBConnection:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise TiDBConfigError(
                "offline_store.tls_cert and tls_key go together: set both or neither."
            )
        if (self.tls_ca or self.tls_cert) and not self.tls:
            raise TiDBConfigError(
                "offline_store.tls_ca/tls_cert are set but tls is false: set tls: true."
            )
        return self

    def connection_fields(self) -> dict[str, Any]:
        """This connection's fields (and only them), for building another model from it."""
        return {name: getattr(self, name) for name in TiDBConnection.model_fields}

    def env(self) -> dict[str, str]:
        """The `TIDB_*` variables that give this connection to another process."""
        out = {}
        for name, value in self.connection_fields().items():
            if value is None:
                continue
            text = str(value).lower() if isinstance(value, bool) else str(value)
            out[ENV_PREFIX + name.upper()] = text
        return out

    def jdbc_url(self) -> str:
        """A JDBC URL for Spark with MariaDB Connector/J's options: multi-row batched INSERTs,
        and the same verified TLS as every other connection (MySQL Connector/J ignores these TLS
        options: `spark_jobs.settings.Database` refuses TLS with another driver)."""
        options = {"rewriteBatchedStatements": "true", "useServerPrepStmts": "false"}
        if self.tls:
            if self.tls_cert:
                raise TiDBConfigError(
                    "TIDB_TLS_CERT/TIDB_TLS_KEY (mutual TLS) cannot be given to Spark's JDBC driver, "
                    "which takes client certificates from a Java keystore only; pass "
                    "keyStore/keyStorePassword in the URL options of your own driver, or use "
                    "server-verified TLS (TIDB_TLS_CA) for the jobs."
                )
            options["useSsl"] = "true"
            if self.tls_ca:
                options["serverSslCert"] = self.tls_ca  # a CA file path: trust what it signs
            if not self.tls_verify:
                options["trustServerCertificate"] = "true"
        # Always the jdbc:mysql scheme: Spark picks its MySQL dialect (backtick quoting) from it,
        # and MariaDB Connector/J 2.x, MySQL Connector/J and TiDB all accept it.
        query = urlencode(options, quote_via=quote, safe="/")
        return f"jdbc:mysql://{self.host}:{self.port}/{quote(self.database)}?{query}"

    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL of Feast's SQL registry (pymysql), TLS included.

        pymysql verifies a certificate only when it is given a CA (without one it encrypts and
        trusts anyone), so with `tls_verify` and no `tls_ca` the system's CA bundle is named.
        With `tls_verify: false` and a CA, only the host-name check is off (the URL cannot turn
        off pymysql's chain check)."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password or '', safe='')}"
        options: dict[str, str] = {}
        if self.tls:
            options["ssl_check_hostname"] = "true" if self.tls_verify else "false"
            ca = self.tls_ca or (_system_ca_bundle() if self.tls_verify else None)
            for key, value in (
                ("ssl_ca", ca),
                ("ssl_cert", self.tls_cert),
                ("ssl_key", self.tls_key),
            ):
                if value:
                    options[key] = value
        query = f"?{urlencode(options, quote_via=quote, safe='/')}" if options else ""
        return (
            f"mysql+pymysql://{auth}@{self.host}:{self.port}/{quote(self.database, safe='')}{query}"
        )


def _system_ca_bundle() -> str:
    import ssl

    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile):
        if path and Path(path).is_file():
            return path
    raise TiDBConfigError(
        "TLS to TiDB is on without TIDB_TLS_CA and no system CA bundle was found: set "
        "TIDB_TLS_CA to the CA file that signs TiDB's certificate."
    )


class TiDBSettings(TiDBConnection, BaseSettings):
    """`TiDBConnection` from `TIDB_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> TiDBSettings:
        """From the process environment (or `env`), with `overrides`; errors name the variable."""
        try:
            if env is None:
                return cls(**overrides)
            values = {
                name: env[ENV_PREFIX + name.upper()]
                for name in TiDBConnection.model_fields
                if ENV_PREFIX + name.upper() in env
            }
            return cls.model_validate({**values, **overrides})
        except ValidationError as exc:
            problems = [
                f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: "
                + ("not set" if e["type"] == "missing" else e["msg"])
                for e in exc.errors()
                if e["loc"]
            ] or [str(exc)]
            raise TiDBConfigError(
                f"{'; '.join(problems)}. Start the local stack with `make up` and "
                "`source .stack/env`, or export the TIDB_* variables of your TiDB."
            ) from exc
