"""`TiDBRetrievalJob`: a query plan that runs in TiDB and comes back as Arrow."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pymysql
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.saved_dataset import SavedDatasetStorage

from providers.tidb import connection, declared, reader, sql, types
from providers.tidb.errors import TiDBSavedDatasetExists

if TYPE_CHECKING:
    from pymysql.connections import Connection


Step = Callable[["Connection"], Any]
log = logging.getLogger(__name__)


@dataclass
class QueryPlan:
    """A statement, what must exist before it runs (setup) and what to remove after (teardown)."""

    statement: sql.Statement
    # The same result as statements that may run at once on their own connections, their columns
    # side by side (sql.point_in_time_join_parts); empty: run `statement`.
    parts: list[sql.Statement] = field(default_factory=list)
    setup: list[Step] = field(default_factory=list)
    teardown: list[Step] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # result column -> output name
    declared: dict[str, Any] = field(default_factory=dict)  # output name -> Feast type
    json_columns: frozenset[str] = frozenset()  # undeclared JSON columns: decoded as found
    drop_columns: frozenset[str] = frozenset()
    # Applied to the fetched Arrow table (e.g. re-attach the caller's entity dataframe columns).
    finish: Callable[[pa.Table], pa.Table] | None = None


class TiDBRetrievalJob(RetrievalJob):
    def __init__(
        self,
        plan: QueryPlan,
        config: RepoConfig,
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
        as_of: dt.datetime | None = None,
        erased_since_as_of: int = 0,
    ):
        self._plan = plan
        self._erased_since_as_of = erased_since_as_of
        self.config = config
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views or []
        self._metadata = metadata
        self._as_of = as_of

    @property
    def as_of(self) -> dt.datetime | None:
        """The knowledge time the result is pinned to (`providers.tidb.as_of`), or None."""
        return self._as_of

    @property
    def erased_since_as_of(self) -> int:
        """Subjects erased after the knowledge time (providers/erasure.py): a set pinned `as_of`
        then held their rows, which no longer exist, so this result lacks them."""
        return self._erased_since_as_of

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._on_demand_feature_views

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def to_sql(self) -> str:
        """The SQL that computes the result. Scratch tables it names exist only while it runs."""
        return reader.render(self._plan.statement, for_display=True)

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Runs the plan's setup before the block and its teardown after, on one connection."""
        if not self._plan.setup and not self._plan.teardown:
            yield None
            return
        with connection.connect(self.config.offline_store) as conn:
            failed = False
            try:
                for step in self._plan.setup:
                    step(conn)
                yield None
            except BaseException:
                failed = True
                raise
            finally:
                for step in self._plan.teardown:
                    self._teardown(step, conn, failed)

    def _teardown(self, step: Step, conn: Connection, failed: bool) -> None:
        try:
            step(conn)
            return
        except pymysql.err.MySQLError:
            pass  # the connection itself may be what failed: try once on a fresh one
        try:
            with connection.connect(self.config.offline_store) as fresh:
                step(fresh)
        except Exception:
            if not failed:
                raise
            # An error is already propagating; it is the one the caller must see.
            log.exception(
                "Cleanup after a failed query also failed (%s); drop the scratch table by hand.",
                getattr(step, "__qualname__", step),
            )

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        plan = self._plan
        with self._session():
            if plan.parts:
                table = self._run_parts()
            else:
                table = reader.read_table(self.config.offline_store, plan.statement)
        table = self._shape(table)
        return plan.finish(table) if plan.finish else table

    def _shape(self, table: pa.Table) -> pa.Table:
        """The result's columns named and typed as the feature views declare them."""
        plan = self._plan
        keep = [n for n in table.column_names if n not in plan.drop_columns]
        table = table.select(keep).rename_columns([plan.names.get(n, n) for n in keep])
        table = declared.conform(table, plan.declared)
        for name in plan.json_columns & set(table.column_names) - set(plan.declared):
            i = table.column_names.index(name)
            table = table.set_column(
                i, name, declared.decode_json(table.column(i).combine_chunks())
            )
        return table

    def _run_parts(self) -> pa.Table:
        """Each part on its own connection at once (the database's cores, and reading one result
        while the next is computed); results placed side by side, row for row."""
        from concurrent.futures import ThreadPoolExecutor

        plan = self._plan
        cfg = self.config.offline_store
        with ThreadPoolExecutor(len(plan.parts), thread_name_prefix="tidb-pit") as pool:
            tables = list(pool.map(lambda part: reader.read_table(cfg, part), plan.parts))
        rows = {t.num_rows for t in tables}
        if len(rows) != 1:  # each part returns every entity row; anything else is a bug
            raise RuntimeError(f"point-in-time join parts disagree on row counts: {sorted(rows)}")
        columns, names = [], []
        for t in tables:
            columns += t.columns
            names += t.column_names
        return pa.Table.from_arrays(columns, names=names)

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        """Write the result (on-demand features included) to the storage's table."""
        from providers.tidb.source import SavedDatasetTiDBStorage

        if not isinstance(storage, SavedDatasetTiDBStorage):
            raise TypeError(
                f"TiDB jobs persist to SavedDatasetTiDBStorage, not {type(storage).__name__}."
            )
        cfg = self.config.offline_store
        with connection.connect(cfg) as conn:
            if connection.table_exists(conn, storage.table_ref) and not allow_overwrite:
                raise TiDBSavedDatasetExists(storage.table_ref)
        result = self.to_arrow()
        with connection.connect(cfg) as conn:
            connection.execute(conn, sql.drop_table(storage.table_ref))
            connection.execute(
                conn,
                sql.create_table(
                    storage.table_ref,
                    [(f.name, types.ddl_for_arrow(f.type)) for f in result.schema],
                ),
            )
            connection.insert_arrow(conn, storage.table_ref, result, cfg.write_batch_rows)
