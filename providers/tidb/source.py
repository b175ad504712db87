"""`TiDBSource` (a table or a query), its saved-dataset storage and its logging destination."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import pyarrow as pa
from feast.data_source import DataSource
from feast.feature_logging import LoggingDestination
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.protos.feast.core.FeatureService_pb2 import LoggingConfig as LoggingConfigProto
from feast.protos.feast.core.SavedDataset_pb2 import SavedDatasetStorage as SavedDatasetStorageProto
from feast.repo_config import RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from feast.value_type import ValueType

from providers.tidb import sql, types
from providers.tidb.errors import (
    TiDBSourceColumnNotFound,
    TiDBSourceDefinitionError,
    TiDBSourceNotFound,
)

SOURCE_CLASS_PATH = "providers.tidb.source.TiDBSource"


class TiDBOptions:
    """Where a TiDBSource's rows come from: exactly one of a table or a query."""

    def __init__(
        self,
        name: str | None,
        table: str | None,
        query: str | None,
        json_columns: list[str] | None = None,
    ):
        self.name = name or ""
        self.table = table or ""
        self.query = query or ""
        self.json_columns = list(json_columns or [])

    def to_proto(self) -> DataSourceProto.CustomSourceOptions:
        payload = {
            "name": self.name,
            "table": self.table,
            "query": self.query,
            "json_columns": self.json_columns,
        }
        return DataSourceProto.CustomSourceOptions(configuration=json.dumps(payload).encode())

    @classmethod
    def from_proto(cls, proto: DataSourceProto.CustomSourceOptions) -> TiDBOptions:
        payload = json.loads(proto.configuration.decode("utf8"))
        return cls(
            name=payload.get("name"),
            table=payload.get("table"),
            query=payload.get("query"),
            json_columns=payload.get("json_columns"),
        )


class TiDBSource(DataSource):
    """A table or a SQL query in TiDB that feature views read from.

    Args:
        name: Unique name in the project (defaults to the table name).
        table: `table` or `database.table`. Give this or `query`.
        query: A SELECT whose rows are the source. Give this or `table`.
        timestamp_field: Event time column (DATETIME/TIMESTAMP, UTC).
        created_timestamp_column: When the row became known; breaks ties on event time.
        field_mapping: Source column -> feature name.
        json_columns: Columns holding JSON (arrays become list features). Needed where the server
            cannot tell: query sources, and MariaDB's JSON (a LONGTEXT); table columns typed JSON
            on MySQL/TiDB are found on their own.
        description, tags, owner: Metadata.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        table: str | None = None,
        query: str | None = None,
        timestamp_field: str | None = "",
        created_timestamp_column: str | None = "",
        field_mapping: dict[str, str] | None = None,
        description: str | None = "",
        tags: dict[str, str] | None = None,
        owner: str | None = "",
        json_columns: list[str] | None = None,
    ):
        if bool(table) == bool(query):
            raise TiDBSourceDefinitionError(
                f"TiDBSource {name or table or ''!r}: give exactly one of table= or query="
                f" (got {'both' if table else 'neither'})."
            )
        if table:
            sql.quote_table(table)  # reject bad names at definition time
        if not name and not table:
            raise TiDBSourceDefinitionError("A TiDBSource over a query needs a name=.")
        self._tidb_options = TiDBOptions(
            name=name, table=table, query=query, json_columns=json_columns
        )
        super().__init__(
            name=name or table or "",
            timestamp_field=timestamp_field or "",
            created_timestamp_column=created_timestamp_column or "",
            field_mapping=field_mapping,
            description=description or "",
            tags=tags,
            owner=owner or "",
        )

    @property
    def table(self) -> str:
        return self._tidb_options.table

    @property
    def query(self) -> str:
        return self._tidb_options.query

    @property
    def json_columns(self) -> list[str]:
        return self._tidb_options.json_columns

    def __hash__(self):
        return super().__hash__()

    def __eq__(self, other):
        return (
            isinstance(other, TiDBSource)
            and super().__eq__(other)
            and self.table == other.table
            and self.query == other.query
            and self.json_columns == other.json_columns
        )

    def source_type(self) -> DataSourceProto.SourceType.ValueType:
        return DataSourceProto.CUSTOM_SOURCE

    @staticmethod
    def from_proto(data_source: DataSourceProto) -> TiDBSource:
        options = TiDBOptions.from_proto(data_source.custom_options)
        return TiDBSource(
            name=data_source.name,
            table=options.table or None,
            query=options.query or None,
            timestamp_field=data_source.timestamp_field,
            created_timestamp_column=data_source.created_timestamp_column,
            field_mapping=dict(data_source.field_mapping),
            description=data_source.description,
            tags=dict(data_source.tags),
            owner=data_source.owner,
            json_columns=options.json_columns,
        )

    def _to_proto_impl(self) -> DataSourceProto:
        proto = DataSourceProto(
            name=self.name,
            type=DataSourceProto.CUSTOM_SOURCE,
            data_source_class_type=SOURCE_CLASS_PATH,
            field_mapping=self.field_mapping,
            custom_options=self._tidb_options.to_proto(),
            description=self.description,
            tags=self.tags,
            owner=self.owner,
        )
        proto.timestamp_field = self.timestamp_field
        proto.created_timestamp_column = self.created_timestamp_column
        return proto

    def get_table_query_string(self) -> str:
        """The FROM expression: the quoted table, or the query in parentheses."""
        return sql.from_expression(self.table or None, self.query or None)

    @staticmethod
    def source_datatype_to_feast_value_type() -> Callable[[str], ValueType]:
        return types.mysql_to_feast_value_type

    def _fields(self, config: RepoConfig) -> list:
        from providers.tidb.connection import connect, describe

        what = f"table {self.table}" if self.table else "query"
        try:
            with connect(config.offline_store) as conn:
                return describe(conn, self.get_table_query_string())
        except Exception as exc:  # pymysql raises many kinds; say which source failed
            if type(exc).__module__.startswith("pymysql"):
                raise TiDBSourceNotFound(self.name, what, exc) from exc
            raise

    def get_table_column_names_and_types(self, config: RepoConfig) -> Iterable[tuple[str, str]]:
        return [(f.name, types.source_type_name(f)) for f in self._fields(config)]

    def validate(self, config: RepoConfig) -> None:
        """Check that the source answers and has the columns its definition names."""
        columns = {name for name, _ in self.get_table_column_names_and_types(config)}
        required = [("timestamp", self.timestamp_field)]
        if self.created_timestamp_column:
            required.append(("created timestamp", self.created_timestamp_column))
        required += [("field_mapping", c) for c in self.field_mapping]
        for role, column in required:
            if column and column not in columns:
                raise TiDBSourceColumnNotFound(self.name, column, role, columns)


class SavedDatasetTiDBStorage(SavedDatasetStorage):
    """A saved dataset kept as a table in TiDB."""

    _proto_attr_name = "custom_storage"

    def __init__(self, table_ref: str):
        sql.quote_table(table_ref)
        self.tidb_options = TiDBOptions(name=None, table=table_ref, query=None)

    @property
    def table_ref(self) -> str:
        return self.tidb_options.table

    @staticmethod
    def from_proto(storage_proto: SavedDatasetStorageProto) -> SavedDatasetStorage:
        return SavedDatasetTiDBStorage(
            table_ref=TiDBOptions.from_proto(storage_proto.custom_storage).table
        )

    def to_proto(self) -> SavedDatasetStorageProto:
        return self._custom_storage_proto(self.tidb_options.to_proto())

    def to_data_source(self) -> DataSource:
        return TiDBSource(table=self.table_ref)


VOUCHED_PREFIX = "__vouched__"


def vouched_column(view: str) -> str:
    """The log column that holds when the pipeline last vouched for `view`'s served values (its
    progress past the value's own time; serving/features.py). Feast's log columns are the keys,
    `view__feature[__timestamp|__status]` and `__log_*`/`__request_id`: a `__` prefix other than
    those cannot collide with a feature."""
    return f"{VOUCHED_PREFIX}{view}"


def vouched_field(name: str) -> pa.Field:
    """The Arrow field of a `vouched_column` (`name`: the column's name)."""
    return pa.field(name, pa.timestamp("us", tz="UTC"))


class TiDBLoggingDestination(LoggingDestination):
    """Served-feature logs written to a TiDB table (created on first write). Besides Feast's log
    schema the table takes `vouched_column`s (timestamps), added when first written."""

    _proto_kind = "tidb_destination"

    def __init__(self, *, table_name: str):
        sql.quote_table(table_name)
        self.table_name = table_name

    @classmethod
    def from_proto(cls, config_proto: LoggingConfigProto) -> LoggingDestination:
        return TiDBLoggingDestination(
            table_name=config_proto.custom_destination.config["table_name"]
        )

    def to_proto(self) -> LoggingConfigProto:
        return LoggingConfigProto(
            custom_destination=LoggingConfigProto.CustomDestination(
                kind=self._proto_kind, config={"table_name": self.table_name}
            )
        )

    def to_data_source(self) -> DataSource:
        return TiDBSource(table=self.table_name, timestamp_field="__log_timestamp")
