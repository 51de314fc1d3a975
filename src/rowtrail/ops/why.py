"""Why: a one-screen answer to "why is row X in version V?" (or why it is not), from its trace:
where it came from, which steps of V's pipeline touched it, and what happened to it there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .trace import trace

if TYPE_CHECKING:
    from ..store import Store


def _step_text(e: dict[str, Any]) -> str:
    return f"step {e['position']} '{e['step']}' ({e['use']})"


def why(store: Store, row_id: str, version: str = "HEAD", corpus: str = "main") -> dict[str, Any]:
    t = trace(store, row_id)
    info = store.state.resolve(version, corpus)
    label = info.tag or info.version_id[:12]
    src, prov = t["source"], t["provenance"]
    held = next((v for v in t["versions"] if v["version_id"] == info.version_id), None)
    run = store.manifest(info.version_id).get("run")
    events = [e for e in t["steps"] if e["run"] == run] if run else []
    n_steps = len(store.version(info.version_id).content["pipeline"])
    origin = (
        f"it was ingested from source '{src['source_id']}' ({src['kind']}; licence {src['license'] or 'not recorded'}, "
        f"legal basis {src['legal_basis'] or 'not recorded'}), snapshot {prov['source_snapshot']}, key {prov['source_key']!r}, "
        f"line {prov['origin_line']} of {prov['origin_file']}, by ingest {t['ingest']['ingest_id']} at {t['ingest']['at']}"
    )
    lines: list[str] = []
    for link in reversed(t["derived_from"]):
        made = next((e for e in store.trace(link["row_id"])["steps"] if e.get("child") == link["child"]), None) if len(t["derived_from"]) > 1 else None
        step = made["step"] if made else next((e["step"] for e in events if e["event"] == "created"), link.get("step_id", "?")[:12])
        lines.append(f"it was derived by step '{step}' from row {link['row_id']}")
    touched = {e["step_id"] for e in events}
    for e in events:
        if e["event"] == "reweighted":
            lines.append(f"{_step_text(e)} changed its weight from {e['before']:g} to {e['after']:g}")
        elif e["event"] == "scored":
            lines.append(f"{_step_text(e)} scored it {e['values']}")
        elif e["event"] == "absorbed":
            lines.append(f"{_step_text(e)} kept it as the survivor of duplicate row {e['parent']}")
    if held is not None:
        rest = n_steps - len(touched)
        path = f"; it passed {'the' if not touched else 'the other'} {rest} pipeline step(s) unchanged" if n_steps else "; the corpus pipeline had no steps"
        body = "; ".join([origin, *lines])
        text = f"Row {t['row_id']} is in {label} with weight {held['weight']:g} because {body}{path}, and no removal or drop applied to it."
        return {"row_id": t["row_id"], "version_id": info.version_id, "in_version": True, "explanation": text, "events": events, "trace": t}
    gone = next((e for e in events if e["event"] in ("dropped", "modified", "split", "merged")), None)
    if gone is not None:
        merged = next((e for e in events if e["event"] == "merged"), None)
        if merged is not None:
            fate = f"{_step_text(merged)} folded it into the kept duplicate {merged['child']} ({gone.get('reason') or 'duplicate'})"
        elif gone["event"] == "dropped":
            fate = f"{_step_text(gone)} dropped it ({gone['reason_code']}: {gone['reason']})"
        else:
            kids = [e["child"] for e in events if e["event"] == gone["event"]]
            fate = f"{_step_text(gone)} replaced it ({gone['event']}) by row(s) {', '.join(kids)}, which carry its content forward"
        text = f"Row {t['row_id']} is NOT in {label}: {'; '.join([origin, *lines])}; then {fate}."
    else:
        drops = [d for d in t["drops"] if d["corpus"] == info.corpus and d["effective_in"] and store.state.versions[d["effective_in"]].seq <= info.seq]
        if drops:
            d = drops[-1]
            text = f"Row {t['row_id']} is NOT in {label}: {origin}; it was dropped ({d['reason_code']}: {d['reason']}) by {d['by']}."
        else:
            text = f"Row {t['row_id']} is NOT in {label}: {origin}, but it was not part of that version's inputs."
    return {"row_id": t["row_id"], "version_id": info.version_id, "in_version": False, "explanation": text, "events": events, "trace": t}
