"""Monitor: the per-step monitoring reports of a version's pipeline run, in pipeline order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store


def monitor(store: Store, version: str = "HEAD", corpus: str = "main") -> dict[str, Any]:
    info = store.state.resolve(version, corpus)
    manifest = store.manifest(info.version_id)
    lineage = manifest.get("lineage") or {}
    order = manifest["record"]["content"]["pipeline"]
    from .apply import read_run

    thresholds = {}
    if manifest.get("run"):
        thresholds = (read_run(store, manifest["run"])[0].get("monitor") or {}).get("thresholds", {})
    return {
        "version_id": info.version_id,
        "tag": info.tag,
        "steps": [lineage[sid]["report"] for sid in order if sid in lineage],
        "thresholds": thresholds,
    }
