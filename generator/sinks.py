"""Writing batches into ecom_db at the database's native speed, one transaction per batch.

Everything a batch writes — its inserts, its updates, its `sim.batches` row and its
`sim.defects` manifest — goes through the caller's connection in one transaction, so a
batch is committed whole or not at all. Batches are serialised by a transaction-level lock
(`pg_advisory_xact_lock` / `sp_getapplock`), which also makes the key reservation safe:

- PostgreSQL: keys start after both the identity sequence and the largest key; the
  sequence is then moved past the batch's range with `setval`, rows go in with `COPY … FROM
  STDIN (FORMAT csv)` through psycopg's `cursor.copy()`, updates with one
  `UPDATE … FROM unnest(arrays)` per table (no temporary table: the role may not create one);
- SQL Server: keys start after the largest key and go in with `SET IDENTITY_INSERT`, rows
  with pyodbc `executemany` (`fast_executemany` except on FreeTDS, see `core.db.is_freetds`).

`sim.batches.rows_json` records, per batch: `inserted` and `updated` row counts per table,
`keys` — the key range `[first, last]` each table's new rows lie in (PostgreSQL
`event_seq` for events; keys inside a range that were reserved for orphans never exist) —
and `window`, the simulated time span `[start, end]`.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from core.db import check_source_initialised
from core.errors import SchemaNotInitialisedError
from core.schema import SOURCE_SCHEMA, SOURCE_TABLES, sim_batches, sim_defects
from generator import defects as dfx
from generator.simulate import OPEN_STATUSES, PK, TABLES, Batch, State

Progress = Callable[[int], None]
T = TypeVar("T")
LOCK_ID = 0x65636F6D_67656E  # "ecomgen": one generator batch at a time per database
LOCK_NAME = "ecom.generator"
COPY_CHUNK_ROWS = 25_000
STATE_LIMITS = {"customers": 200_000, "products": 100_000, "orders": 200_000, "returnable_orders": 20_000}
MONEY_COLUMNS = {("products", "unit_price"), ("orders", "total_amount"),
                 ("order_items", "unit_price"), ("order_items", "discount_amount")}  # fmt: skip


def _dialect(conn: Connection) -> str:
    return conn.dialect.name


def _driver_connection(conn: Connection) -> Any:
    """The DBAPI connection under SQLAlchemy's (psycopg / pyodbc), in the same transaction."""
    raw = conn.connection.driver_connection
    if raw is None:  # pragma: no cover - only for a detached connection
        raise RuntimeError("the connection is closed")
    return raw


def _noop(_: int) -> None:
    return None


def table_name(table: str) -> str:
    return f"{SOURCE_SCHEMA}.{table}"


# --- checks and locks ------------------------------------------------------------------------------
def check_initialised(conn: Connection) -> None:
    """Fail with `run ecom db init` when a source table or the manifest is missing."""
    for table in TABLES:
        check_source_initialised(conn, table)
    inspector = sa.inspect(conn)
    for t in (sim_batches, sim_defects):
        if not inspector.has_table(t.name, schema=t.schema):
            raise SchemaNotInitialisedError(
                f"table {t.schema}.{t.name} (the generator's manifest) does not exist: run `ecom db init`"
            )


# T-SQL the SQL Server path sends (rendered here so that a unit test can parse it).
MSSQL_LOCK = (
    f"DECLARE @r int; EXEC @r = sp_getapplock @Resource = N'{LOCK_NAME}', @LockMode = 'Exclusive', "
    "@LockOwner = 'Transaction', @LockTimeout = 600000; "
    "IF @r < 0 RAISERROR('could not take the generator lock (sp_getapplock %d)', 16, 1, @r);"
)


def mssql_insert_sql(name: str, columns: Iterable[str]) -> str:
    cols = list(columns)
    return f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def mssql_update_sql(name: str, key: str, columns: Iterable[str]) -> str:
    return f"UPDATE {name} SET {', '.join(f'{c} = ?' for c in columns)} WHERE {key} = ?"


def lock(conn: Connection) -> None:
    """Hold the generator lock until the transaction ends (commit or rollback)."""
    if _dialect(conn) == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
    else:
        conn.exec_driver_sql(MSSQL_LOCK)


def batch_exists(conn: Connection, batch_id: str) -> bool:
    return conn.execute(sa.select(sim_batches.c.batch_id).where(sim_batches.c.batch_id == batch_id)).first() is not None


# --- state ---------------------------------------------------------------------------------------------
def _rejected_keys(conn: Connection) -> dict[str, set[int]]:
    rows = conn.execute(
        sa.select(sim_defects.c.table_name, sim_defects.c.record_key).where(
            sim_defects.c.kind.in_(sorted(dfx.REJECT_KINDS)),
            sim_defects.c.table_name.in_(["customers", "products", "orders"]),
        )
    ).all()
    out: dict[str, set[int]] = {"customers": set(), "products": set(), "orders": set()}
    for table, key in rows:
        out[table].add(int(key))
    return out


def _frame(conn: Connection, query: sa.Select, columns: list[str]) -> pd.DataFrame:
    """A query's rows as a frame; on PostgreSQL through `COPY (query) TO STDOUT` and Arrow's CSV reader.

    Fetching ~100k rows as Python tuples costs about a second; the columnar path a tenth of it.
    """
    if _dialect(conn) != "postgresql":
        return pd.DataFrame(conn.execute(query).all(), columns=columns)
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buf = io.BytesIO()
    with _driver_connection(conn).cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
        for block in copy:
            buf.write(block)
    if not buf.tell():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    buf.seek(0)
    table = pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(column_names=columns),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False),
    )
    return table.to_pandas()


def next_ids(conn: Connection) -> dict[str, int]:
    """The first free key of each table (after the identity's last value and the largest key)."""
    out: dict[str, int] = {}
    for table in TABLES:
        t = SOURCE_TABLES[table].table
        key = PK[table]
        largest = conn.execute(sa.select(sa.func.max(t.c[key]))).scalar() or 0
        if _dialect(conn) == "postgresql":
            seq = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table_name(table), "c": key}
            ).scalar_one()
            last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {seq}")).one()
            out[table] = max(int(largest) + 1, int(last) + 1 if called else int(last))
        else:
            out[table] = int(largest) + 1
    return out


def _own_key_ranges(conn: Connection) -> dict[str, np.ndarray]:
    """Per table, the sorted `[first, last]` key ranges of every committed generator batch."""
    ranges: dict[str, list[tuple[int, int]]] = {t: [] for t in TABLES}
    for text in conn.execute(sa.select(sim_batches.c.rows_json)).scalars():
        try:
            keys = json.loads(text)["keys"]
        except (ValueError, KeyError, TypeError):
            continue  # not written by this generator
        for table, span in keys.items():
            if span and table in ranges:
                ranges[table].append((int(span[0]), int(span[1])))
    return {t: np.array(sorted(r), dtype=np.int64).reshape(-1, 2) for t, r in ranges.items()}


def is_own(keys: pd.Series | np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Which keys fall in one of the (sorted, disjoint) ranges, i.e. were written by the generator."""
    keys = np.asarray(keys, dtype=np.int64)
    if not len(ranges) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    idx = np.searchsorted(ranges[:, 0], keys, side="right") - 1
    inside = idx >= 0
    inside[inside] = keys[inside] <= ranges[idx[inside], 1]
    return inside


def load_state(conn: Connection) -> State:
    """What the next batch builds on: the recent clean customers, products and open orders.

    Only rows the generator itself wrote (inside a committed batch's key range) are used and
    evolved: rows that other writers (tests, people) put into ecom_db are never referenced by
    new rows nor updated, so deleting them cannot make an orphan nor surprise their owner.
    """
    rejected = _rejected_keys(conn)
    own = _own_key_ranges(conn)
    c = SOURCE_TABLES["customers"].table.c
    customers = _frame(
        conn,
        sa.select(c.customer_id, c.visitor_id, c.signup_at, c.country_code, c.email)
        .order_by(c.customer_id.desc())
        .limit(STATE_LIMITS["customers"]),
        ["customer_id", "visitor_id", "signup_at", "country_code", "email"],
    )
    customers = customers[
        ~customers["customer_id"].isin(rejected["customers"]) & is_own(customers["customer_id"], own["customers"])
    ].iloc[::-1]
    customers["customer_id"] = customers["customer_id"].astype(np.int64)
    customers["signup_at"] = pd.to_datetime(customers["signup_at"]).astype("datetime64[us]")

    p = SOURCE_TABLES["products"].table.c
    products = _frame(
        conn,
        sa.select(p.product_id, p.category, p.unit_price)
        .where(p.is_active == sa.true(), p.unit_price > 0)
        .order_by(p.product_id.desc())
        .limit(STATE_LIMITS["products"]),
        ["product_id", "category", "unit_price"],
    )
    products = products[
        ~products["product_id"].isin(rejected["products"]) & is_own(products["product_id"], own["products"])
    ].iloc[::-1]
    products = pd.DataFrame(
        {
            "product_id": products["product_id"].astype(np.int64),
            "category": products["category"],
            "price_cents": np.round(products["unit_price"].astype(float) * 100).astype(np.int64),
        }
    )

    # Orders still moving, and the most recent delivered ones (older ones are past returns).
    o = SOURCE_TABLES["orders"].table.c
    moving = [s for s in OPEN_STATUSES if s != "delivered"]
    orders = pd.concat(
        [
            _frame(
                conn,
                sa.select(o.order_id, o.status).where(where).order_by(o.order_id.desc()).limit(limit),
                ["order_id", "status"],
            )
            for where, limit in (
                (o.status.in_(moving), STATE_LIMITS["orders"]),
                (o.status == "delivered", STATE_LIMITS["returnable_orders"]),
            )
        ],
        ignore_index=True,
    ).sort_values("order_id", ascending=False)
    keep = ~orders["order_id"].isin(rejected["orders"]) & is_own(orders["order_id"], own["orders"])
    orders = orders[keep].iloc[::-1]
    orders["order_id"] = orders["order_id"].astype(np.int64)
    return State(
        customers=customers.reset_index(drop=True),
        products=products.reset_index(drop=True),
        open_orders=orders.reset_index(drop=True),
        next_ids=next_ids(conn),
    )


def advance_identities(conn: Connection, batch: Batch, first_ids: Mapping[str, int]) -> None:
    """Move each PostgreSQL identity past the batch's keys (SQL Server's identity follows by itself)."""
    if _dialect(conn) != "postgresql":
        return
    for table in TABLES:
        span = batch.id_span(table)
        if span:
            conn.execute(
                sa.text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, true)"),
                {"t": table_name(table), "c": PK[table], "v": first_ids[table] + span - 1},
            )


# --- inserts -------------------------------------------------------------------------------------------
def _csv_chunks(df: pd.DataFrame) -> Iterable[tuple[bytes, int]]:
    """CSV for COPY: strings always quoted, NULL as an empty unquoted field."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for offset in range(0, max(table.num_rows, 1), COPY_CHUNK_ROWS):
        part = table.slice(offset, COPY_CHUNK_ROWS)
        if part.num_rows == 0:
            return
        buf = io.BytesIO()
        pacsv.write_csv(part, buf, options)
        yield buf.getvalue(), part.num_rows


_DONE = object()


def _prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items`, produced up to `depth` ahead by a background thread (errors re-raised)."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, name="ecom-copy-csv", daemon=True)
    worker.start()
    try:
        while True:
            got = q.get()
            if got is _DONE:
                return
            if isinstance(got, BaseException):
                raise got
            yield got  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            worker.join(0.01)


def copy_frames(
    conn: Connection, frames: Mapping[str, pd.DataFrame], progress: Progress = _noop, schema: str = SOURCE_SCHEMA
) -> dict[str, int]:
    """Bulk-insert frames (table → rows, columns as named) in the caller's transaction.

    PostgreSQL: `COPY … FROM STDIN`; SQL Server: batched `executemany` with explicit keys.
    Returns rows written per table. This is also what `make bench` times as "raw COPY".
    """
    written: dict[str, int] = {}
    if _dialect(conn) == "postgresql":
        raw = _driver_connection(conn)
        # CSV is rendered one chunk ahead in a thread (Arrow releases the GIL) while the
        # server ingests the previous chunk.
        chunks = _prefetch((table, data, n) for table, df in frames.items() for data, n in _csv_chunks(df))
        with raw.cursor() as cur:
            item = next(chunks, None)
            for table, df in frames.items():
                written[table] = len(df)
                if df.empty:
                    continue
                cols = ", ".join(df.columns)
                with cur.copy(f"COPY {schema}.{table} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                    while item is not None and item[0] == table:
                        copy.write(item[1])
                        progress(item[2])
                        item = next(chunks, None)
    else:
        for table, df in frames.items():
            written[table] = _mssql_insert(conn, f"{schema}.{table}", df, progress)
    return written


def python_rows(df: pd.DataFrame, money: Iterable[str] = ()) -> list[tuple[Any, ...]]:
    """Rows as plain Python values for DBAPI `executemany` (None for NULL, Decimal for money)."""
    money = set(money)
    columns: list[list[Any]] = []
    for name in df.columns:
        s = df[name]
        if name in money:
            values: list[Any] = [None if pd.isna(v) else Decimal(f"{v:.2f}") for v in s.to_numpy()]
        elif pd.api.types.is_datetime64_any_dtype(s):
            values = [None if pd.isna(v) else v.to_pydatetime() for v in s]
        elif pd.api.types.is_bool_dtype(s):
            values = [bool(v) for v in s.to_numpy()]
        else:
            values = s.astype(object).where(s.notna(), None).tolist()
        columns.append(values)
    return list(zip(*columns, strict=True)) if columns else []


def _mssql_cursor(conn: Connection) -> Any:
    """A pyodbc cursor in the caller's transaction, `fast_executemany` as the engine has it.

    `core.db.engine` turns it on for Microsoft's driver and off for FreeTDS (whose client it crashes).
    """
    cur = _driver_connection(conn).cursor()
    cur.fast_executemany = bool(getattr(conn.dialect, "fast_executemany", False))
    return cur


def _mssql_insert(conn: Connection, name: str, df: pd.DataFrame, progress: Progress) -> int:
    if df.empty:
        return 0
    table = name.split(".", 1)[1]
    money = [c for t, c in MONEY_COLUMNS if t == table]
    rows = python_rows(df, money)
    sql = mssql_insert_sql(name, df.columns)
    cur = _mssql_cursor(conn)
    identity = table in PK
    try:
        if identity:
            cur.execute(f"SET IDENTITY_INSERT {name} ON")
        for i in range(0, len(rows), COPY_CHUNK_ROWS):
            chunk = rows[i : i + COPY_CHUNK_ROWS]
            cur.executemany(sql, chunk)
            progress(len(chunk))
    finally:
        if identity:
            cur.execute(f"SET IDENTITY_INSERT {name} OFF")
        cur.close()
    return len(rows)


# --- updates -------------------------------------------------------------------------------------------
def apply_updates(conn: Connection, updates: Mapping[str, pd.DataFrame], progress: Progress = _noop) -> dict[str, int]:
    """UPDATE existing rows by key (the database's triggers stamp `updated_at`)."""
    done: dict[str, int] = {}
    for table, df in updates.items():
        if df.empty:
            done[table] = 0
            continue
        t = SOURCE_TABLES[table].table
        key, cols = df.columns[0], list(df.columns[1:])
        if _dialect(conn) == "postgresql":
            pg = postgresql.dialect()
            arrays = ", ".join(f"CAST(:{c} AS {t.c[c].type.compile(dialect=pg)}[])" for c in [key, *cols])
            sets = ", ".join(f"{c} = v.{c}" for c in cols)
            params: dict[str, Any] = {}
            for c in [key, *cols]:
                values = python_rows(df[[c]], [c] if (table, c) in MONEY_COLUMNS else [])
                params[c] = [v[0] for v in values]
            conn.execute(
                sa.text(
                    f"UPDATE {table_name(table)} AS t SET {sets} "
                    f"FROM unnest({arrays}) AS v({key}, {', '.join(cols)}) WHERE t.{key} = v.{key}"
                ),
                params,
            )
        else:
            rows = python_rows(df[[*cols, key]], [c for c in cols if (table, c) in MONEY_COLUMNS])
            cur = _mssql_cursor(conn)
            try:
                cur.executemany(mssql_update_sql(table_name(table), key, cols), rows)
            finally:
                cur.close()
        done[table] = len(df)
        progress(len(df))
    return done


# --- the manifest --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchRecord:
    """What `sim.batches` holds for one committed batch."""

    batch_id: str
    seed: int | None
    started_at: datetime
    ended_at: datetime
    inserted: dict[str, int]
    updated: dict[str, int]
    keys: dict[str, tuple[int, int] | None]
    window: tuple[datetime, datetime]
    defects: dict[str, int]

    def rows_json(self) -> str:
        return json.dumps(
            {
                "inserted": self.inserted,
                "updated": self.updated,
                "keys": {t: list(r) if r else None for t, r in self.keys.items()},
                "window": [w.isoformat() for w in self.window],
            },
            sort_keys=True,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BatchRecord:
        rows = json.loads(row["rows_json"])
        return cls(
            batch_id=row["batch_id"],
            seed=row["seed"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            inserted=rows["inserted"],
            updated=rows["updated"],
            keys={t: (int(r[0]), int(r[1])) if r else None for t, r in rows["keys"].items()},
            window=(datetime.fromisoformat(rows["window"][0]), datetime.fromisoformat(rows["window"][1])),
            defects=json.loads(row["defects_json"]),
        )


def record_for(batch: Batch, batch_id: str, first_ids: Mapping[str, int], ended_at: datetime) -> BatchRecord:
    keys: dict[str, tuple[int, int] | None] = {}
    for table in TABLES:
        span = batch.id_span(table)
        keys[table] = (first_ids[table], first_ids[table] + span - 1) if span else None
    return BatchRecord(
        batch_id=batch_id,
        seed=batch.spec.seed,
        started_at=batch.now,
        ended_at=ended_at,
        inserted=batch.rows,
        updated=batch.updated,
        keys=keys,
        window=(batch.window_start, batch.now),
        defects=batch.defect_counts,
    )


def write_manifest(conn: Connection, record: BatchRecord, manifest: pd.DataFrame) -> None:
    if len(manifest):
        conn.execute(sim_defects.insert(), manifest.assign(batch_id=record.batch_id).to_dict("records"))
    conn.execute(
        sim_batches.insert().values(
            batch_id=record.batch_id,
            seed=record.seed,
            started_at=record.started_at,
            ended_at=record.ended_at,
            rows_json=record.rows_json(),
            defects_json=json.dumps(record.defects, sort_keys=True),
        )
    )


def read_batches(conn: Connection, batch_ids: Iterable[str] | None = None) -> list[BatchRecord]:
    """The committed batches (all, or those named), oldest first."""
    query = sa.select(sim_batches).order_by(sim_batches.c.started_at, sim_batches.c.batch_id)
    if batch_ids is not None:
        query = query.where(sim_batches.c.batch_id.in_(list(batch_ids)))
    return [BatchRecord.from_row(dict(r._mapping)) for r in conn.execute(query)]


def read_manifest(conn: Connection, batch_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The injected defects (batch_id, table_name, record_key, kind, handling)."""
    query = sa.select(sim_defects.c.batch_id, sim_defects.c.table_name, sim_defects.c.record_key, sim_defects.c.kind)
    if batch_ids is not None:
        query = query.where(sim_defects.c.batch_id.in_(list(batch_ids)))
    df = pd.DataFrame(conn.execute(query).all(), columns=["batch_id", "table_name", "record_key", "kind"])
    return df.assign(handling=df["kind"].map(lambda k: dfx.DEFECT_KINDS[k].handling.value))


# --- one batch ---------------------------------------------------------------------------------------------
def write_batch(
    conn: Connection,
    batch: Batch,
    batch_id: str,
    first_ids: Mapping[str, int],
    progress: Progress = _noop,
    clock: Callable[[], datetime] | None = None,
) -> BatchRecord:
    """Insert, update and record one simulated batch in the caller's transaction."""
    advance_identities(conn, batch, first_ids)
    copy_frames(conn, batch.inserts, progress)
    apply_updates(conn, batch.updates, progress)
    ended = (clock or _utc_now)()
    record = record_for(batch, batch_id, first_ids, ended)
    write_manifest(conn, record, batch.defects)
    return record


def _utc_now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC).replace(tzinfo=None)
