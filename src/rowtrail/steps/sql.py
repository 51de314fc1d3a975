"""SQL expressions over a batch, for steps configured with SQL (``filter``, ``reweight where=``,
``score``, monitors): one expression, evaluated by DuckDB on a connection with external access
disabled, so a pipeline file's SQL can read the batch and nothing else."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa

from ..errors import StepError

INDEX = "_rt_index"


def _duckdb() -> Any:
    import duckdb  # imported on first use: `import rowtrail` stays light

    return duckdb
_local = threading.local()


def connection() -> Any:
    con = getattr(_local, "con", None)
    if con is None:
        con = _duckdb().connect(config={"enable_external_access": False, "threads": 1})
        _local.con = con
    return con


@lru_cache(maxsize=256)
def referenced_columns(expr: str) -> frozenset[str]:
    """The column names an expression refers to (so an engine reads only those)."""
    check_expression(expr)
    raw = connection().sql(f"SELECT json_serialize_sql({_quote('SELECT ' + expr + ' FROM batch')})").fetchall()[0][0]
    tree = orjson.loads(raw)
    if tree.get("error"):
        raise StepError(f"SQL expression {expr!r} does not parse: {tree.get('error_message', tree)}")
    found: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class") == "COLUMN_REF":
                found.add(node["column_names"][-1])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(found)


def check_expression(expr: str) -> None:
    if not isinstance(expr, str) or not expr.strip():
        raise StepError("a SQL expression must be a non-empty string")
    try:
        statements = _duckdb().extract_statements(f"SELECT ({expr}) FROM batch")
    except _duckdb().Error as exc:
        raise StepError(f"SQL expression {expr!r} does not parse: {exc}") from None
    if len(statements) != 1:
        raise StepError(f"SQL expression {expr!r} must be one expression, not several statements")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def pushed_name(expr: str) -> str:
    """The column under which an engine may hand a step an expression it already evaluated."""
    import hashlib

    return "_rt_expr_" + hashlib.sha256(expr.encode()).hexdigest()[:16]


def evaluate(batch: pa.RecordBatch | pa.Table, expr: str) -> pa.Array:
    """The expression's value for every row of the batch, in batch order (taken as is when the
    engine evaluated it already, over the same values, as column ``pushed_name(expr)``)."""
    pushed = pushed_name(expr)
    if pushed in batch.schema.names:
        col = batch.column(pushed)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    check_expression(expr)
    con = connection()
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    table = table.drop_columns([c for c in table.column_names if c.startswith("_rt_expr_")])
    table = table.append_column(INDEX, pa.array(range(table.num_rows), pa.int64()))
    con.register("batch", table)
    try:
        result = con.sql(f"SELECT ({expr}) AS v FROM batch ORDER BY {INDEX}").to_arrow_table()
    except _duckdb().Error as exc:
        raise StepError(f"SQL expression {expr!r} failed: {str(exc).splitlines()[0]}; columns here: {', '.join(c for c in table.column_names if c != INDEX)}") from None
    finally:
        con.unregister("batch")
    return result.column("v").combine_chunks()


def confined_connection(directory: str) -> Any:
    """A DuckDB connection that may read files under ``directory`` only (a store's immutable
    objects) and nothing else — for user expressions an engine evaluates next to the stored rows."""
    con = _duckdb().connect(config={"threads": 2})
    con.execute(f"SET allowed_directories = [{_quote(directory.rstrip('/') + '/')}]")
    con.execute("SET enable_external_access = false")
    return con


def evaluate_over_content(con: Any, relation: str, expr: str, fields: dict[str, str]) -> pa.Array:
    """The expression over the canonical JSON ``content`` column of ``relation`` (row order kept),
    each referenced field extracted and cast to the given DuckDB type — the same values a batch's
    typed columns hold — without materializing the fields."""
    check_expression(expr)

    def path(n: str) -> str:
        return _quote('$."' + n.replace('"', '\\"') + '"')

    def ident(n: str) -> str:
        return '"' + n.replace('"', '""') + '"'

    cols = ", ".join(
        f"(content ->> {path(n)}) = 'true' AS {ident(n)}" if t == "BOOLEAN" else f"CAST(content ->> {path(n)} AS {t}) AS {ident(n)}"
        for n, t in fields.items()
    )
    try:
        result = con.sql(f"SELECT ({expr}) AS v FROM (SELECT {cols} FROM {relation})").to_arrow_table()
    except _duckdb().Error as exc:
        raise StepError(f"SQL expression {expr!r} failed: {str(exc).splitlines()[0]}") from None
    return result.column("v").combine_chunks()


def predicate(batch: pa.RecordBatch | pa.Table, expr: str) -> Any:
    """A boolean numpy mask: rows where the expression is true (NULL counts as false, as in WHERE)."""
    values = evaluate(batch, expr)
    if not pa.types.is_boolean(values.type):
        if pa.types.is_null(values.type):
            values = pa.nulls(len(values), pa.bool_())
        else:
            raise StepError(f"SQL predicate {expr!r} gives {values.type}, not a boolean")
    return values.fill_null(False).to_numpy(zero_copy_only=False)
