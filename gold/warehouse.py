"""ecom_dwh's tables, compiled from the marts' own contracts (one definition, two dialects).

Each gold mart becomes `gold.<mart>` in the warehouse with the same columns: money stays
`DECIMAL(p,s)`, timestamps become `DATETIME2(6)` / `timestamp(6)` (microseconds kept),
booleans `BIT` / `boolean`, strings `NVARCHAR(n)` / `varchar(n)`, and every array, map or
struct becomes a JSON string (e.g. `["Books","Toys"]`) because JDBC cannot write them.
The primary key is the mart's grain.
"""

from __future__ import annotations

import sqlalchemy as sa
from pyspark.sql import types as T

from core.schema import WAREHOUSE_SCHEMA, Timestamp
from gold.marts.contract import Col
from gold.marts.registry import MARTS

KEY_STRING_LENGTH = 200  # SQL Server indexes keys up to 900 bytes: NVARCHAR(200) is 400
STRING_LENGTH = 1000
NESTED = (T.ArrayType, T.MapType, T.StructType)


def sql_type(col: Col, is_key: bool) -> sa.types.TypeEngine:
    t = col.type
    if isinstance(t, NESTED):
        return sa.UnicodeText()  # JSON text: NVARCHAR(max) / text
    if isinstance(t, T.StringType):
        return sa.Unicode(KEY_STRING_LENGTH if is_key else STRING_LENGTH)
    if isinstance(t, T.DecimalType):
        return sa.Numeric(t.precision, t.scale)
    if isinstance(t, T.TimestampType | T.TimestampNTZType):
        return Timestamp()
    mapping: dict[type, sa.types.TypeEngine] = {
        T.LongType: sa.BigInteger(),
        T.IntegerType: sa.Integer(),
        T.ShortType: sa.SmallInteger(),
        T.DoubleType: sa.Float(precision=53),
        T.FloatType: sa.Float(precision=24),
        T.BooleanType: sa.Boolean(),
        T.DateType: sa.Date(),
    }
    for spark_type, sql in mapping.items():
        if isinstance(t, spark_type):
            return sql
    raise TypeError(f"no warehouse type for column {col.name} of Spark type {t.simpleString()}")


def build_metadata() -> sa.MetaData:
    md = sa.MetaData(schema=WAREHOUSE_SCHEMA)
    for mart in MARTS.values():
        sa.Table(
            mart.name,
            md,
            *(
                sa.Column(c.name, sql_type(c, c.name in mart.key), nullable=c.name not in mart.key, autoincrement=False)
                for c in mart.columns
            ),
            sa.PrimaryKeyConstraint(*mart.key, name=f"pk_{mart.name}"),
            comment=f"gold.{mart.name}: {mart.grain}",
        )
    return md


warehouse_metadata = build_metadata()
