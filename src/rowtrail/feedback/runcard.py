"""The run card: a training run's (or a version's) answers to the three questions of feedback
provenance, from the store's metadata alone.

1. **Which annotations are included, under which guideline versions?** Per guideline version (with
   the digest of its registered text): the batches, judgements, annotators, weight and agreement
   (Krippendorff's alpha), and the annotators flagged for calibration drift.
2. **Which transformations were applied, and what are they pinned to?** The version's pipeline:
   each step's id, name, kind, version, parameters and code fingerprint (docs/spec.md §5.1), with
   what it did (rows in and out, drops by reason, reweighted rows).
3. **What is the expected distribution of the training signal, and does the data match?** Per
   task: the expected label distribution (given; else as the guideline versions in use declare it,
   each weighted by its share of the training weight; else the distribution as collected — the
   version's inputs, before any step) against the actual one (what training sees: the version's
   rows, weighted), with ``psi``, ``kl`` and the largest share change; and the share of the signal
   derived from model outputs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import RefError

if TYPE_CHECKING:
    from ..store import Store


def run_card(
    store: Store,
    run: str | None = None,
    *,
    version: str | None = None,
    expected: dict[str, dict[str, float]] | None = None,
    corpus: str = "main",
    detect: bool = True,
) -> dict[str, Any]:
    """The run card of a run (``run``) or of a version (``version``); ``expected`` maps a task to
    its expected shares (``{"helpfulness": {"1": 0.1, …}}``; a single task may use key ``"*"``)."""
    from . import analysis, contamination, data, guidelines, signal
    from .annotations import imports

    run_entry = None
    if run is not None:
        runs = {e["run_id"]: e for e in store.state.entries if e["kind"] == "run"}
        if run not in runs:
            raise RefError(f"no training run '{run}'; see 'rowtrail runs'")
        run_entry = runs[run]
        vid = run_entry["version_id"]
    elif version is not None:
        vid = store.state.resolve(version, corpus).version_id
    else:
        raise RefError("give a run id or --version")
    info = store.state.versions[vid]
    man = store.manifest(vid)
    content = man["record"]["content"]
    ann = data.load(store, vid)
    guides = guidelines.registered(store)
    agreement = analysis.agreement(ann, by="guideline") if len(ann) else {"tasks": []}
    alpha_by = {(t["task"], g["group"]): g["alpha"] for t in agreement["tasks"] for g in t["groups"]}
    levels = {t["task"]: t["level"] for t in agreement["tasks"]}
    included = []
    for g in sorted({str(x) for x in ann.guideline}, key=lambda s: (len(s), s)):
        sel = ann.guideline.astype(str) == g
        batches = []
        for b in sorted({str(x) for x in ann.batch[sel]}):
            bs = sel & (ann.batch.astype(str) == b)
            times = ann.collected_at[bs]
            batches.append(
                {
                    "batch": b,
                    "judgements": int(bs.sum()),
                    "annotators": len({str(x) for x in ann.annotator[bs]}),
                    "weight": float(ann.weight[bs].sum()),
                    "collected": [str(times.min().astype("datetime64[s]")) + "Z", str(times.max().astype("datetime64[s]")) + "Z"],
                    "sources": sorted({str(x) for x in ann.source_id[bs]}),
                    "alpha": _alphas(ann.take(bs), levels),
                }
            )
        gl = guides.get(g)
        included.append(
            {
                "guideline": g,
                "guideline_sha256": gl.digest if gl else None,
                "guideline_file": gl.name if gl else None,
                "judgements": int(sel.sum()),
                "annotators": len({str(x) for x in ann.annotator[sel]}),
                "weight": float(ann.weight[sel].sum()),
                "alpha": {t: alpha_by.get((t, g)) for t in sorted({str(x) for x in ann.task[sel]})},
                "batches": batches,
            }
        )
    drifting = analysis.flagged(agreement) if len(ann) else []
    steps = []
    lineage = man.get("lineage") or {}
    for sid in content["pipeline"]:
        d = (man.get("steps") or {}).get(sid, {})
        rep = (lineage.get(sid) or {}).get("report") or {}
        steps.append(
            {
                "step_id": sid,
                "name": d.get("name"),
                "use": d.get("use"),
                "version": d.get("version"),
                "params": d.get("params"),
                "code": d.get("code"),
                "function": d.get("function"),
                "rowtrail_version": d.get("rowtrail_version"),
                "rows_in": rep.get("rows_in"),
                "rows_out": rep.get("rows_out"),
                "weight_in": rep.get("weight_in"),
                "weight_out": rep.get("weight_out"),
                "dropped": rep.get("dropped"),
                "reweighted": rep.get("reweighted"),
            }
        )
    sig = signal.monitor(store, vid)
    dist = []
    for t in sig["tasks"]:
        collected = t["steps"][0]["shares"]
        actual = t["steps"][-1]["shares"]
        exp = (expected or {}).get(t["task"]) or ((expected or {}).get("*") if len(sig["tasks"]) == 1 else None)
        basis = "declared" if exp else "collected"
        if not exp:
            exp = _from_guidelines(t["task"], t["per_guideline"], guides)
            basis = "guidelines" if exp else basis
        dist.append(
            {
                "task": t["task"],
                "expected_basis": basis,
                **signal.expected_vs_actual(actual, exp or collected),
                "per_guideline": t["per_guideline"],
            }
        )
    detector = None
    if detect:
        reg = contamination.RegisteredOutputs(store)
        detector = reg if len(reg) else None
    cont = contamination.report(store, vid, detector=detector, chains=5)
    out: dict[str, Any] = {
        "run": None,
        "version": {
            "version_id": vid,
            "tag": info.tag,
            "corpus": info.corpus,
            "rows": content["row_count"],
            "weight": content["weight_total"],
            "merkle_root": content["merkle_root"],
        },
        "annotations": {
            "judgements": int(len(ann)),
            "weight": float(ann.weight.sum()),
            "by_guideline": included,
            "drifting_annotators": drifting,
            "imports": [
                {k: e.get(k) for k in ("source", "format", "file", "batches", "guideline_versions", "judgements", "pseudonym_key_id")}
                for e in imports(store)
                if e.get("corpus", "main") == info.corpus
            ],
        },
        "transformations": {"pipeline": steps, "run_object": man.get("run")},
        "signal": dist,
        "contamination": {k: cont[k] for k in ("detector", "share", "generated_weight", "weight", "models", "per_source")},
    }
    if run_entry is not None:
        out["run"] = {
            k: run_entry.get(k)
            for k in (
                "run_id",
                "source",
                "started_at",
                "finished_at",
                "steps",
                "rows_consumed",
                "distinct_rows",
                "rows_outside_version",
                "consumed_digest",
            )
        }
    return out


def _from_guidelines(task: str, per_guideline: list[dict[str, Any]], guides: dict[str, Any]) -> dict[str, float] | None:
    """The expected distribution the guidelines declare for a task, each guideline weighted by its
    share of the task's training weight; None unless every guideline in use declares one."""
    total = sum(g["weight"] for g in per_guideline)
    if total <= 0:
        return None
    out: dict[str, float] = {}
    for g in per_guideline:
        declared = getattr(guides.get(g["guideline"]), "expected", None) or {}
        shares = declared.get(task) or declared.get("*")
        if not shares:
            return None
        for k, v in shares.items():
            out[k] = out.get(k, 0.0) + v * g["weight"] / total
    return out


def _alphas(ann: Any, levels: dict[str, str]) -> dict[str, float | None]:
    """Krippendorff's alpha of a set of judgements, per task."""
    from .analysis import figures

    out = {}
    for t in sorted({str(x) for x in ann.task}):
        sub = ann.take(ann.task.astype(str) == t)
        out[t] = figures(sub.unit(), sub.annotator.astype(str), sub.value(), levels.get(t, "nominal"))["alpha"]
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if np.isnan(x):
            return "–"
        return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:.{digits}f}"
    return str(x)


def markdown(card: dict[str, Any]) -> str:
    v = card["version"]
    lines = []
    title = f"Run card: {card['run']['run_id']}" if card["run"] else f"Run card: version {v['tag'] or v['version_id'][:12]}"
    lines += [f"# {title}", ""]
    if card["run"]:
        r = card["run"]
        lines.append(
            f"Run `{r['run_id']}` ({r['source']}, finished {r['finished_at']}): {r['steps']} step(s), {r['rows_consumed']} rows consumed ({r['distinct_rows']} distinct, {r['rows_outside_version']} outside the version)."
        )
    lines += [
        f"Trained on version **{v['tag'] or '(untagged)'}** `{v['version_id']}` of corpus `{v['corpus']}`: {v['rows']} rows, total weight {_fmt(float(v['weight']))}, Merkle root `{v['merkle_root'][:16]}…`.",
        "",
    ]
    a = card["annotations"]
    lines += ["## 1. Annotations included, by guideline version", ""]
    if not a["judgements"]:
        lines += ["The version holds no annotation rows.", ""]
    else:
        lines += [f"{a['judgements']} judgements (total weight {_fmt(a['weight'])}).", ""]
        lines += [
            "| guideline | text sha256 | batch | judgements | annotators | weight | collected | alpha (batch) | alpha (guideline) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for g in a["by_guideline"]:
            alpha = ", ".join(f"{t}: {_fmt(x)}" for t, x in g["alpha"].items())
            for b in g["batches"]:
                batch_alpha = ", ".join(f"{t}: {_fmt(x)}" for t, x in b["alpha"].items())
                lines.append(
                    f"| v{g['guideline']} | `{(g['guideline_sha256'] or '?')[:12]}` | {b['batch']} | {b['judgements']} | {b['annotators']} | {_fmt(b['weight'])} "
                    f"| {b['collected'][0][:10]} – {b['collected'][1][:10]} | {batch_alpha} | {alpha} |"
                )
        lines.append("")
        lines.append("Annotators flagged for calibration drift: " + (", ".join(f"`{x}`" for x in a["drifting_annotators"]) or "none") + ".")
        lines.append("")
    t = card["transformations"]
    lines += ["## 2. Transformations and what they are pinned to", ""]
    if not t["pipeline"]:
        lines += ["No pipeline: the version's rows are its inputs.", ""]
    else:
        lines += [
            "| # | step | kind | version | step id | code sha256 | params | rows in → out | dropped |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, s in enumerate(t["pipeline"], 1):
            params = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in (s["params"] or {}).items() if v is not None)
            dropped = ", ".join(f"{k}: {v}" for k, v in (s["dropped"] or {}).items()) or "–"
            lines.append(
                f"| {i} | {s['name']} | {s['use'] or 'custom'} | {s['version']} | `{s['step_id'][:12]}` | `{(s['code'] or '')[:12]}` | {params.replace('|', '/')} | {s['rows_in']} → {s['rows_out']} | {dropped} |"
            )
        lines += ["", f"Pipeline run object: `{t['run_object']}`.", ""]
    lines += ["## 3. Expected vs actual training signal", ""]
    if not card["signal"]:
        lines += ["No annotation signal in this version.", ""]
    for s in card["signal"]:
        basis = {
            "declared": "as declared",
            "guidelines": "as the guidelines declare (each weighted by its share of the training weight)",
            "collected": "as collected (before the pipeline)",
        }[s["expected_basis"]]
        lines += [f"Task **{s['task']}** — expected {basis} vs actual (what training sees, weighted):", ""]
        lines += ["| value | expected | actual | change |", "| --- | --- | --- | --- |"]
        for k in s["expected"]:
            e, x = s["expected"][k], s["actual"][k]
            lines.append(f"| {k} | {e:.3f} | {x:.3f} | {x - e:+.3f} |")
        lines += [
            "",
            f"Does the data match? **{s.get('verdict') or '–'}** (psi {_fmt(s.get('psi'), 4)}: below 0.1 matches, 0.1–0.25 moderate, above 0.25 major shift); "
            f"KL {_fmt(s.get('kl'), 4)}, largest share change {_fmt(s.get('max_change'))} (value {s.get('max_change_value')}).",
            "",
        ]
        if len(s["per_guideline"]) > 1:
            lines += ["| guideline | judgements | weight | mean | psi vs previous |", "| --- | --- | --- | --- | --- |"]
            for g in s["per_guideline"]:
                lines.append(
                    f"| v{g['guideline']} | {g['rows']} | {_fmt(g['weight'])} | {_fmt(g.get('mean'))} | {_fmt((g.get('drift_from_previous') or {}).get('psi'), 4)} |"
                )
            lines.append("")
    c = card["contamination"]
    lines += ["## Model-derived signal", ""]
    share = c["share"]
    lines.append(
        f"{_fmt(share * 100 if share is not None else None, 1)} % of the training weight derives from model outputs ({_fmt(c['generated_weight'])} of {_fmt(float(c['weight']))}; detector: {c['detector'] or 'none'})."
    )
    for m in c["models"]:
        run = (
            f"run `{m['run_id']}` on version {m['run_version_tag'] or (m['run_version'] or '?')[:12]}"
            if m["run_id"]
            else "no run registered"
        )
        lines.append(f"- `{m['model']}`: {run}" + (" (an earlier version)" if m["earlier"] else ""))
    lines.append("")
    return "\n".join(lines)
