"""Status: what is staged for a corpus beyond its head version, per source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store


def status(store: Store, corpus: str = "main") -> dict[str, Any]:
    state = store.state
    head = state.heads.get(corpus)
    per_source: dict[str, dict[str, int]] = {}
    entries = []
    for e in state.staged_for(corpus).entries:
        if e["kind"] == "ingest":
            c = e["counts"]
            entries.append({"seq": e["seq"], "kind": "ingest", "ingest_id": e["ingest_id"], "files": [f["name"] for f in e["files"]], **c})
            for s, n in e["sources"].items():
                per_source.setdefault(s, {"ingested": 0, "removed": 0})["ingested"] += n
            if c.get("quarantined"):
                entries[-1]["quarantine"] = e.get("quarantine")
        elif e["kind"] == "remove":
            entries.append({"seq": e["seq"], "kind": "remove", "source": e.get("source"), "rows": e["rows"], "reason": e["reason"]})
            if e.get("source"):
                per_source.setdefault(e["source"], {"ingested": 0, "removed": 0})["removed"] += e["rows"]
        elif e["kind"] == "optout":
            entries.append({"seq": e["seq"], "kind": "optout", "request": e["request"]["id"], "rows": e["rows"], "reason": e["request"]["reason"]})
        elif e["kind"] == "pipeline":
            entries.append({"seq": e["seq"], "kind": "pipeline", "steps": len(e["steps"]), "rows": e.get("rows")})
    from .apply import reusable_run

    pipeline = [{"step_id": d["step_id"], "name": d["name"], "use": d.get("use"), "function": d.get("function")} for d in state.pipelines.get(corpus, [])]
    return {
        "corpus": corpus,
        "pipeline": pipeline,
        # what 'commit' will do: reuse the staged run, run the pipeline itself, or take the inputs as they are
        "commit_runs_pipeline": bool(pipeline) and reusable_run(state, corpus) is None,
        "head": head,
        "head_tag": state.versions[head].tag if head else None,
        "staged": entries,
        "per_source": dict(sorted(per_source.items())),
        "clean": not entries,
    }
