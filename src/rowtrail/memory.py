"""The memory bound for rowtrail's own large queries.

``ROWTRAIL_MEMORY_LIMIT`` (DuckDB's size syntax: ``"2GB"``, ``"512MB"``; default ``"2GB"``) caps the
memory DuckDB may use in the queries rowtrail runs over a whole corpus (ingest's duplicate-key
check, the local engine's reads); past it DuckDB spills to a temporary directory. Numpy work on row
records is bounded separately, by processing in blocks (see ``versions.manifest.HASH_BLOCK``).
"""

from __future__ import annotations

import os
import re
from typing import Any

DEFAULT_LIMIT = "2GB"
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def memory_limit() -> str:
    """The configured limit, checked (a typo would otherwise surface as a DuckDB error mid-ingest)."""
    value = os.environ.get("ROWTRAIL_MEMORY_LIMIT", "").strip() or DEFAULT_LIMIT
    if not _SIZE.match(value):
        from .errors import RowtrailError

        raise RowtrailError(f"ROWTRAIL_MEMORY_LIMIT={value!r} is not a size; use e.g. 2GB or 512MB")
    return value


def duckdb_config(spill_dir: str | os.PathLike[str] | None = None, **extra: Any) -> dict[str, Any]:
    """DuckDB connection settings with the memory limit (and where to spill, when given)."""
    config: dict[str, Any] = {"memory_limit": memory_limit(), **extra}
    if spill_dir is not None:
        config["temp_directory"] = str(spill_dir)
    return config
