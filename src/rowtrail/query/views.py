"""DuckDB over read-only views of a store.

Views: ``sources``, ``rows`` (every row the store holds: provenance columns and ``content`` as
canonical JSON text; query fields with ``content->>'field'``), ``versions``, ``version_rows``
(version_id, row_id, weight), ``drops`` (ingest supersessions and removals), ``step_drops`` (rows
pipeline steps dropped: run, step, row_id, reason), ``lineage`` (step edges: run, step, parent,
child, kind), ``quarantine`` (bad input rows kept by ``--on-error quarantine``, with file, line,
field and reason) and ``journal``. Only the views a
query names are built.
The connection is in-memory and discarded after the query, so nothing a query does reaches the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..segments import hex_array

if TYPE_CHECKING:
    import duckdb

    from ..store import Store

def _sources(store: Store) -> pa.Table:
    recs = [s.to_dict() for s in store.sources.list()]
    for r in recs:
        r["attributes"] = orjson.dumps(r["attributes"]).decode()
    names = ["source_id", "kind", "uri", "license", "legal_basis", "collected", "refreshed_at", "owner", "generator", "snapshot", "created_at", "attributes"]
    return pa.table({n: pa.array([r.get(n) for r in recs], pa.string()) for n in names})


def _versions(store: Store) -> pa.Table:
    rows = []
    for v in store.versions():
        s = v.summary()
        s["per_source"] = orjson.dumps(v.content["per_source"]).decode()
        s["pipeline"] = orjson.dumps(v.content["pipeline"]).decode()
        rows.append(s)
    if not rows:
        return pa.table({"version_id": pa.array([], pa.string()), "tag": pa.array([], pa.string())})
    return pa.Table.from_pylist(rows)


def _version_rows(store: Store) -> pa.Table:
    parts = []
    for v in store.versions():
        recs = store.version_rows(v.id)
        parts.append(
            pa.table(
                {
                    "version_id": pa.array([v.id] * len(recs), pa.string()),
                    "row_id": hex_array(recs["id"]),
                    "weight": pa.array(recs["w"].astype(np.float64)),
                }
            )
        )
    if not parts:
        return pa.table({"version_id": pa.array([], pa.string()), "row_id": pa.array([], pa.string()), "weight": pa.array([], pa.float64())})
    return pa.concat_tables(parts)


def _journal(store: Store) -> pa.Table:
    st = store.state
    return pa.table(
        {
            "seq": [e["seq"] for e in st.entries],
            "at": [e["at"] for e in st.entries],
            "kind": [e["kind"] for e in st.entries],
            "digest": st.digests,
            "entry": [orjson.dumps(e).decode() for e in st.entries],
        }
    )


def connect(store: Store, query: str) -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    words = set(re.findall(r"[A-Za-z_]+", query.lower()))
    state = store.state
    obj = store.backend.object_path
    for name, build in (("sources", _sources), ("versions", _versions), ("version_rows", _version_rows), ("journal", _journal)):
        if name in words:  # Arrow tables built on demand, behind a view of the public name
            con.register(f"{name}_t", build(store))
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_t")
    if "rows" in words:
        selects = [
            f"SELECT * EXCLUDE (row_id, content_sha256), lower(hex(row_id)) AS row_id, lower(hex(content_sha256)) AS content_sha256, {s.seg} AS segment "
            f"FROM read_parquet('{obj(s.provenance)}') POSITIONAL JOIN (SELECT content FROM read_parquet('{obj(s.content)}'))"
            for s in state.segments
        ]
        body = " UNION ALL BY NAME ".join(selects) if selects else "SELECT NULL::VARCHAR AS row_id, NULL::VARCHAR AS source_id WHERE false"
        con.execute(f"CREATE VIEW rows AS {body}")
    if "drops" in words:
        selects = [
            f"SELECT lower(hex(row_id)) AS row_id, reason_code, reason, '{e['corpus']}' AS corpus, {e['seq']} AS seq "
            f"FROM read_parquet('{obj(e['drops'])}')"
            for e in state.entries
            if e["kind"] in ("ingest", "remove", "optout") and e.get("drops")
        ]
        body = " UNION ALL ".join(selects) if selects else "SELECT NULL::VARCHAR AS row_id, NULL::VARCHAR AS reason_code, NULL::VARCHAR AS reason, NULL::VARCHAR AS corpus, NULL::BIGINT AS seq WHERE false"
        con.execute(f"CREATE VIEW drops AS {body}")
    for name, build_name in (("lineage", "lineage_table"), ("step_drops", "step_drops_table")):
        if name in words:  # pipeline runs: every step edge / every step drop, with the step that made it
            from ..ops import lineage

            con.register(f"{name}_t", getattr(lineage, build_name)(store))
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_t")
    if "quarantine" in words:
        selects = [
            f"SELECT '{e['ingest_id']}' AS ingest_id, '{e['corpus']}' AS corpus, {e['seq']} AS seq, * "
            f"FROM read_parquet('{obj(e['quarantine'])}')"
            for e in state.entries
            if e["kind"] == "ingest" and e.get("quarantine")
        ]
        body = " UNION ALL ".join(selects) if selects else (
            "SELECT NULL::VARCHAR AS ingest_id, NULL::VARCHAR AS corpus, NULL::BIGINT AS seq, NULL::VARCHAR AS origin_file, "
            "NULL::BIGINT AS origin_line, NULL::VARCHAR AS field, NULL::VARCHAR AS reason, NULL::VARCHAR AS raw WHERE false"
        )
        con.execute(f"CREATE VIEW quarantine AS {body}")
    return con


def run_sql(store: Store, query: str, params: Sequence[Any] | None = None) -> pa.Table:
    con = connect(store, query)
    try:
        rel = con.sql(query, params=list(params)) if params else con.sql(query)
        if rel is None:  # a statement with no result (e.g. SET)
            return pa.table({})
        return rel.to_arrow_table()
    finally:
        con.close()
