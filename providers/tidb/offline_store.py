"""The Feast offline store for TiDB: `TiDBOfflineStoreConfig` and `TiDBOfflineStore`.

Feast loads the store from `offline_store.type` in feature_store.yaml and imports
`<ClassName>Config` from the same module, so both live here. SQL text lives in `sql.py`, type
conversion in `types.py`, connections and batched writes in `connection.py`, the entity-row
handling of `get_historical_features` in `entity.py`, and the job in `retrieval.py`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.data_source import DataSource
from feast.feature_logging import LoggingConfig, LoggingSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.offline_store import (
    OfflineStore,
    RetrievalJob,
    RetrievalMetadata,
)
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.utils import _get_requested_feature_views_to_features_dict, compute_non_entity_date_range
from feast.value_type import ValueType
from pydantic import Field, StrictInt, field_validator

from providers.tidb import connection, entity, pit_sql, sql, types
from providers.tidb.as_of import current as knowledge_time_in_force
from providers.tidb.errors import (
    ErasedSinceAsOf,
    TiDBConfigError,
    TiDBSourceDefinitionError,
    TiDBWriteSchemaMismatch,
)
from providers.tidb.retrieval import QueryPlan, TiDBRetrievalJob
from providers.tidb.settings import TiDBConnection
from providers.tidb.source import (
    VOUCHED_PREFIX,
    TiDBLoggingDestination,
    TiDBSource,
    vouched_field,
)

log = logging.getLogger(__name__)


class TiDBOfflineStoreConfig(FeastConfigBaseModel, TiDBConnection):
    """`offline_store:` settings: the connection (`settings.TiDBConnection`, the one model every
    process uses) and the store's own. Unknown keys are errors (typos fail at load, not later)."""

    type: Literal[
        "providers.tidb.TiDBOfflineStore", "providers.tidb.offline_store.TiDBOfflineStore"
    ] = "providers.tidb.TiDBOfflineStore"
    query_parallelism: StrictInt = Field(
        4,
        ge=1,
        le=32,
        description="Connections a point-in-time join may use at once, each joining a share of "
        "the feature views (1: one statement).",
    )
    write_batch_rows: StrictInt = Field(
        5000,
        ge=1,
        le=200_000,
        description="Rows per INSERT transaction; keeps each under TiDB's transaction size limit.",
    )
    scratch_database: str | None = Field(
        None,
        description="Where point-in-time joins put their scratch tables of entity rows (default: "
        "`database`). A database of its own lets the offline reader role create and drop tables "
        "there while it only reads the data (docs/deployment.md, Database roles).",
    )

    @field_validator("scratch_database")
    @classmethod
    def _scratch_name(cls, value: str | None) -> str | None:
        if value is None or value.strip() in ("", "None"):
            return None  # unset, or an empty ${VAR}: the store's own database
        sql.quote_identifier(value)  # a clear error for a name no database can have
        return value


def _erased_since(conn, knowledge_time: dt.datetime | None, entity_df: Any) -> int:
    """How many subjects were erased after an `as_of` knowledge time (0 without one).

    Their rows were known then and are gone now, so the retrieval cannot rebuild what it pins:
    entity rows naming one are refused (they would come back with empty features); otherwise the
    job is marked (`erased_since_as_of`) and a warning says the result lacks them.
    """
    from providers import erasure

    if knowledge_time is None or not connection.table_exists(conn, erasure.TOMBSTONES):
        return 0
    erased = erasure.erased_in_db(conn, since=knowledge_time)
    if not erased:
        return 0
    if isinstance(entity_df, pd.DataFrame) and erasure.SUBJECT_KEY in entity_df.columns:
        keys = pd.to_numeric(entity_df[erasure.SUBJECT_KEY], errors="coerce").dropna()
        named = {int(k) for k in keys if float(k).is_integer()} & set(erased)
        if named:
            raise ErasedSinceAsOf(
                f"{len(named)} subject(s) in the entity dataframe were erased after the knowledge "
                f"time {knowledge_time.isoformat()}; what was known of them then is gone, so the "
                "training set pinned to it cannot be rebuilt with them. Drop their rows (the "
                f"{erasure.SUBJECT_KEY}s in `{erasure.TOMBSTONES}` erased after that time) or pin "
                "a later knowledge time. docs/erasure.md explains."
            )
    log.warning(
        "%d subject(s) were erased after the knowledge time %s: the result lacks what was known "
        "of them then (job.erased_since_as_of; docs/erasure.md).",
        len(erased),
        knowledge_time.isoformat(),
    )
    return len(erased)


def _store_config(config: RepoConfig) -> TiDBOfflineStoreConfig:
    cfg = config.offline_store
    if not isinstance(cfg, TiDBOfflineStoreConfig):
        raise TiDBConfigError(
            f"The offline store config is {type(cfg).__name__}; set offline_store.type to "
            "providers.tidb.TiDBOfflineStore in feature_store.yaml."
        )
    return cfg


def _tidb_source(source: DataSource | None, owner: str) -> TiDBSource:
    if not isinstance(source, TiDBSource):
        raise TiDBSourceDefinitionError(
            f"{owner} reads from {type(source).__name__}; the TiDB offline store only reads TiDBSource."
        )
    return source


@dataclass(frozen=True)
class PullColumns:
    """How `pull_*` reads a source's columns exactly, and their Feast types (from the columns'
    SQL types, as `feast apply` infers them: these calls get no feature view)."""

    partition_by: dict[str, str]
    read_as: dict[str, str]
    declared: dict[str, ValueType]
    json_columns: frozenset[str]


def _pull_columns(
    config: RepoConfig,
    source: TiDBSource,
    join_keys: list[str],
    features: list[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
) -> PullColumns:
    cfg = _store_config(config)
    columns = [*join_keys, *features, timestamp_field]
    columns += [created_timestamp_column] if created_timestamp_column else []
    source_from = source.get_table_query_string()
    with connection.connect(cfg) as conn:
        read = entity.source_read(
            conn,
            f"TiDBSource '{source.name}'",
            source_from,
            dict.fromkeys(join_keys),
            [c for c in columns if c not in join_keys],
        )
        json_cols = _source_json_columns(conn, source)
    inferred = {
        name: types.value_type_of(column)
        for name, column in read.columns.items()
        if name not in json_cols
    }
    return PullColumns(read.canonical, read.read_as(), inferred, json_cols)


def _source_json_columns(conn, source: TiDBSource) -> frozenset[str]:
    """Declared JSON columns, plus (table sources) the columns the server types as JSON."""
    declared = frozenset(source.json_columns)
    if not source.table:
        return declared
    return declared | frozenset(connection.json_columns(conn, source.table))


class TiDBOfflineStore(OfflineStore):
    """Feast's offline store interface, computed inside TiDB (MySQL protocol)."""

    supports_filter_by_created_timestamp = True

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: dt.datetime,
        end_date: dt.datetime,
    ) -> RetrievalJob:
        source = _tidb_source(data_source, "pull_latest_from_table_or_query")
        pull = _pull_columns(
            config,
            source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
        )
        statement = sql.pull_latest(
            source.get_table_query_string(),
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            partition_by=pull.partition_by,
            read_as=pull.read_as,
        )
        return TiDBRetrievalJob(
            QueryPlan(
                statement,
                declared=pull.declared,
                json_columns=pull.json_columns,
                drop_columns=frozenset({sql.RANK}),
                finish=_add_dummy_entity(join_key_columns),
            ),
            config,
            full_feature_names=False,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
    ) -> RetrievalJob:
        source = _tidb_source(data_source, "pull_all_from_table_or_query")
        pull = _pull_columns(
            config,
            source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
        )
        statement = sql.pull_all(
            source.get_table_query_string(),
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            read_as=pull.read_as,
        )
        return TiDBRetrievalJob(
            QueryPlan(
                statement,
                declared=pull.declared,
                json_columns=pull.json_columns,
                finish=_add_dummy_entity(join_key_columns),
            ),
            config,
            full_feature_names=False,
        )

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        cfg = _store_config(config)
        for fv in feature_views:
            _tidb_source(fv.batch_source, f"Feature view '{fv.name}'")
        if not isinstance(entity_df, (pd.DataFrame, str, type(None))):
            from feast.errors import InvalidEntityType

            raise InvalidEntityType(type(entity_df))
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        fv_features, _ = _get_requested_feature_views_to_features_dict(
            feature_refs, feature_views, odfvs
        )
        specs = [
            entity.view_spec(fv, feats, full_feature_names) for fv, feats in fv_features.items()
        ]
        kinds = entity.key_kinds(specs)
        knowledge_time = knowledge_time_in_force()
        with connection.connect(cfg) as conn:
            erased = _erased_since(conn, knowledge_time, entity_df)
            # TiDB decorrelates the latest-row lookup's MAX; MariaDB and MySQL run it per row.
            latest_by_order = connection.flavor(conn) != "tidb"
            views = [entity.resolve(conn, i, spec, kinds) for i, spec in enumerate(specs)]
            if entity_df is None:
                start, end = compute_non_entity_date_range(
                    feature_views,
                    start_date=kwargs.get("start_date"),
                    end_date=kwargs.get("end_date"),
                )
                rows = entity.from_time_range(cfg, conn, views, kinds, start, end, knowledge_time)
            elif isinstance(entity_df, pd.DataFrame):
                rows = entity.from_dataframe(cfg, entity_df, kinds)
            else:
                rows = entity.from_query(cfg, conn, entity_df, kinds)

        bounds = (rows.min_ts, rows.max_ts) if rows.prune else (None, None)
        queries = [view.query(*bounds, knowledge_time) for view in views]
        head = [column for column, _ in rows.head]
        statement = pit_sql.point_in_time_join(
            rows.table, queries, head, filter_by_created_timestamp, latest_by_order
        )
        parts = pit_sql.point_in_time_join_parts(
            rows.table,
            queries,
            head,
            filter_by_created_timestamp,
            parts=cfg.query_parallelism,
            latest_by_order=latest_by_order,
        )
        names = {column: name for column, name in rows.head}
        declared: dict[str, Any] = dict(rows.declared)
        for view in views:
            names.update(view.aliases)
            declared.update(view.declared)
        plan = QueryPlan(
            statement,
            parts=parts if len(parts) > 1 else [],
            setup=[rows.create],
            teardown=[rows.drop],
            names=names,
            declared=declared,
            drop_columns=frozenset({sql.ROW_ID}),
            finish=rows.finish,
        )
        return TiDBRetrievalJob(
            plan,
            config,
            full_feature_names,
            as_of=knowledge_time,
            erased_since_as_of=erased,
            on_demand_feature_views=odfvs,
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=rows.keys,
                min_event_timestamp=rows.min_ts,
                max_event_timestamp=rows.max_ts,
            ),
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Append pushed rows to the feature view's source table, in bounded batches.

        The table is created from the rows' schema when it does not exist yet. Columns are matched
        by name; the rows may omit columns the table can fill itself (nullable or defaulted).
        """
        cfg = _store_config(config)
        source = _tidb_source(feature_view.batch_source, f"Feature view '{feature_view.name}'")
        if not source.table:
            raise TiDBSourceDefinitionError(
                f"Feature view '{feature_view.name}' reads from a query; pushing to the offline store "
                "needs a TiDBSource with table=."
            )
        with connection.connect(cfg) as conn:
            if not connection.table_exists(conn, source.table):
                connection.execute(
                    conn,
                    sql.create_table(
                        source.table,
                        [(f.name, types.ddl_for_arrow(f.type)) for f in table.schema],
                        if_not_exists=True,
                    ),
                )
            else:
                _check_write_columns(conn, source.table, table.column_names)
            connection.insert_arrow(conn, source.table, table, cfg.write_batch_rows, progress)

    @staticmethod
    def write_logged_features(
        config: RepoConfig,
        data: pa.Table | Path,
        source: LoggingSource,
        logging_config: LoggingConfig,
        registry: BaseRegistry,
    ) -> None:
        """Append served-feature logs to the destination table (created, or widened, as needed)."""
        cfg = _store_config(config)
        destination = logging_config.destination
        if not isinstance(destination, TiDBLoggingDestination):
            raise TiDBConfigError(
                f"The TiDB offline store writes logs to TiDBLoggingDestination, not {type(destination).__name__}."
            )
        table = pq.read_table(data) if isinstance(data, Path) else data
        schema = source.get_schema(registry)
        for name in table.column_names:  # serving's pipeline-progress columns, in the table
            if name.startswith(VOUCHED_PREFIX) and name not in schema.names:
                schema = schema.append(vouched_field(name))
        with connection.connect(cfg) as conn:
            connection.execute(
                conn,
                sql.create_table(
                    destination.table_name,
                    [(f.name, types.ddl_for_arrow(f.type)) for f in schema],
                    if_not_exists=True,
                ),
            )
            existing = {
                f.name for f in connection.describe(conn, sql.quote_table(destination.table_name))
            }
            for f in schema:
                if (
                    f.name not in existing
                ):  # the feature service gained features since the table was made
                    connection.execute(
                        conn,
                        sql.add_column(destination.table_name, f.name, types.ddl_for_arrow(f.type)),
                    )
                    existing.add(f.name)
            unexpected = set(table.column_names) - existing
            if unexpected:
                raise TiDBWriteSchemaMismatch(destination.table_name, [], unexpected)
            connection.insert_arrow(conn, destination.table_name, table, cfg.write_batch_rows)

    def validate_data_source(self, config: RepoConfig, data_source: DataSource) -> None:
        _tidb_source(data_source, "validate_data_source").validate(config)


def _check_write_columns(conn, table: str, columns: list[str]) -> None:
    info = connection.columns_info(conn, table)
    unexpected = set(columns) - set(info)
    missing = {name for name, fillable in info.items() if name not in columns and not fillable}
    if unexpected or missing:
        raise TiDBWriteSchemaMismatch(table, missing, unexpected)


def _add_dummy_entity(join_key_columns: list[str]) -> Callable[[pa.Table], pa.Table] | None:
    """Entity-less views are keyed by Feast's dummy entity; add it as Feast's own stores do."""
    if join_key_columns:
        return None

    def finish(table: pa.Table) -> pa.Table:
        return table.append_column(
            DUMMY_ENTITY_ID, pa.array([DUMMY_ENTITY_VAL] * table.num_rows, pa.string())
        )

    return finish
