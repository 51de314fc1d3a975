"""Exports of a corpus version: its rows for training (``parquet``, ``jsonl``, ``hf``) and, as they
are added, documents about it. ``base`` states the exporter contract and holds the registry.

    from rowtrail import exports
    exports.export(store, "parquet", "v37", "out/v37")      # -> ExportResult
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import bundle, corpus, croissant, datacard, eu_ai_act, openlineage, prov, transparency  # noqa: F401  (registers every format)
from .base import Exporter, ExportError, ExportExistsError, ExportResult, for_path, formats, get, register

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

__all__ = ["ExportError", "ExportExistsError", "ExportResult", "Exporter", "export", "for_path", "formats", "get", "register"]


def export(store: Store, format: str, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Any = None, **options: Any) -> ExportResult:  # noqa: A002
    """Write ``version`` of ``store`` in ``format`` to ``path`` (see the format's module for options)."""
    return get(format).write(store, version, path, overwrite=overwrite, progress=progress, **options)
