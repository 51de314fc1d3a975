"""Why: a one-paragraph answer to "why is row X in version V?" (or why it is not), from its trace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .trace import trace

if TYPE_CHECKING:
    from ..store import Store


def why(store: Store, row_id: str, version: str = "HEAD", corpus: str = "main") -> dict[str, Any]:
    t = trace(store, row_id)
    info = store.state.resolve(version, corpus)
    label = info.tag or info.version_id[:12]
    src, prov = t["source"], t["provenance"]
    held = next((v for v in t["versions"] if v["version_id"] == info.version_id), None)
    origin = (
        f"it was ingested from source '{src['source_id']}' ({src['kind']}; licence {src['license'] or 'not recorded'}, "
        f"legal basis {src['legal_basis'] or 'not recorded'}), snapshot {prov['source_snapshot']}, key {prov['source_key']!r}, "
        f"line {prov['origin_line']} of {prov['origin_file']}, by ingest {t['ingest']['ingest_id']} at {t['ingest']['at']}"
    )
    if held is not None:
        steps = store.version(info.version_id).content["pipeline"]
        path = f"; it passed the pipeline's {len(steps)} step(s) unchanged" if steps else "; the corpus pipeline had no steps"
        text = f"Row {t['row_id']} is in {label} with weight {held['weight']:g} because {origin}{path}, and no removal or drop applied to it."
    else:
        drops = [d for d in t["drops"] if d["corpus"] == info.corpus and d["effective_in"] and store.state.versions[d["effective_in"]].seq <= info.seq]
        if drops:
            d = drops[-1]
            text = f"Row {t['row_id']} is NOT in {label}: {origin}; it was dropped ({d['reason_code']}: {d['reason']}) by {d['by']}."
        else:
            text = f"Row {t['row_id']} is NOT in {label}: {origin}, but it was not part of that version's inputs."
    return {"row_id": t["row_id"], "version_id": info.version_id, "in_version": held is not None, "explanation": text, "trace": t}
